"""Shared fixtures: `board` is every backend that can run the device-script corpus.

Backends: "unix" (the unix-port firmware), "qemu" (the MPS2_AN385 Cortex-M3 firmware in
QEMU, through mpremote over a pty), "rp2" (the RPI_PICO firmware in rp2040js, the same
way), "sim" (the CPython simulator). FAILSTOP_BACKENDS (comma-separated) narrows the set.
A backend whose firmware is not built is skipped with the reason (backends.unavailable);
`make test` builds them all and sets FAILSTOP_REQUIRE_ALL, which turns such a skip into a
failure."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The host package of this checkout, in this process and in every `python -m failstop_host`
# a test starts: never what another checkout installed into the shared virtualenv (the
# simulator's pytest plugin imports the package before this file runs: `make test` sets
# PYTHONPATH; a mismatch is an error, not a silent test of other code).
_TOOLS = str(Path(__file__).resolve().parent.parent / "tools")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_TOOLS, os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, _TOOLS)
_loaded = sys.modules.get("failstop_host")
if _loaded is not None and not str(_loaded.__file__).startswith(_TOOLS + os.sep):
    raise pytest.UsageError(
        f"failstop_host is imported from {_loaded.__file__}, not from this checkout's {_TOOLS}:"
        f" run `make test`, or PYTHONPATH={_TOOLS} pytest"
    )

from backends import OTHER_MICROPY, Board, UnixBackend, firmware_path, require_built  # noqa: E402

ROOT = Path(__file__).parent.parent
UNIX_FW = firmware_path("UNIX_FW")

# "<backend>-mp<version>": the same backend on the firmware built from another MicroPython.
ALL_BACKENDS = (
    "unix",
    *(f"unix-mp{v}" for v in OTHER_MICROPY),
    "qemu",
    *(f"qemu-mp{v}" for v in OTHER_MICROPY),
    "rp2",
    "sim",
    # The lean profile's firmware (FAILSTOP_PROFILE=lean): the tests marked `lean` only.
    "qemu-lean",
    "rp2-lean",
)
# Backends that live in their own module here: name -> module with
# `make_backend(tmp_path) -> Board` (it calls backends.unavailable when it cannot run).
BACKEND_MODULES = {"qemu": "qemu_backend", "rp2": "rp2_backend", "sim": "sim_backend"}


def backends() -> list[str]:
    wanted = os.environ.get("FAILSTOP_BACKENDS", ",".join(ALL_BACKENDS)).split(",")
    here = Path(__file__).parent
    present = [
        b
        for b in ALL_BACKENDS
        if (base := b.split("-mp")[0].removesuffix("-lean")) not in BACKEND_MODULES
        or (here / f"{BACKEND_MODULES[base]}.py").exists()
    ]
    return [b for b in present if b in wanted]


def make_board(name: str, tmp_path: Path) -> Board:
    if name.endswith("-lean"):
        lean_mod = importlib.import_module(BACKEND_MODULES[name.removesuffix("-lean")])
        lean_board: Board = lean_mod.make_backend(tmp_path, lean=True)
        return lean_board
    base, _, version = name.partition("-mp")
    if base == "unix":
        if not version:
            require_built(UNIX_FW, "make firmware BOARD=unix")
            return UnixBackend(UNIX_FW, tmp_path)
        fw = firmware_path("UNIX_FW", version)
        require_built(fw, f"make firmware BOARD=unix MICROPY_VERSION={version}")
        return UnixBackend(fw, tmp_path, name=name, micropython=version)
    mod = importlib.import_module(BACKEND_MODULES[base])
    board: Board = mod.make_backend(tmp_path, version) if version else mod.make_backend(tmp_path)
    return board


@pytest.fixture(params=backends())
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Board]:
    b = make_board(request.param, tmp_path)
    try:
        yield b
    finally:
        close = getattr(b, "close", None)
        if close is not None:
            close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lean: the corpus test also runs on the lean profile's firmware (qemu-lean, rp2-lean)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A lean backend runs only the tests marked `lean` (what the lean profile has);
    the rest are deselected for it, not skipped."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("board") if callspec is not None else None
        lean_only = isinstance(backend, str) and backend.endswith("-lean")
        (drop if lean_only and item.get_closest_marker("lean") is None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
