"""The simulator's pytest plugin, the way a user gets it: `pip install` of this repository
into a fresh virtual environment, then pytest in a separate throwaway project whose tests
use the `failstop_device` fixture (found through the package's pytest11 entry point)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

ROOT = Path(__file__).parent.parent

FIRMWARE = """
import failstop

balance = {"a": 100, "b": 0}


def transfer(n):
    with failstop.fragile():
        balance["a"] -= n
        receipt = "moved %d" % n
        balance["b"] += n
    return receipt


r = failstop.last()
if r:
    print("RECOVERED", r.kind, r.location)
else:
    try:
        for i in range(5):
            print(transfer(10))
    except Exception:
        print("ZALGO", balance)  # must never run: a fault is fail-stop
    print("TOTAL", balance["a"] + balance["b"])
"""

TESTS = """
import pytest


def test_clean_run(failstop_device):
    run = failstop_device.run("firmware/main.py")
    assert run.end == "exit" and run.boots == 1 and run.record is None
    assert run.lines("TOTAL") == ["100"]


def test_oom_in_a_transfer_reboots_with_a_record(failstop_device):
    points = failstop_device.measure("firmware/main.py").allocs
    run = failstop_device.run("firmware/main.py", oom_at=points // 2)
    assert run.reboots == 1 and "ZALGO" not in run.output
    rec = run.record
    assert (rec.kind, rec.action, rec.exc_type) == ("OOM", "REBOOT", "MemoryError")
    assert rec.location.file == "main.py"
    assert run.lines("RECOVERED")[0].startswith("OOM ('main.py'")


def test_every_allocation_point(failstop_device):
    for run in failstop_device.sweep_oom("firmware/main.py"):
        assert "ZALGO" not in run.output
        assert run.record.kind in ("OOM", "PANIC") and run.end == "exit"


@pytest.mark.failstop_device(stack_limit=1)
def test_a_tiny_stack(failstop_device):
    run = failstop_device.run("firmware/main.py", max_boots=1)  # <module> + transfer: 2
    assert run.record.kind == "STACK" and run.end == "boot_limit"


@pytest.mark.failstop_device(board="RPI_PICO")
def test_a_pico_watchdog_tops_out_at_8388_ms(failstop_device, tmp_path):
    (tmp_path / "wdt.py").write_text(
        "import failstop\\n"
        "failstop.watchdog(8388)\\n"
        "try:\\n"
        "    failstop.watchdog(10000)\\n"
        "except ValueError as e:\\n"
        "    print('REFUSED', e)\\n"
    )
    run = failstop_device.run(str(tmp_path / "wdt.py"))
    assert run.lines("REFUSED") == ["timeout_ms must be 1..8388"]
"""


def test_plugin_from_a_fresh_pip_install(tmp_path: Path) -> None:
    # The package as pip sees it: a copy of what pyproject.toml builds from (a build in
    # the working tree would leave build/ and egg-info behind).
    src = tmp_path / "failstop-src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    (src / "docs").mkdir()
    shutil.copy(ROOT / "docs/host.md", src / "docs")
    shutil.copytree(
        ROOT / "tools/failstop_host",
        src / "tools/failstop_host",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin/python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(src), "pytest"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr

    project = tmp_path / "throwaway"
    (project / "firmware").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (project / "firmware/main.py").write_text(textwrap.dedent(FIRMWARE).lstrip())
    (project / "tests/test_firmware.py").write_text(textwrap.dedent(TESTS).lstrip())
    where = subprocess.run(
        [str(py), "-c", "import failstop_host.sim as s; print(s.__file__)"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir)  # the installed copy
    result = subprocess.run(
        [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout


def test_a_failing_test_shows_the_board_console(tmp_path: Path) -> None:
    """With the plugin (its entry point; the module from this tree), a failing test's
    report carries what the simulated board printed."""
    (tmp_path / "main.py").write_text("print('VALVE OPEN')\nprint('PRESSURE', 7 * 6)\n")
    (tmp_path / "test_x.py").write_text(
        "def test_pressure(failstop_device):\n"
        "    run = failstop_device.run('main.py')\n"
        "    assert run.lines('PRESSURE') == ['41']\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_x.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "failstop console" in out and "--- run 1 ---" in out, out
    assert "VALVE OPEN" in out and "PRESSURE 42" in out
