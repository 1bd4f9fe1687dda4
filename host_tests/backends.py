"""Backends that run the device-script corpus: each boots a (real or simulated) board,
runs a script as its main program on every boot until the script ends, and returns
the output of all boots plus the retained region, decoded by the host codec.

Only the unix firmware exists here so far; QEMU, RP2040 and the simulator plug in with
the same interface, so the same scripts and expectations run on every backend."""

from __future__ import annotations

import ast
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Optional, Protocol

import pytest

from failstop_host import codec

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).parent.parent

# The MicroPython version of the default firmware builds (build/unix/, build/MPS2_AN385/,
# build/RPI_PICO/), and the other versions `make test` builds the unix and MPS2_AN385
# firmware for (build/<board>-mp<version>/); each is one more corpus backend.
MICROPY_VERSION = os.environ.get("FAILSTOP_MICROPY_VERSION", "1.25.0")
OTHER_MICROPY = ("1.26.1",)
_FIRMWARE = {
    "UNIX_FW": "unix{}/micropython",
    "UNIX_STOCK": "unix-stock{}/micropython",
    "QEMU_FW": "MPS2_AN385{}/firmware.elf",
    # The lean profile (make firmware BOARD=... FAILSTOP_PROFILE=lean), default version only.
    "QEMU_FW_LEAN": "MPS2_AN385-lean{}/firmware.elf",
    "PICO_FW_LEAN": "RPI_PICO-lean{}/firmware.uf2",
}


def firmware_path(kind: str, micropython: str = MICROPY_VERSION) -> Path:
    """The firmware `kind` ("UNIX_FW", "UNIX_STOCK", "QEMU_FW") built on `micropython`:
    FAILSTOP_<kind> (the default version) or FAILSTOP_<kind>_1_26_1 (another), else its
    place in build/."""
    if micropython == MICROPY_VERSION:
        var, suffix = f"FAILSTOP_{kind}", ""
    else:
        var, suffix = f"FAILSTOP_{kind}_{micropython.replace('.', '_')}", f"-mp{micropython}"
    default = ROOT / "build" / _FIRMWARE[kind].format(suffix)
    return Path(os.environ.get(var, default)).resolve()


def unavailable(reason: str) -> NoReturn:
    """A backend or firmware a test needs is missing: skip with the reason, or fail when
    FAILSTOP_REQUIRE_ALL is set (`make test` builds everything, so nothing may be missing)."""
    if os.environ.get("FAILSTOP_REQUIRE_ALL"):
        pytest.fail(f"required (FAILSTOP_REQUIRE_ALL): {reason}")
    pytest.skip(reason)


def require_built(path: Path, make: str) -> None:
    """`path` is a firmware that `make` builds; call `unavailable` when it is not there."""
    if not path.exists():
        unavailable(f"{path.name} not built ({path}): run `{make}`")


@dataclass
class RunResult:
    output: str  # every boot's console output, in order
    end: str  # "exit" (program ended), "boot_limit", "halt"
    exit_code: Optional[int]
    region: codec.Region

    @property
    def boots(self) -> int:
        assert self.region.header is not None, self.region.header_error
        return self.region.header.boot_count

    def lines(self, prefix: str) -> list[str]:
        return [
            ln[len(prefix) + 1 :] for ln in self.output.splitlines() if ln.startswith(prefix + " ")
        ]

    def last(self) -> list[tuple]:
        """The records the device printed with `print("LAST", repr(...))`, one per boot."""
        return [ast.literal_eval(s) for s in self.lines("LAST")]


def fault_line(script: str, nth: int = 0, tag: str = "# FAULT") -> int:
    """Line number of the nth line of a corpus script marked with `# FAULT`."""
    hits = [i for i, ln in enumerate((SCRIPTS / script).read_text().splitlines(), 1) if tag in ln]
    return hits[nth]


class Board(Protocol):
    """What the corpus needs from a backend (real firmware or simulator)."""

    name: str
    micropython: str  # the MicroPython version the firmware was built from
    lean: bool  # the lean profile (FAILSTOP_PROFILE=lean): only tests marked `lean` run on it

    def main_file(self, script: str) -> str:
        """The file name the board records for `script` run as its main program (unix runs
        the script under its own name, a board runs it as main.py)."""
        ...

    def run(
        self, script: str, max_boots: int = 12, timeout: float = 60.0, halt_wait: float = 0.5
    ) -> RunResult:
        """Run `script` (in SCRIPTS) as the main program from power-on (fresh retained RAM)
        through every fail-stop reboot until it ends, halts, or hits max_boots."""
        ...

    def exec(self, code: str, timeout: float = 30.0) -> str:
        """Run a snippet at the REPL (not as the main program); return its output."""
        ...

    def region(self) -> codec.Region:
        """The retained region as it is now, decoded by the host codec."""
        ...


class UnixBackend:
    """The unix-port firmware: retained RAM is a file, a reset re-executes the binary."""

    def __init__(
        self,
        firmware: Path,
        workdir: Path,
        name: str = "unix",
        micropython: str = MICROPY_VERSION,
    ) -> None:
        self.name = name
        self.micropython = micropython
        self.lean = False
        self.firmware = firmware
        self.retained = workdir / "retained.ram"
        self.board_env: dict[str, str] = {}  # e.g. FAILSTOP_UPTIME_MS: the board's condition

    def _env(self, max_boots: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAILSTOP_")}
        env.update(self.board_env)
        env["FAILSTOP_RETAINED"] = str(self.retained)
        env["FAILSTOP_MAX_BOOTS"] = str(max_boots)
        return env

    def main_file(self, script: str) -> str:
        return script

    def region(self) -> codec.Region:
        return codec.decode_region(self.retained.read_bytes())

    def run(
        self, script: str, max_boots: int = 12, timeout: float = 60.0, halt_wait: float = 0.5
    ) -> RunResult:
        """Run `script` as main program from power-on until it ends (or halts)."""
        proc = subprocess.Popen(
            [str(self.firmware), script],
            cwd=SCRIPTS,
            env=self._env(max_boots),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + timeout
        halted_at: Optional[float] = None
        fd = proc.stdout.fileno()
        while True:
            now = time.monotonic()
            if now > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(
                    f"{script}: still running after {timeout} s:\n{out.decode(errors='replace')}"
                )
            if halted_at is not None and now - halted_at > halt_wait:
                # Halted for a debugger: it must still be alive, not reset or exited.
                alive = proc.poll() is None
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if not alive:
                    raise AssertionError(
                        f"{script}: exited after HALT:\n{out.decode(errors='replace')}"
                    )
                return RunResult(out.decode(errors="replace"), "halt", None, self.region())
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
                if halted_at is None and re.search(rb"failstop: \w+ -> HALT", out):
                    halted_at = time.monotonic()
        code = proc.wait()
        end = "boot_limit" if code == 75 else "exit"
        return RunResult(out.decode(errors="replace"), end, code, self.region())

    def exec(self, code: str, timeout: float = 30.0) -> str:
        """Run a snippet at the "REPL" (unix: `-c`, which is not the main program)."""
        p = subprocess.run(
            [str(self.firmware), "-c", code],
            cwd=SCRIPTS,
            env=self._env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        return p.stdout.decode(errors="replace")
