"""A simulated board's processes end with their driver.

Every boot is a process forked by the driver (and an OOM sweep forks from a boot). When
the driver dies however it dies (pytest-timeout, SIGTERM, SIGKILL), Linux kills the boot
with the parent-death signal, so a ``while True:`` device never runs on as an orphan.
ctypes and prctl are looked up here, at import, in the driver: after a fork the child only
calls them (no import between fork and the boot's own code).
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

_PR_SET_PDEATHSIG = 1
_prctl: Optional[Any] = None
try:
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):  # not Linux: no parent-death signal
    _prctl = None


def die_with_parent(parent: int) -> None:
    """In a freshly forked child: SIGKILL when ``parent`` (the forking process) ends; if it
    has ended already, end now."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(70)
