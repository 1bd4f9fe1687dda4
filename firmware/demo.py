"""make demo: the product's main job on the default emulated board, narrated.

Board MPS2_AN385 (Cortex-M3) in QEMU (`make demo-pico`: the Raspberry Pi Pico in
rp2040js, its console USB serial): power on, copy the seed's Purse example to the
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

from failstop_host.emulator import PROMPT, ConsoleBoard, QemuBoard  # noqa: E402
from failstop_host.pico import PicoBoard  # noqa: E402

PICO = sys.argv[1:] == ["RPI_PICO"]
if PICO:
    FW = Path(os.environ.get("FAILSTOP_PICO_FW", ROOT / "build/RPI_PICO/firmware.uf2")).resolve()
else:
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
    size = run("arm-none-eabi-size", str(FW.with_suffix(".elf"))).splitlines()[1].split()
    port = "rp2 port, RPI_PICO" if PICO else "qemu port"
    step(
        1,
        f"firmware: {FW.relative_to(ROOT)} (MicroPython 1.25.0 {port} + failstop; "
        f"text {int(size[0]):,} B, bss {int(size[2]):,} B)",
    )
    flash = Path(tempfile.mkdtemp(prefix="failstop-demo-")) / "flash.img"
    board: ConsoleBoard = PicoBoard(FW, flash=flash) if PICO else QemuBoard(FW, flash=flash)
    with board:
        board.start()
        if board.wait_for(re.escape(PROMPT), timeout=20) is None:
            sys.exit("demo failed: the board did not boot:\n" + board.output().decode())
        where = "rp2040js Raspberry Pi Pico, USB serial" if PICO else "QEMU mps2-an385, UART"
        step(2, f"power on: {where} on {board.port}, flash in {flash}")
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
        if isinstance(board, PicoBoard):
            seen = f"rp2040js: boot reasons {', '.join(board.boot_reasons())}"
        else:
            wd = board.events("WATCHDOG")
            action = wd[0]["data"]["action"] if wd else "?"
            seen = f"QEMU: {len(wd)} WATCHDOG event, action {action}"
        step(
            5,
            f"the except clause never ran; the board reset through its watchdog ({seen})"
            f" and boot 2 read failstop.last()",
        )
        if not board.watchdog_resets():
            sys.exit("demo failed: no watchdog reset seen")

        step(6, f"host: failstop log -p {board.port}   (then --json, for a log pipeline)")
        show(run(str(BIN / "failstop"), "log", "-p", board.port), prefix="    ")
        show(run(str(BIN / "failstop"), "log", "-p", board.port, "--json"), prefix="    ")
    print(f"\ndone in {time.monotonic() - T0:.1f}s: fail-stop, recorded, rebooted, read back.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
