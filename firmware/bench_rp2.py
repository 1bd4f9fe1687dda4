"""make bench, RP2040 part: what failstop costs on the RPI_PICO build, and how long a
fail-stop reboot takes on the emulated Pico. Writes docs/bench-rp2.md.

Sizes: the flash image (firmware.bin) and the RAM left to MicroPython's GC heap, of the stock
rp2 port's RPI_PICO firmware (same tree, same frozen manifest) and of failstop's; the
module's objects one by one. Time: machine.panic() typed at the REPL over USB, to the REPL
prompt after the watchdog reboot, in emulated time (the runner stamps when the device
took the last host byte and sent the last byte to the host; rp2040js at 125 MHz)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from benchdoc import ms, write_doc  # noqa: E402

from failstop_host.emulator import PROMPT, elf_symbol  # noqa: E402
from failstop_host.pico import RETAINED_SYMBOL, PicoBoard  # noqa: E402

BUILD = Path(os.environ.get("FAILSTOP_BUILD", ROOT / "build")) / "RPI_PICO"
STOCK = BUILD / "stock" / "firmware.elf"
BOARD = BUILD / "firmware.elf"
LEAN = BUILD.with_name("RPI_PICO-lean") / "firmware.elf"  # FAILSTOP_PROFILE=lean
OUT = ROOT / "docs/bench-rp2.md"
RUNS = 10
CDC_TX_EXTRA = 1024 - 256  # ports/rp2/failstop_port.cmake: CFG_TUD_CDC_TX_BUFSIZE 256 -> 1024


def heap(elf: Path) -> int:
    start, _ = elf_symbol(elf, "__GcHeapStart")
    end, _ = elf_symbol(elf, "__GcHeapEnd")
    return end - start


def objects(build: Path) -> list[tuple[str, int, int]]:
    """(object, code + read-only data, static RAM) of the module's objects in `build`."""
    rows = []
    names = (
        "failstop_core.c.o",
        "failstop_frames.c.o",
        "failstop_hooks.c.o",
        "modfailstop.c.o",
        "failstop_hal.c.o",
        "failstop_glue.c.o",
    )
    found = [o for o in (build / "cmake").rglob("*.o") if o.name in names]
    for o in sorted(found, key=lambda o: names.index(o.name)):
        out = subprocess.run(
            ["arm-none-eabi-size", "-A", str(o)], capture_output=True, text=True, check=True
        ).stdout
        code = ram = 0
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                if parts[0].startswith((".text", ".rodata")):
                    code += int(parts[1])
                elif parts[0].startswith((".data", ".bss", ".uninitialized_data")):
                    ram += int(parts[1])
        rows.append((o.name.removesuffix(".c.o") + ".o", code, ram))
    return rows


def panic_to_prompt() -> tuple[list[float], list[float], list[float], list[float]]:
    """Per run: typed -> reset, reset -> prompt, typed -> prompt (emulated ms), and the
    host's wall-clock ms from typing to the prompt."""
    to_reset, to_prompt, total, wall = [], [], [], []
    with PicoBoard(BOARD) as board:
        board.start()
        assert board.wait_for(re.escape(PROMPT), timeout=20), board.output()
        for i in range(RUNS):
            start = len(board.output())
            t0 = time.monotonic()
            board.write(f"import machine; machine.panic('bench {i}')\r".encode())
            banner = board.wait_for(rb"failstop: reboot after PANIC[^\r]*\r\n", 30, start=start)
            assert banner, board.output(start)
            assert board.wait_for(re.escape(PROMPT), timeout=30, start=banner.end())
            t1 = time.monotonic()
            board.settle()
            st = board.status()
            boot_at = board.boot_sim_ms()[i + 2]
            to_reset.append(boot_at - st["in_sim_ms"])
            to_prompt.append(st["out_sim_ms"] - boot_at)
            total.append(st["out_sim_ms"] - st["in_sim_ms"])
            wall.append((t1 - t0) * 1000)
        assert board.watchdog_resets() == RUNS, board.boot_reasons()
    return to_reset, to_prompt, total, wall


# (corpus script, what it does, the fault path's entry function)
FAULTS = [
    ("oom_bytearray.py", "OOM, 3 frames", "__wrap_m_malloc_fail"),
    (
        "stack_recursion.py",
        "STACK, recursion to the stack limit",
        "__wrap_mp_raise_recursion_depth",
    ),
    ("purse.py", "PANIC (exception escaping fragile())", "failstop_fault"),
    ("watchdog_hang.py", "WATCHDOG (early warning: timer alarm as NMI)", "failstop_fault"),
    ("hardfault.py", "HARDFAULT (bus error, from isr_hardfault)", "failstop_fault"),
    ("purse.py", "... PANIC, from the free-heap scan on", "fs_heap_free"),
]
SCRIPTS = ROOT / "host_tests" / "scripts"


def fault_paths() -> list[tuple[str, str, dict[str, int]]]:
    """Each fault as main.py on a fresh board, its path measured by the runner's probe."""
    rows = []
    for script, what, entry in FAULTS:
        with (
            tempfile.TemporaryDirectory() as d,
            PicoBoard(
                BOARD, flash=Path(d) / "flash.img", probe=[entry], probe_end="failstop_hal_reset"
            ) as board,
        ):
            board.start()
            assert board.wait_for(re.escape(PROMPT), timeout=20), board.output()
            cp = subprocess.run(
                [sys.executable, "-m", "mpremote", "connect", board.port, "fs", "cp",
                 str(SCRIPTS / script), ":main.py"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert cp.returncode == 0, cp.stdout + cp.stderr
            board.power_cycle(max_boots=3)
            assert board.wait_for(rb"LAST", timeout=60), board.output()
            board.settle()
            (probe,) = board.probes()
            rows.append((what, entry, probe))
    return rows


def main() -> int:
    for elf in (STOCK, BOARD, LEAN):
        if not elf.exists():
            sys.exit(
                f"bench_rp2: {elf} missing (make firmware-RPI_PICO-stock firmware-RPI_PICO;"
                " make firmware-RPI_PICO FAILSTOP_PROFILE=lean)"
            )
    f_stock = STOCK.with_suffix(".bin").stat().st_size
    f_mod = BOARD.with_suffix(".bin").stat().st_size
    f_lean = LEAN.with_suffix(".bin").stat().st_size
    h_stock, h_mod = heap(STOCK), heap(BOARD)
    _, retained = elf_symbol(BOARD, RETAINED_SYMBOL)
    objs, lean_objs = objects(BUILD), objects(LEAN.parent)
    to_reset, to_prompt, total, wall = panic_to_prompt()
    paths = fault_paths()

    d_ram = h_stock - h_mod
    lines = [
        "# RP2040 figures (RPI_PICO, rp2040js)",
        "",
        "Measured by `make bench` (`firmware/bench_rp2.py`) on this machine: MicroPython 1.25.0,",
        "rp2 port, pico-sdk 2.1.1, `arm-none-eabi-gcc` 12.2, Cortex-M0+ Thumb.",
        "",
        "## Size of the module",
        "",
        "The stock `RPI_PICO` firmware (`make firmware-RPI_PICO-stock`: the same tree and frozen",
        "manifest, no failstop) against failstop's (`make firmware BOARD=RPI_PICO`). Flash is",
        "the size of the flash image (`firmware.bin`); RAM is what the module takes from",
        "MicroPython's GC heap, which gets the SRAM the static data leaves over.",
        "",
        "| | stock | with failstop | cost |",
        "|---|---:|---:|---:|",
        f"| flash image | {f_stock:,} B | {f_mod:,} B | **{f_mod - f_stock:,} B** |",
        f"| flash image, lean profile | {f_stock:,} B | {f_lean:,} B |"
        f" **{f_lean - f_stock:,} B** |",
        f"| GC heap | {h_stock:,} B | {h_mod:,} B | **{d_ram:,} B** |",
        "",
        f"Of the RAM: the retained region {retained:,} B, the larger USB CDC transmit FIFO"
        f" {CDC_TX_EXTRA} B",
        "(1 KiB instead of tinyusb's 256 B, so the banner after a fail-stop reboot waits for the",
        "host in full), the early banner buffer and the module's other static data"
        f" {d_ram - retained - CDC_TX_EXTRA:,} B.",
        "",
        "Per object (code + read-only data; static RAM, the retained region included):",
        "",
        "| object | code | RAM | lean: code | lean: RAM |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| `{n}` | {c:,} B | {r:,} B | {lc:,} B | {lr:,} B |"
            for (n, c, r), (_, lc, lr) in zip(objs, lean_objs)
        ],
        f"| **module code** | **{sum(c for _, c, _ in objs):,} B** | |"
        f" **{sum(c for _, c, _ in lean_objs):,} B** | |",
        f"| qstrs, tables, alignment (the rest of the flash difference) | "
        f"{f_mod - f_stock - sum(c for _, c, _ in objs):,} B | |"
        f" {f_lean - f_stock - sum(c for _, c, _ in lean_objs):,} B | |",
        "",
        "## Fault path",
        "",
        "Each fault as `main.py` on a fresh emulated board; the runner watches SP and the",
        "clock from the first instruction of the entry function (as a debugger's watchpoint",
        "would): the deepest stack below the SP at entry, and emulated time (125 MHz), up to",
        "`failstop_hal_reset` (the record is written) and up to the chip reset (the USB",
        "drain included: the banner goes out to the host first).",
        "",
        "| fault | entry | stack to record | stack to reset | record written | reset |",
        "|---|---|---:|---:|---:|---:|",
        *[
            f"| {what} | `{entry}` | {p['end_stack']} B | {p['stack']} B |"
            f" {p['end_ns'] / 1000:,.0f} µs | {p['ns'] / 1000:,.0f} µs |"
            for what, entry, p in paths
        ],
        "",
        "The last row starts at the free-heap scan (`heap_free` in the record, a walk over the",
        "240 KiB heap's allocation table): nearly all the time to the record is that scan, as",
        "on unix (`MICROPY_FAILSTOP_HEAP_FREE=0` drops it). The STACK path fits in the",
        "stack-check margin with room to spare: rp2's 256 B plus",
        "`MICROPY_FAILSTOP_RP2_STACK_EXTRA` (512 B) = 768 B against"
        f" {max(p['stack'] for _, _, p in paths)} B at most here",
        "(an interrupt taken on the way adds its frame; the fault path turns interrupts off).",
        "",
        "## machine.panic() to the REPL after the reboot",
        "",
        f"{RUNS} panics typed at the REPL of one emulated Pico over its USB serial; every reboot",
        "goes through the RP2040 watchdog (TRIGGER). Emulated time (rp2040js, 125 MHz clock),",
        "from the device taking the last byte of the typed line to the device sending the",
        "prompt after the reboot:",
        "",
        f"- typed line to the watchdog reset (REPL compile, record, USB drain): {ms(to_reset)}",
        f"- reset to the REPL prompt (boot, USB enumeration by the host, banner): {ms(to_prompt)}",
        f"- in all: **{ms(total)}**",
        "",
        "Of the reset-to-prompt time, 16 ms are MicroPython's own: what the board printed",
        "before the host opened the port is held for 16 USB frames after it did.",
        f"Host wall clock for the same, typing to prompt seen: {ms(wall)}",
        "(the emulator runs slower than real time while the CPU is busy, never faster).",
        "",
        "The reset waits for the fault banner to leave over USB, at most",
        "`MICROPY_FAILSTOP_RP2_USB_DRAIN_MS` (50 ms) and only while output is pending; on a real",
        "Pico the host's re-enumeration after the reset (hundreds of ms on a desktop) comes on",
        "top of the reset-to-prompt time here, where the emulated host enumerates at once.",
        "",
    ]
    write_doc(OUT, lines, ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
