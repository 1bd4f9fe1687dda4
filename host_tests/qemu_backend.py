"""The corpus backend for the MPS2_AN385 board in QEMU (see emulated_backend)."""

from __future__ import annotations

import os
from pathlib import Path

from backends import ROOT, require_built, unavailable
from emulated_backend import EmulatedBackend
from failstop_host.emulator import EmulatorError, QemuBoard

QEMU_FW = Path(os.environ.get("FAILSTOP_QEMU_FW", ROOT / "build/MPS2_AN385/firmware.elf")).resolve()


def qemu_board(tmp_path: Path) -> QemuBoard:
    """The emulated MPS2_AN385 (off) with its flash in `tmp_path`; skip or fail if it
    cannot run."""
    require_built(QEMU_FW, "make firmware BOARD=MPS2_AN385")
    try:
        return QemuBoard(QEMU_FW, flash=tmp_path / "flash.img")
    except EmulatorError as e:
        unavailable(f"QEMU board unavailable: {e}")


def make_backend(tmp_path: Path) -> EmulatedBackend:
    return EmulatedBackend("qemu", qemu_board(tmp_path))
