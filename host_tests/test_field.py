"""Field conditions on the unix firmware that a corpus run cannot show: power cuts
between runs that keep the retained RAM (on unix a fresh process is a power-on and the
region is a file), months of uptime, and the default region shared by every process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from backends import SCRIPTS, UnixBackend, require_built
from conftest import UNIX_FW
from failstop_host import codec


@pytest.fixture
def board(tmp_path: Path) -> UnixBackend:
    require_built(UNIX_FW, "make firmware BOARD=unix")
    return UnixBackend(UNIX_FW, tmp_path)


def power_on_until(board: UnixBackend, script: str, marker: bytes, timeout: float = 20) -> bytes:
    """Power the board on (a fresh process, the retained file kept), run `script` until it
    prints `marker` or ends, then cut the power (SIGKILL)."""
    env = board._env(max_boots=8)
    proc = subprocess.Popen(
        [str(board.firmware), script],
        cwd=SCRIPTS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while marker not in out and proc.poll() is None and time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            out += chunk
        else:
            time.sleep(0.01)
    proc.kill()
    proc.wait()
    rest = proc.stdout.read()
    return out + (rest or b"")


def test_power_on_starts_a_fresh_crash_loop_window(board: UnixBackend) -> None:
    """A program that never ends and faults once after each power-on, five power-ons in a
    row: never safe mode (the crash-loop count is per power-on)."""
    for n in range(5):
        out = power_on_until(board, "forever.py", b"RUNNING")
        assert b"RUNNING" in out and b"safe mode" not in out, (n, out)
    hdr = codec.decode_region(board.retained.read_bytes()).header
    assert hdr is not None and hdr.loop_count == 1 and not hdr.safe_mode


def test_saturated_uptime_is_a_long_run_not_a_crash_loop(board: UnixBackend) -> None:
    """Each boot starts 10 ms short of 2^32 ms (49.7 days) of uptime and faults 30 ms later:
    the uptime saturates instead of wrapping to a few ms, so with a limit of one reboot in
    60 s nothing is a crash loop."""
    board.board_env["FAILSTOP_UPTIME_MS"] = str(2**32 - 1 - 10)
    res = board.run("long_uptime.py")
    assert res.end == "exit" and res.boots == 5, res.output
    assert res.lines("LAST") == [f"{2**32 - 1} False"] * 4
    assert res.lines("DONE") == ["False"]


def test_default_region_does_not_carry_a_crash_loop_into_another_program(
    tmp_path: Path,
) -> None:
    """Without FAILSTOP_RETAINED every process of the user shares one region file: one
    program driven into safe mode must not stop the next one from running."""
    require_built(UNIX_FW, "make firmware BOARD=unix")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAILSTOP_")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    env["FAILSTOP_MAX_BOOTS"] = "12"
    first = subprocess.run(
        [str(UNIX_FW), "crash_loop.py"], cwd=SCRIPTS, env=env, capture_output=True, check=False
    )
    assert b"safe mode" in first.stdout + first.stderr
    assert list(tmp_path.glob("failstop-*.ram"))
    other = subprocess.run(
        [str(UNIX_FW), "-c", "import failstop; print('RAN', failstop.safe_mode())"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert other.stdout.decode().strip() == "RAN False", other
