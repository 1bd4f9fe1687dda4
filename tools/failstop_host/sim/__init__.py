"""failstop's CPython simulator: device scripts that ``import failstop, machine`` run
unmodified on the host, on a simulated board with a heap, a stack, a watchdog, retained
RAM and resets, and faults injected deterministically. Records are the firmware's bytes.

    from failstop_host.sim import SimDevice
    run = SimDevice("/tmp/board").run("main.py", oom_at=3)

See docs/simulator.md."""

from .config import Inject, Resources
from .host import BootReport, SimDevice, SimError, SimRun, SimTimeout
from .retained import FIRMWARE

__all__ = [
    "FIRMWARE",
    "BootReport",
    "Inject",
    "Resources",
    "SimDevice",
    "SimError",
    "SimRun",
    "SimTimeout",
]
