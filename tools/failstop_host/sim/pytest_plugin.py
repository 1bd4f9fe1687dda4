"""pytest plugin (entry point ``pytest11: failstop``): a simulated failstop board.

    def test_commit_survives_oom(failstop_device):
        run = failstop_device.run("firmware/main.py", oom_at=("main.py", 10))
        assert run.record.kind == "OOM"
        assert run.reboots == 1

Relative paths are taken from pytest's root directory. The board's resources come from
``@pytest.mark.failstop_device(heap_size=..., stack_limit=..., op_ns=..., wdt_max_ms=...,
uptime_start_ms=..., missing_modules=..., small_int_bits=...)`` (see
failstop_host.sim.Resources), or a board's preset, ``board="RPI_PICO"`` / ``"MPS2_AN385"``
/ ``"unix"`` (Resources.board; the other arguments override it); each test gets a fresh
board with fresh retained RAM.

What the program finds in ``machine`` besides the simulator's own (``Pin``, ``I2C``, ...)
comes from the ``failstop_machine_stubs`` fixture (a dict, empty unless a conftest.py
overrides it) updated by the marker's ``machine_stubs={"Pin": FakePin}``.

Defaults for every test, on the command line or in the ini file (the command line wins, a
marker's ``board=`` wins over both): ``--failstop-board NAME`` / ``failstop_board`` (the
preset when the marker names none) and ``--failstop-timeout SECONDS`` /
``failstop_timeout`` (the wall-clock timeout of ``run`` and ``exec``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

from .config import BOARDS, Resources

if TYPE_CHECKING:
    from .host import SimDevice


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("failstop", "failstop simulated board (failstop_device fixture)")
    boards = ", ".join(BOARDS)
    group.addoption(
        "--failstop-board",
        metavar="NAME",
        help=f"board preset of failstop_device when its marker names none ({boards})",
    )
    group.addoption(
        "--failstop-timeout",
        metavar="SECONDS",
        type=float,
        help="wall-clock timeout of failstop_device.run (default 60) and .exec (default 30)",
    )
    parser.addini("failstop_board", f"board preset of failstop_device ({boards})", default="")
    parser.addini("failstop_timeout", "wall-clock timeout (s) of failstop_device runs", default="")


def _board(config: pytest.Config) -> Optional[str]:
    name = config.getoption("failstop_board") or config.getini("failstop_board") or None
    if name is not None and name not in BOARDS:
        raise pytest.UsageError(f"failstop board {name!r}: one of {', '.join(BOARDS)}")
    return str(name) if name is not None else None


def _timeout(config: pytest.Config) -> Optional[float]:
    value = config.getoption("failstop_timeout")
    if value is None:
        text = str(config.getini("failstop_timeout")).strip()
        try:
            value = float(text) if text else None
        except ValueError:
            raise pytest.UsageError(f"failstop_timeout = {text!r}: not a number") from None
    if value is not None and value <= 0:
        raise pytest.UsageError("failstop timeout must be positive")
    return float(value) if value is not None else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "failstop_device(board=None, heap_size=None, stack_limit=100, op_ns=1000, "
        "wdt_max_ms=3600000, uptime_start_ms=0, missing_modules=(), small_int_bits=63, "
        "machine_stubs=None): the simulated board the failstop_device fixture gives",
    )
    _board(config)  # a wrong name or number is a usage error before any test runs
    _timeout(config)


@pytest.fixture
def failstop_machine_stubs() -> dict[str, Any]:
    """Names for the simulated ``machine`` module (e.g. ``{"Pin": FakePin}``): override
    this fixture in a conftest.py for every test there; a marker's ``machine_stubs``
    adds to it."""
    return {}


@pytest.fixture
def failstop_device(
    request: pytest.FixtureRequest, tmp_path: Path, failstop_machine_stubs: dict[str, Any]
) -> Iterator[SimDevice]:
    """A simulated failstop board (failstop_host.sim.SimDevice) with fresh retained RAM."""
    from .host import SimDevice  # only when a test asks for a board (it needs fork)

    marker = request.node.get_closest_marker("failstop_device")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    stubs = {**failstop_machine_stubs, **(kwargs.pop("machine_stubs", None) or {})}
    board = kwargs.pop("board", None) or _board(request.config)
    resources = Resources.board(board, **kwargs) if board else Resources(**kwargs)
    yield SimDevice(
        tmp_path / "failstop-device",
        resources,
        base=request.config.rootpath,
        machine_stubs=stubs,
        timeout=_timeout(request.config),
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[Any, Any, None]:
    """A failing test that used the board gets its console (every run's) in the report,
    as a section "failstop console"."""
    outcome = yield
    report = outcome.get_result()
    device = getattr(item, "funcargs", {}).get("failstop_device")
    if report.when == "call" and report.failed and device is not None and device.consoles:
        text = "".join(
            f"--- run {i} ---\n{out}" + ("" if out.endswith("\n") else "\n")
            for i, out in enumerate(device.consoles, 1)
        )
        report.sections.append(("failstop console", text))
