"""failstop's CPython simulator: device scripts that ``import failstop, machine`` run
unmodified on the host, on a simulated board with a heap, a stack, a watchdog, retained
RAM and resets, and faults injected deterministically. Records are the firmware's bytes.

    from failstop_host.sim import SimDevice
    run = SimDevice("/tmp/board").run("main.py", oom_at=3)

See docs/simulator.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import Inject, Resources

if TYPE_CHECKING:
    from .host import BootReport, SimDevice, SimError, SimRun, SimTimeout
    from .retained import FIRMWARE

# The board itself (fork, tracer, device modules) is imported when first used, so that
# the pytest plugin costs nothing in test sessions that never ask for a board.
_LAZY = {
    "BootReport": "host",
    "SimDevice": "host",
    "SimError": "host",
    "SimRun": "host",
    "SimTimeout": "host",
    "FIRMWARE": "retained",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
