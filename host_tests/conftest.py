"""Shared fixtures: `board` is every backend that can run the device-script corpus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import UnixBackend

ROOT = Path(__file__).parent.parent
UNIX_FW = Path(os.environ.get("FAILSTOP_UNIX_FW", ROOT / "build/unix/micropython")).resolve()


def backends() -> list[str]:
    return ["unix"]


@pytest.fixture(params=backends())
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UnixBackend]:
    if not UNIX_FW.exists():
        pytest.skip(f"unix firmware not built ({UNIX_FW}): run `make firmware BOARD=unix`")
    yield UnixBackend(UNIX_FW, tmp_path)
