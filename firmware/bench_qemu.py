"""make bench, Cortex-M part: what failstop costs on the MPS2_AN385 (Cortex-M3) build, and how
long a fail-stop reboot takes on the emulated board. Writes docs/bench-qemu.md.

Sizes: arm-none-eabi-size of the stock qemu port's MPS2_AN385 firmware without and with the
failstop module (same flags, no board glue), per ELF section; the module's objects one by
one. Time: machine.panic() typed at the REPL, to the first line the board prints after the
watchdog reset, measured on the host from the emulator's console (wall clock, QEMU TCG)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from benchdoc import ms, write_doc  # noqa: E402

from failstop_host.emulator import PROMPT, QemuBoard  # noqa: E402

BUILD = Path(os.environ.get("FAILSTOP_BUILD", ROOT / "build"))
STOCK = BUILD / "MPS2_AN385-stock/firmware.elf"
MODULE = BUILD / "MPS2_AN385-module/firmware.elf"
LEAN = BUILD / "MPS2_AN385-module-lean/firmware.elf"
TARGET_FULL, TARGET_LEAN = 5120, 2560  # module code, bytes (issue: lean and fast)
BOARD = BUILD / "MPS2_AN385/firmware.elf"
OUT = ROOT / "docs/bench-qemu.md"
RETAINED = ".failstop_retained"
RUNS = 20


def sections(elf: Path) -> dict[str, int]:
    out = subprocess.run(
        ["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    res: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            res[parts[0]] = int(parts[1])
    return res


def footprint(elf: Path) -> dict[str, int]:
    s = sections(elf)
    return {
        "flash": s.get(".text", 0) + s.get(".data", 0),  # code + rodata + data's initialisers
        "data": s.get(".data", 0),
        "bss": s.get(".bss", 0),
        "retained": s.get(RETAINED, 0),
    }


def objects(build: Path) -> tuple[list[tuple[str, int, int]], int]:
    """(object, code, static RAM) of the module's objects in `build`, and the retained
    region's size."""
    rows, retained = [], 0
    names = (
        "failstop_core.o",
        "failstop_frames.o",
        "failstop_hooks.o",
        "modfailstop.o",
        "failstop_hal.o",
        "failstop_glue.o",
    )
    found = [o for o in build.rglob("*.o") if o.name in names]
    for o in sorted(found, key=lambda o: names.index(o.name)):
        s = sections(o)
        code = sum(v for k, v in s.items() if k.startswith((".text", ".rodata")))
        ram = sum(v for k, v in s.items() if k.startswith((".data", ".bss")))
        rows.append((o.name, code, ram))
        retained += s.get(RETAINED, 0)
    return rows, retained


def panic_to_banner() -> tuple[list[float], list[float]]:
    typed, printed = [], []
    with QemuBoard(BOARD) as board:
        board.start()
        assert board.wait_for(re.escape(PROMPT), timeout=20), board.output()
        for i in range(RUNS):
            start = len(board.output())
            t0 = __import__("time").monotonic()
            board.write(f"import machine; machine.panic('bench {i}')\r".encode())
            fault = board.wait_for(rb"failstop: PANIC -> REBOOT\r\n", timeout=20, start=start)
            banner = board.wait_for(rb"failstop: reboot after PANIC[^\r]*\r\n", 20, start=start)
            assert fault and banner, board.output(start)
            board.settle()
            t_fault = board.arrival(fault.end() - 1)
            t_banner = board.arrival(banner.end() - 1)
            assert t_fault is not None and t_banner is not None
            typed.append((t_banner - t0) * 1000)
            printed.append((t_banner - t_fault) * 1000)
            assert board.wait_for(re.escape(PROMPT), timeout=20, start=banner.end())
        # QMP throttles WATCHDOG events (one a second): count the resets, see a watchdog.
        assert board.resets == RUNS and board.events("WATCHDOG"), board.output()
    return typed, printed


def main() -> int:
    for elf in (STOCK, MODULE, LEAN, BOARD):
        if not elf.exists():
            sys.exit(
                f"bench_qemu: {elf} missing (make firmware-MPS2_AN385-sizes firmware-MPS2_AN385)"
            )
    stock, mod, board = footprint(STOCK), footprint(MODULE), footprint(BOARD)
    lean = footprint(LEAN)
    d_flash = mod["flash"] - stock["flash"]
    d_lean = lean["flash"] - stock["flash"]
    d_lean_ram = lean["data"] + lean["bss"] - stock["data"] - stock["bss"]
    # The region is a section of its own (.failstop_retained), counted apart.
    d_ram = mod["data"] + mod["bss"] - stock["data"] - stock["bss"]
    objs, retained = objects(MODULE.parent)
    lean_objs, _ = objects(LEAN.parent)
    code, lean_code = sum(c for _, c, _ in objs), sum(c for _, c, _ in lean_objs)
    typed, printed = panic_to_banner()

    lines = [
        "# Cortex-M figures (MPS2_AN385, QEMU)",
        "",
        "Measured by `make bench` (`firmware/bench_qemu.py`) on this machine: MicroPython 1.25.0,",
        "qemu port, `arm-none-eabi-gcc` 12.2 `-Os`, Cortex-M3 Thumb-2.",
        "",
        "## Size of the module",
        "",
        "`arm-none-eabi-size -A` of the stock `MPS2_AN385` firmware, without and with the failstop",
        "module (same flags; the module's HAL for this port included; no board glue).",
        "",
        "| | stock | with failstop | cost | target |",
        "|---|---:|---:|---:|---|",
        f"| flash (.text + .data) | {stock['flash']:,} B | {mod['flash']:,} B |"
        f" **{d_flash:,} B** | ≤ 3 KiB: "
        f"{'met' if d_flash <= 3072 else 'missed'} |",
        f"| RAM (.data + .bss) | {stock['data'] + stock['bss']:,} B |"
        f" {mod['data'] + mod['bss']:,} B | **{d_ram} B** | ≤ 64 B: "
        f"{'met' if d_ram <= 64 else 'missed'} |",
        f"| retained region | - | {retained:,} B | **{retained:,} B** | ≤ 1 KiB: "
        f"{'met' if retained <= 1024 else 'missed'} |",
        "",
        "The lean profile (`FAILSTOP_PROFILE=lean`, docs/config.md) against the same stock"
        " firmware:",
        f"flash cost **{d_lean:,} B** (RAM {d_lean_ram} B).",
        "",
        "Per object (code + read-only data of the compiled object, every function counted;"
        " static RAM):",
        "",
        "| object | full: code | full: RAM | lean: code | lean: RAM |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| `{n}` | {c:,} B | {r} B | {lc:,} B | {lr} B |"
            for (n, c, r), (_, lc, lr) in zip(objs, lean_objs)
        ],
        f"| **module code** | **{code:,} B** | | **{lean_code:,} B** | |",
        f"| target | ≤ {TARGET_FULL:,} B: {'met' if code <= TARGET_FULL else 'missed'} | |"
        f" ≤ {TARGET_LEAN:,} B: {'met' if lean_code <= TARGET_LEAN else 'missed'} | |",
        f"| qstrs, tables (the rest of the flash difference) | "
        f"{d_flash - code:,} B | | {d_lean - lean_code:,} B | |",
        "",
        "Where it goes: in the full profile the Python API (`modfailstop.c`: the Record type",
        "and its attributes, the policy, crash-loop, keeper, fragile, recoverable and watchdog",
        "bindings, argument checks with messages) is nearly as large as the fault path itself;",
        "in the core, the record writer (frame capture, text truncation, CRC), the boot (header",
        "check and rebuild, reset-cause fusion, crash-loop state) and the boot banner are the",
        "largest functions; the full profile's `MICROPY_FAILSTOP_FAST` adds the 1 KiB CRC32",
        "table and the unrolled loops (~1.3 KiB: the fault path in half the time, see",
        "bench-unix.md). The lean profile drops the optional API, the texts and the fast",
        "loops; what remains is the record writer, the boot, `panic()` (which accepts anything),",
        f"the Record type and the watchdog: {code / TARGET_FULL:.1f}x the full target,"
        f" {lean_code / TARGET_LEAN:.1f}x the lean one.",
        "",
        "The board glue of the failstop board (`boards/MPS2_AN385`: littlefs, VFS, the `time`",
        "module, boot sequence, frozen `_boot.py`) is not part of the module: the full board",
        f"firmware is {board['flash']:,} B of flash ({board['flash'] - mod['flash']:,} B"
        " more than stock + module).",
        "",
        "## machine.panic() to the first line after the reboot",
        "",
        f"{RUNS} panics at the REPL of one emulated board; every reboot goes through the CMSDK",
        "watchdog (NMI after 1 ms, reset after 2 ms; QEMU reports WATCHDOG events, throttled to",
        "one a second). Host wall-clock time from the console (QEMU TCG on this machine, not a",
        "real M3 at 25 MHz):",
        "",
        f"- from typing the line (REPL compile included) to the reboot banner: {ms(typed)}",
        "- from the `failstop: PANIC -> REBOOT` line (record written) to the banner: "
        + ms(printed),
        "",
    ]
    write_doc(OUT, lines, ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
