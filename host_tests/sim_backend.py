"""The corpus backend for failstop's CPython simulator (tools/failstop_host/sim): each
corpus script is the simulated board's main program (its folder is the board's
filesystem); retained RAM is a file in the test's tmp_path; every boot is a process
forked from the test process and ended at its fault."""

from __future__ import annotations

from pathlib import Path

from backends import SCRIPTS, RunResult
from failstop_host import codec
from failstop_host.sim import Resources, SimDevice
from failstop_host.sim.retained import FIRMWARE


class SimBackend:
    name = "sim"
    micropython = FIRMWARE.split("+")[0]  # the MicroPython semantics it simulates
    lean = False

    def __init__(self, workdir: Path, resources: Resources | None = None) -> None:
        self.device = SimDevice(workdir, resources)

    def main_file(self, script: str) -> str:
        """The simulator runs a script under its own name (as the unix port does)."""
        return script

    def run(
        self, script: str, max_boots: int = 12, timeout: float = 60.0, halt_wait: float = 0.5
    ) -> RunResult:
        """Run `script` as the main program from power-on until it ends (or halts)."""
        r = self.device.run(SCRIPTS / script, max_boots=max_boots, timeout=timeout)
        return RunResult(r.output, r.end, r.exit_code, r.region)

    def exec(self, code: str, timeout: float = 30.0) -> str:
        """Run a snippet at the REPL (not the main program). After a run that ended at the
        REPL the board is not reset, as mpremote types into an emulated board that is on
        (safe mode, boot count and reset cause stay as the run left them)."""
        return self.device.exec(code, timeout, root=SCRIPTS)

    def region(self) -> codec.Region:
        return self.device.region()


def make_backend(tmp_path: Path) -> SimBackend:
    return SimBackend(tmp_path)
