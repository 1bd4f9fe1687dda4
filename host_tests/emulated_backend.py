"""Corpus backends for emulated boards (MPS2_AN385 in QEMU, the Pico in rp2040js), driven
the way a user drives a board: the script is copied to the board's flash as main.py with
real mpremote over the console's pseudo-terminal, the board is power-cycled, and the
console shows every boot until the program ends at the REPL. The retained region is read
from the emulator's RAM (as a debug probe reads it); `exec` runs code at the REPL through
mpremote."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Optional, TypeVar

from backends import MICROPY_VERSION, SCRIPTS, RunResult
from failstop_host import codec
from failstop_host.emulator import PROMPT, ConsoleBoard

HALT = re.compile(rb"failstop: \w+ -> HALT")
B = TypeVar("B", bound=ConsoleBoard)


@contextlib.contextmanager
def at_repl(board: B) -> Iterator[B]:
    """`board` powered on and waiting at its REPL; off (and closed) afterwards."""
    with board:
        board.start()
        assert board.wait_for(re.escape(PROMPT), timeout=20), board.output()
        yield board


def mpremote(port: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class EmulatedBackend:
    """A corpus backend on an emulated board (a QemuBoard or a PicoBoard)."""

    def __init__(
        self,
        name: str,
        board: ConsoleBoard,
        micropython: str = MICROPY_VERSION,
        lean: bool = False,
    ) -> None:
        self.name = name
        self.board = board
        self.micropython = micropython
        self.lean = lean  # the lean profile's firmware

    def main_file(self, script: str) -> str:
        return "main.py"

    def install(self, script: str) -> None:
        """Copy `script` to the board's flash as main.py (the board is on, at the REPL)."""
        if not self.board.running:
            self.board.start()
        if self.board.wait_for(re.escape(PROMPT), timeout=20) is None:
            raise AssertionError(f"no REPL prompt:\n{self.board.output().decode(errors='replace')}")
        p = mpremote(self.board.port, "fs", "cp", str(SCRIPTS / script), ":main.py")
        assert p.returncode == 0, f"mpremote fs cp failed: {p.stdout}{p.stderr}"

    def run(
        self, script: str, max_boots: int = 12, timeout: float = 60.0, halt_wait: float = 0.5
    ) -> RunResult:
        self.install(script)
        self.board.power_cycle(max_boots=max_boots)  # RAM lost (a fresh region), flash kept
        deadline = time.monotonic() + timeout
        end: Optional[str] = None
        halted_at: Optional[float] = None
        resets = 0
        while end is None:
            if time.monotonic() > deadline:
                out = self.board.output().decode(errors="replace")
                self.board.stop()
                raise TimeoutError(f"{script}: still running after {timeout} s:\n{out}")
            out_b = self.board.output()
            if self.board.capped:
                end = "boot_limit"
            elif halted_at is not None:
                if time.monotonic() - halted_at > halt_wait:
                    # Halted for a debugger: still on, and no reset since.
                    if not self.board.running or self.board.resets != resets:
                        raise AssertionError(f"{script}: not halted:\n{out_b.decode()}")
                    end = "halt"
            elif out_b.endswith(PROMPT):
                end = "exit"  # the program ended; the board waits at the REPL
            elif HALT.search(out_b):
                halted_at, resets = time.monotonic(), self.board.resets
            if end is None:
                time.sleep(0.05)  # let output arrive
        self.board.settle()
        output = self.board.output().decode(errors="replace")
        return RunResult(output, end, None, self.region())

    def exec(self, code: str, timeout: float = 30.0) -> str:
        p = mpremote(self.board.port, "exec", code, timeout=timeout)
        return p.stdout + p.stderr

    def region(self) -> codec.Region:
        return codec.decode_region(self.board.retained())

    def close(self) -> None:
        self.board.close()
