"""The corpus backend for the MPS2_AN385 board in QEMU (see emulated_backend)."""

from __future__ import annotations

import os
from pathlib import Path

from backends import ROOT, require_built, unavailable
from emulated_backend import EmulatedBackend, mpremote
from failstop_host.emulator import EmulatorError, QemuBoard

__all__ = ["QEMU_FW", "make_backend", "mpremote"]

QEMU_FW = Path(os.environ.get("FAILSTOP_QEMU_FW", ROOT / "build/MPS2_AN385/firmware.elf")).resolve()


def make_backend(tmp_path: Path) -> EmulatedBackend:
    require_built(QEMU_FW, "make firmware BOARD=MPS2_AN385")
    try:
        return EmulatedBackend("qemu", QemuBoard(QEMU_FW, flash=tmp_path / "flash.img"))
    except EmulatorError as e:
        unavailable(f"QEMU board unavailable: {e}")
