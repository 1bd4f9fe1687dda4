"""The esp32 HAL (ports/esp32/) without ESP-IDF.

No ESP-IDF or Xtensa/RISC-V toolchain is reachable here, so the HAL itself is not compiled
by these tests. What is: its pure logic, ports/esp32/failstop_esp32_logic.h, compiled with
the host's gcc against host_tests/esp32_fake/ -- a FAKE of the few ESP-IDF declarations it
uses (esp_reset_reason_t, panic_exception_t, esp_cpu_compare_and_set), copied with their
names and values from ESP-IDF v5.2.2 (the same in v5.4.1) -- and run. The expected values
are written out here independently (from docs/manual.md's ESP32 table and ESP-IDF's
sources), and the reset causes are checked by name against the host decoder's table, so a
mismatch between the C constants and the decoder shows too. The rest are static checks of
the HAL source: every function of failstop_hal.h is defined, every hook the port's CMake
wraps has its __wrap_ function, and esp_panic_handler (MicroPython's own wrap) is left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from failstop_host.codec import KINDS, RESET_CAUSES, encode_region, encode_slot

ROOT = Path(__file__).resolve().parent.parent
PORT = ROOT / "ports" / "esp32"
FAKE = Path(__file__).resolve().parent / "esp32_fake"
CORE_H = ROOT / "modules" / "failstop" / "failstop.h"
HAL_H = ROOT / "modules" / "failstop" / "failstop_hal.h"

CC = shutil.which("gcc") or shutil.which("cc")


@pytest.fixture(scope="module")
def logic(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if CC is None:
        pytest.skip("no C compiler on this machine")
    tmp = tmp_path_factory.mktemp("esp32-logic")
    # failstop's own constants, verbatim from failstop.h (its enums need py/obj.h otherwise).
    enums = re.findall(r"enum \{[^}]*FAILSTOP_(?:KIND|RC)_[^}]*\};", CORE_H.read_text())
    assert len(enums) == 2, "failstop.h: the KIND and RC enums moved"
    (tmp / "failstop_consts.h").write_text("#pragma once\n" + "\n".join(enums) + "\n")
    exe = tmp / "logic"
    cmd = [CC, "-std=c11", "-O1", "-Wall", "-Wextra", "-Wconversion", "-Werror"]
    cmd += ["-I", str(tmp), "-I", str(FAKE), "-I", str(PORT)]
    cmd += [str(FAKE / "logic_main.c"), "-o", str(exe)]
    cc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def rows(logic: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [r for r in logic if key in r]


# Written out from the research notes / ESP-IDF's esp_system.h, not from the header.
EXPECTED_CAUSE = {
    "ESP_RST_UNKNOWN": "unknown",
    "ESP_RST_POWERON": "power_on",
    "ESP_RST_EXT": "pin",
    "ESP_RST_SW": "soft",
    "ESP_RST_PANIC": "fault",
    "ESP_RST_INT_WDT": "watchdog",
    "ESP_RST_TASK_WDT": "watchdog",
    "ESP_RST_WDT": "watchdog",
    "ESP_RST_DEEPSLEEP": "soft",
    "ESP_RST_BROWNOUT": "brownout",
    "ESP_RST_SDIO": "unknown",
    "ESP_RST_USB": "pin",
    "ESP_RST_JTAG": "pin",
    "ESP_RST_EFUSE": "unknown",
    "ESP_RST_PWR_GLITCH": "unknown",
    "ESP_RST_CPU_LOCKUP": "fault",
}


def test_every_idf_reset_reason_maps_to_a_failstop_cause(logic: list[dict[str, Any]]) -> None:
    got = {r["reset"]: RESET_CAUSES[r["cause"]] for r in rows(logic, "reset")}
    assert got == EXPECTED_CAUSE


def test_reset_hints_read_back_as_the_recorded_cause(logic: list[dict[str, Any]]) -> None:
    """failstop's reset leaves a hint that esp_reset_reason() reports after a software
    reset -- IDF reports it only for PANIC, BROWNOUT, TASK_WDT and INT_WDT -- and that maps
    back to the cause failstop recorded; a soft reset leaves none (ESP_RST_SW)."""
    hints = {RESET_CAUSES[r["hint_for"]]: r for r in rows(logic, "hint_for")}
    assert hints["fault"]["hint"] == "ESP_RST_PANIC"
    assert hints["watchdog"]["hint"] == "ESP_RST_TASK_WDT"
    for cause, r in hints.items():
        if r["hint"] != "ESP_RST_UNKNOWN":
            assert r["hint"] in (
                "ESP_RST_PANIC",
                "ESP_RST_BROWNOUT",
                "ESP_RST_TASK_WDT",
                "ESP_RST_INT_WDT",
            )
            assert RESET_CAUSES[r["reads_back"]] == cause
    assert hints["soft"]["hint"] == "ESP_RST_UNKNOWN"
    assert RESET_CAUSES[hints["soft"]["reads_back"]] == "soft"


def test_xtensa_window_bits_are_cleared_riscv_addresses_kept(logic: list[dict[str, Any]]) -> None:
    got = {r["ra"]: (r["xtensa"], r["riscv"]) for r in rows(logic, "ra")}
    expected_xtensa = {
        0x00000000: 0x00000000,  # no return address
        0x400D1234: 0x400D1234,  # call4 (01) or a plain address: unchanged
        0x800D1234: 0x400D1234,  # call8: window bits 10
        0xC00D1234: 0x400D1234,  # call12: window bits 11
        0x40081000: 0x40081000,  # ESP32 IRAM
        0x80081000: 0x40081000,
        0xC2001234: 0x42001234,  # ESP32-S3 flash (0x42...)
        0x82001234: 0x42001234,
        0x4037A000: 0x4037A000,  # ESP32-S3 IRAM
        0x42001234: 0x42001234,
    }
    assert {ra: x for ra, (x, _) in got.items()} == expected_xtensa
    assert all(ra == rv for ra, (_, rv) in got.items())  # RISC-V: ra as it is


def test_uptime_saturates_instead_of_wrapping(logic: list[dict[str, Any]]) -> None:
    got = {r["us"]: r["ms"] for r in rows(logic, "us")}
    assert got[-5] == 0 and got[0] == 0 and got[999] == 0 and got[1000] == 1
    assert got[123456789] == 123456
    assert got[4294967295000] == 0xFFFFFFFF
    assert got[4294967295999] == 0xFFFFFFFF
    assert got[4294967296000] == 0xFFFFFFFF  # 49.7 days: saturated, not 0
    assert got[9223372036854775807] == 0xFFFFFFFF


def test_panic_kinds(logic: list[dict[str, Any]]) -> None:
    # panic_exception_t: DEBUG, IWDT, TWDT, ABORT, FAULT (esp_private/panic_internal.h)
    names = ["DEBUG", "IWDT", "TWDT", "ABORT", "FAULT"]
    got = {(names[r["exception"]], r["abort"]): KINDS[r["kind"]] for r in rows(logic, "exception")}
    for name in names:
        assert got[(name, 1)] == "FATAL"  # g_panic_abort: abort(), assert, stack overflow hook
    assert got[("ABORT", 0)] == "FATAL"
    assert got[("IWDT", 0)] == got[("TWDT", 0)] == "WATCHDOG"
    assert got[("FAULT", 0)] == got[("DEBUG", 0)] == "HARDFAULT"


def test_fault_messages(logic: list[dict[str, Any]]) -> None:
    msgs = rows(logic, "message")
    assert [m["message"] for m in msgs] == [
        "LoadProhibited at 0x400d1234, addr 0x00000000 (core 1)",
        "IllegalInstruction at 0x42001234 (core 0)",
        "Load access fault at 0x42000abc, addr 0xdeadbeef (core 0)",
        "Cache disabled but cached memory region accessed at 0x400d0000 (core 1)",
        "CPU exception at 0x00000001",
        "StoreProhibited at 0",  # cut at the buffer's size, never past it
    ]
    for m in msgs:
        assert m["len"] <= m["cap"] and not m["overrun"]
    # The record keeps 64 bytes: the core cuts longer ones and flags MSG_TRUNCATED.
    assert len(msgs[3]["message"]) > 64


def test_compare_and_swap_returns_the_old_value(logic: list[dict[str, Any]]) -> None:
    (cas,) = rows(logic, "cas")
    # claim 0 -> 7 (returns 0: stored), second claim fails and sees 7, release 7 -> 0
    # despite three spurious failures of esp_cpu_compare_and_set (retried: 4 calls).
    assert cas["cas"] == [0, 7, 7]
    assert cas["after"] == 0
    assert cas["calls"] == 4


def test_task_watchdog_limit_fits_the_timer(logic: list[dict[str, Any]]) -> None:
    (r,) = rows(logic, "twdt_max_ms")
    # task_wdt_impl_timergroup.c: stage 1 (reset) = timeout_ms * 2 * 1000 / 500 ticks.
    assert r["twdt_max_ms"] * 4 <= 0xFFFFFFFF < (r["twdt_max_ms"] + 1) * 4


# --- static checks of the HAL source ----------------------------------------------------


def strip_comments(src: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", src, flags=re.S)


def test_the_hal_defines_every_hal_function() -> None:
    declared = set(re.findall(r"\b(failstop_hal_\w+)\(", strip_comments(HAL_H.read_text())))
    assert len(declared) >= 14
    src = strip_comments((PORT / "failstop_hal.c").read_text())
    defined = set(re.findall(r"^\w[\w\s\*]*?\b(failstop_hal_\w+)\([^;]*?\)\s*\{", src, re.M))
    assert declared <= defined, f"not defined: {sorted(declared - defined)}"


def test_every_wrapped_hook_is_defined_and_esp_panic_handler_is_left_alone() -> None:
    cmake = strip_comments(re.sub(r"#[^\n]*", "", (PORT / "failstop_port.cmake").read_text()))
    m = re.search(r"list\(APPEND FAILSTOP_WRAP(.*?)\)", cmake, re.S)
    assert m is not None
    wrapped = m.group(1).split()
    assert set(wrapped) == {
        "pyexec_file_if_exists",
        "panic_arch_fill_info",
        "panic_soc_fill_info",
        "panic_restart",
        "esp_system_abort",
    }
    src = strip_comments(
        (PORT / "failstop_hal.c").read_text() + (PORT / "failstop_glue.c").read_text()
    )
    for sym in wrapped:
        assert re.search(rf"\b__wrap_{sym}\)?\(", src), f"__wrap_{sym} not defined"
    assert "esp_panic_handler" not in cmake
    assert "__wrap_esp_panic_handler" not in src  # MicroPython's (ports/esp32/panichandler.c)
    assert re.search(r"^void esp_task_wdt_isr_user_handler\(void\) \{", src, re.M)
    # build.sh checks the same hooks in the linked ELF.
    build = (PORT / "build.sh").read_text()
    for sym in wrapped:
        assert f"__wrap_{sym}" in build


# --- ESP32 records on the host ------------------------------------------------------------


def test_esp32_records_decode_on_the_host(logic: list[dict[str, Any]], tmp_path: Path) -> None:
    """The records an ESP32 writes, as `failstop decode` shows them: a region of 1024 bytes
    (header + 3 slots, as in RTC memory), hex-dumped as failstop.dump() gives it; the
    HARDFAULT carries the HAL's own message (from the compiled logic above) and its PC and
    window-bit-cleared return address; the FATAL an abort() text cut to 64 bytes; the
    WATCHDOG the mark and the Python location. Only the host decoder runs here."""
    fault_msg = rows(logic, "message")[0]["message"]  # LoadProhibited ... (core 1)
    lr = {r["ra"]: r["xtensa"] for r in rows(logic, "ra")}[0x800D1234]
    abort_text = (
        "abort() was called at PC 0x400d8f3a on core 1; " + "assert failed: xQueue queue.c:820"
    )
    fw = "1.25.0+fs0.1.0"
    region = encode_region(
        [
            encode_slot(
                kind="HARDFAULT",
                seq=1,
                boot=1,
                uptime_ms=5123,
                reset_cause="power_on",
                message=fault_msg,
                pc=0x400D1234,
                lr=lr,
                firmware=fw,
                traceback=[("main.py", 12, "read_sensor")],
            ),
            encode_slot(
                kind="FATAL",
                seq=2,
                boot=2,
                uptime_ms=77,
                reset_cause="fault",
                message=abort_text,
                pc=0x40082A1E,
                lr=0x400D8F3A,
                firmware=fw,
            ),
            encode_slot(
                kind="WATCHDOG",
                seq=3,
                boot=3,
                uptime_ms=30012,
                reset_cause="fault",
                message="watchdog timeout",
                mark="mqtt-connect",
                firmware=fw,
                traceback=[("main.py", 40, "connect"), ("main.py", 55, "<module>")],
            ),
        ],
        boot_count=4,
        boot_cause="watchdog",
        seen_seq=0,
    )
    assert len(region) == 1024
    dump = tmp_path / "esp32-region.hex"
    dump.write_text(region.hex())
    cmd = [sys.executable, "-m", "failstop_host", "decode", "--all", str(dump)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "#1 HARDFAULT (REBOOT) boot 1, 5123 ms after reset (reset cause: power_on)" in out
    assert "LoadProhibited at 0x400d1234, addr 0x00000000 (core 1)" in out
    assert "pc 0x400d1234, lr 0x400d1234" in out
    assert "#2 FATAL (REBOOT) boot 2, 77 ms after reset (reset cause: fault)" in out
    assert abort_text[:64] in out and "MSG_TRUNCATED" in out
    assert "#3 WATCHDOG (REBOOT) boot 3" in out and "mark 'mqtt-connect'" in out
    assert "at main.py:40 in connect" in out
    p = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert lines[0]["region"]["header"]["boot_count"] == 4  # the region comes first
    recs = lines[1:]
    assert [r["kind"] for r in recs] == ["HARDFAULT", "FATAL", "WATCHDOG"]
    assert recs[0]["pc"] == 0x400D1234 and recs[0]["lr"] == 0x400D1234
    assert recs[1]["lr"] == 0x400D8F3A


# --- the whole HAL, type-checked against the fake -----------------------------------------

MICROPY_DIR = Path(
    os.environ.get(
        "MICROPY_DIR",
        Path(os.environ.get("FAILSTOP_CACHE", Path.home() / ".cache" / "failstop"))
        / "src"
        / "micropython-1.25.0",
    )
)


@pytest.mark.parametrize(
    "config",
    [
        ["-D__XTENSA__=1"],  # ESP32 / S3: two cores, UART console
        ["-D__XTENSA__=1", "-DCONFIG_ESP_PANIC_HANDLER_IRAM=1"],
        ["-DFAKE_SINGLE_CORE", "-DCONFIG_ESP_CONSOLE_SECONDARY_USB_SERIAL_JTAG=1"],  # C3
    ],
    ids=["xtensa-dual-core", "xtensa-panic-iram", "riscv-single-core-usb-jtag"],
)
def test_the_whole_hal_type_checks_against_the_fake(config: list[str]) -> None:
    """ports/esp32/failstop_hal.c and failstop_glue.c through gcc -fsyntax-only -Wall
    -Wextra -Werror, with MicroPython 1.25.0's real py/ headers and the FAKE IDF headers
    (host_tests/esp32_fake/: IDF's signatures copied by hand, so this checks the HAL's C
    against those copies, not against ESP-IDF itself; NO_QSTR as in MicroPython's own qstr
    pass)."""
    if CC is None:
        pytest.skip("no C compiler on this machine")
    if not (MICROPY_DIR / "py" / "mpconfig.h").exists():
        if os.environ.get("FAILSTOP_REQUIRE_ALL"):
            pytest.fail(f"no MicroPython source at {MICROPY_DIR} (make deps)")
        pytest.skip(f"no MicroPython source at {MICROPY_DIR} (make deps)")
    cmd = [CC, "-std=gnu99", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    cmd += ["-Werror", "-DNO_QSTR", *config]
    for inc in (FAKE, FAKE / "port", MICROPY_DIR, ROOT / "modules" / "failstop", PORT):
        cmd += ["-I", str(inc)]
    for src in ("failstop_hal.c", "failstop_glue.c"):
        cc = subprocess.run([*cmd, str(PORT / src)], capture_output=True, text=True, timeout=120)
        assert cc.returncode == 0, cc.stderr
