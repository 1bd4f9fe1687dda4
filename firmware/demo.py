"""make demo: the product's main job on the default emulated board, narrated.

Board MPS2_AN385 (Cortex-M3) in QEMU: power on, copy the seed's Purse example to the
board's flash as main.py with mpremote, power-cycle, watch its commit phase fault inside
failstop.fragile() while a broad `except` waits to swallow it, see the board reboot
through its hardware watchdog, and read the record back with `failstop log` (mpremote's
transport over the UART's pseudo-terminal)."""

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

from failstop_host.emulator import PROMPT, QemuBoard  # noqa: E402

FW = Path(os.environ.get("FAILSTOP_QEMU_FW", ROOT / "build/MPS2_AN385/firmware.elf")).resolve()
SCRIPT = ROOT / "host_tests/scripts/purse.py"
BIN = Path(sys.executable).parent
T0 = time.monotonic()


def step(n: int, msg: str) -> None:
    print(f"\n[{n}/6 {time.monotonic() - T0:5.1f}s] {msg}", flush=True)


def show(text: str, prefix: str = "    | ") -> None:
    for line in text.replace("\r\n", "\n").rstrip("\n").splitlines():
        print(prefix + line)


def run(*cmd: str, timeout: float = 60) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        sys.exit(f"demo failed: {' '.join(cmd)} -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


def main() -> int:
    size = run("arm-none-eabi-size", str(FW)).splitlines()[1].split()
    step(
        1,
        f"firmware: {FW.relative_to(ROOT)} (MicroPython 1.25.0 qemu port + failstop; "
        f"text {int(size[0]):,} B, bss {int(size[2]):,} B)",
    )
    flash = Path(tempfile.mkdtemp(prefix="failstop-demo-")) / "flash.img"
    with QemuBoard(FW, flash=flash) as board:
        board.start()
        if board.wait_for(re.escape(PROMPT), timeout=20) is None:
            sys.exit("demo failed: the board did not boot:\n" + board.output().decode())
        step(2, f"power on: QEMU mps2-an385, UART on {board.port}, flash in {flash}")
        show(board.output().decode(errors="replace"))

        step(3, f"install: mpremote connect {board.port} fs cp purse.py :main.py")
        run(str(BIN / "mpremote"), "connect", board.port, "fs", "cp", str(SCRIPT), ":main.py")
        for n, line in enumerate(SCRIPT.read_text().splitlines(), 1):
            if 19 <= n <= 38:
                print(f"    {n:3} {line}")

        step(4, "power cycle: main.py runs; the commit divides by zero inside failstop.fragile()")
        board.power_cycle()
        if board.wait_for(re.escape(PROMPT), timeout=30) is None:
            sys.exit("demo failed: no REPL after the fault:\n" + board.output().decode())
        board.settle()
        console = board.output().decode(errors="replace")
        show(console)
        if "ZALGO" in console:
            sys.exit("demo failed: the except clause swallowed the fault")
        wd = board.events("WATCHDOG")
        step(
            5,
            f"the except clause never ran; the board reset through its watchdog "
            f"(QEMU: {len(wd)} WATCHDOG event, action {wd[0]['data']['action'] if wd else '?'})"
            f" and boot 2 read failstop.last()",
        )
        if not wd:
            sys.exit("demo failed: no watchdog reset seen")

        step(6, f"host: failstop log -p {board.port}   (then --json, for a log pipeline)")
        show(run(str(BIN / "failstop"), "log", "-p", board.port), prefix="    ")
        show(run(str(BIN / "failstop"), "log", "-p", board.port, "--json"), prefix="    ")
    print(f"\ndone in {time.monotonic() - T0:.1f}s: fail-stop, recorded, rebooted, read back.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
