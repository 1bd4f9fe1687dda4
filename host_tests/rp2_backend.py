"""The corpus backend for the Raspberry Pi Pico (RPI_PICO firmware) in rp2040js (see
emulated_backend): the same mpremote workflow over the board's USB serial."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backends import ROOT, firmware_path, require_built, unavailable
from emulated_backend import EmulatedBackend
from failstop_host.emulator import EmulatorError
from failstop_host.pico import PicoBoard

PICO_FW = Path(os.environ.get("FAILSTOP_PICO_FW", ROOT / "build/RPI_PICO/firmware.uf2")).resolve()


def pico_board(tmp_path: Path, lean: bool = False, **options: Any) -> PicoBoard:
    """An emulated Pico (off) with its flash in `tmp_path` (the lean profile's firmware if
    `lean`); skip or fail if it cannot run."""
    fw = firmware_path("PICO_FW_LEAN") if lean else PICO_FW
    require_built(fw, "make firmware BOARD=RPI_PICO" + (" FAILSTOP_PROFILE=lean" if lean else ""))
    try:
        return PicoBoard(fw, flash=tmp_path / "flash.img", **options)
    except EmulatorError as e:
        unavailable(f"emulated Pico unavailable: {e}")


def make_backend(tmp_path: Path, lean: bool = False) -> EmulatedBackend:
    return EmulatedBackend("rp2-lean" if lean else "rp2", pico_board(tmp_path, lean), lean=lean)
