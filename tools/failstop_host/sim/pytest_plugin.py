"""pytest plugin (entry point ``pytest11: failstop``): a simulated failstop board.

    def test_commit_survives_oom(failstop_device):
        run = failstop_device.run("firmware/main.py", oom_at=3)
        assert run.record.kind == "OOM"
        assert run.reboots == 1

Relative paths are taken from pytest's root directory. The board's resources come from
``@pytest.mark.failstop_device(heap_size=..., stack_limit=..., op_ns=..., wdt_max_ms=...,
uptime_start_ms=..., missing_modules=...)`` (see failstop_host.sim.Resources), or a board's
preset, ``board="RPI_PICO"`` / ``"MPS2_AN385"`` / ``"unix"`` (Resources.board; the other
arguments override it); each test gets a fresh board with fresh retained RAM.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .config import Resources

if TYPE_CHECKING:
    from .host import SimDevice


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "failstop_device(board=None, heap_size=None, stack_limit=100, op_ns=1000, "
        "wdt_max_ms=3600000, "
        "uptime_start_ms=0, missing_modules=()): "
        "resources of the simulated board the failstop_device fixture gives",
    )


@pytest.fixture
def failstop_device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimDevice]:
    """A simulated failstop board (failstop_host.sim.SimDevice) with fresh retained RAM."""
    from .host import SimDevice  # only when a test asks for a board (it needs fork)

    marker = request.node.get_closest_marker("failstop_device")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    board = kwargs.pop("board", None)
    resources = Resources.board(board, **kwargs) if board else Resources(**kwargs)
    yield SimDevice(tmp_path / "failstop-device", resources, base=request.config.rootpath)


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
