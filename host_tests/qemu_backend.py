"""The corpus backend for the MPS2_AN385 board in QEMU (see emulated_backend)."""

from __future__ import annotations

from pathlib import Path

from backends import MICROPY_VERSION, firmware_path, require_built, unavailable
from emulated_backend import EmulatedBackend
from failstop_host.emulator import EmulatorError, QemuBoard

# The default MPS2_AN385 firmware (MicroPython MICROPY_VERSION).
QEMU_FW = firmware_path("QEMU_FW")


def qemu_board(tmp_path: Path, micropython: str = MICROPY_VERSION, lean: bool = False) -> QemuBoard:
    """The emulated MPS2_AN385 (off) with its flash in `tmp_path`, its firmware built on
    `micropython` (or the lean profile's); skip or fail if it cannot run."""
    if lean:
        fw, opt = firmware_path("QEMU_FW_LEAN"), " FAILSTOP_PROFILE=lean"
    else:
        fw = firmware_path("QEMU_FW", micropython)
        opt = "" if micropython == MICROPY_VERSION else f" MICROPY_VERSION={micropython}"
    require_built(fw, f"make firmware BOARD=MPS2_AN385{opt}")
    try:
        return QemuBoard(fw, flash=tmp_path / "flash.img")
    except EmulatorError as e:
        unavailable(f"QEMU board unavailable: {e}")


def make_backend(
    tmp_path: Path, micropython: str = MICROPY_VERSION, lean: bool = False
) -> EmulatedBackend:
    name = "qemu" if micropython == MICROPY_VERSION else f"qemu-mp{micropython}"
    if lean:
        name += "-lean"
    return EmulatedBackend(name, qemu_board(tmp_path, micropython, lean), micropython, lean=lean)
