"""The corpus backend for the Raspberry Pi Pico (RPI_PICO firmware) in rp2040js (see
emulated_backend): the same mpremote workflow over the board's USB serial."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backends import ROOT, require_built, unavailable
from emulated_backend import EmulatedBackend
from failstop_host.emulator import EmulatorError
from failstop_host.pico import PicoBoard

PICO_FW = Path(os.environ.get("FAILSTOP_PICO_FW", ROOT / "build/RPI_PICO/firmware.uf2")).resolve()


def pico_board(tmp_path: Path, **options: Any) -> PicoBoard:
    """An emulated Pico (off) with its flash in `tmp_path`; skip or fail if it cannot run."""
    require_built(PICO_FW, "make firmware BOARD=RPI_PICO")
    try:
        return PicoBoard(PICO_FW, flash=tmp_path / "flash.img", **options)
    except EmulatorError as e:
        unavailable(f"emulated Pico unavailable: {e}")


def make_backend(tmp_path: Path) -> EmulatedBackend:
    return EmulatedBackend("rp2", pico_board(tmp_path))
