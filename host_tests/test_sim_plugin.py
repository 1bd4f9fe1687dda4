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
    shutil.copy(ROOT / "LICENSE", src)
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
    meta = subprocess.run(
        [
            str(py),
            "-c",
            "from importlib.metadata import distribution as d; m = d('failstop');"
            "print(m.metadata['License-Expression']);"
            "print(*[f for f in m.files if f.name == 'LICENSE'])",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    expression, license_file = meta.stdout.split("\n")[:2]
    assert expression == "MIT" and license_file.endswith("LICENSE"), meta.stdout
    installed = next((env_dir / "lib").glob(f"*/site-packages/{license_file}"))
    assert installed.read_text() == (ROOT / "LICENSE").read_text()
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


def run_pytest(
    project: Path, files: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """pytest with the plugin (its entry point; the module from this tree) in a throwaway
    project made of ``files``."""
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text).lstrip())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )


BLINK = """
from machine import Pin
led = Pin(25, Pin.OUT)
for _ in range(3):
    led.toggle()
print("LED", led.value())
"""

STUB_TESTS = """
import pytest


class FakePin:
    OUT = 1

    def __init__(self, n, mode=0):
        self.n, self.v = n, 0

    def toggle(self):
        self.v ^= 1
        print("PIN", self.n, self.v)

    def value(self):
        return self.v


@pytest.mark.failstop_device(machine_stubs={"Pin": FakePin})
def test_marker_stub(failstop_device):
    run = failstop_device.run("blink.py")
    assert run.lines("PIN") == ["25 1", "25 0", "25 1"] and run.lines("LED") == ["1"]


def test_conftest_stub(failstop_device):
    run = failstop_device.run("blink.py")
    assert run.lines("LED") == ["from conftest"]


def test_no_stub_is_an_import_error(failstop_device):
    run = failstop_device.run("blink.py")  # this file's conftest stubs only for test_conftest_*
    assert run.record.kind == "UNHANDLED" and run.record.exc_type == "ImportError"


@pytest.mark.failstop_device(machine_stubs={"reset": print})
def test_own_names_are_kept(failstop_device):
    pass
"""

STUB_CONFTEST = """
import pytest


class ConftestPin:
    OUT = 1

    def __init__(self, *args):
        pass

    def toggle(self):
        pass

    def value(self):
        return "from conftest"


@pytest.fixture
def failstop_machine_stubs(request):
    return {"Pin": ConftestPin} if request.node.name.startswith("test_conftest") else {}
"""


def test_machine_stubs_through_the_plugin(tmp_path: Path) -> None:
    """A program that drives an LED with machine.Pin runs on the simulated board with the
    test's stub (from the marker, or from a conftest.py's failstop_machine_stubs);
    without one, ``from machine import Pin`` fails as it would on a board without Pin,
    and a stub may not replace the simulator's own machine.reset."""
    result = run_pytest(
        tmp_path,
        {"blink.py": BLINK, "test_blink.py": STUB_TESTS, "conftest.py": STUB_CONFTEST},
    )
    out = result.stdout + result.stderr
    assert "PASSED test_blink.py::test_marker_stub" in out, out
    assert "PASSED test_blink.py::test_conftest_stub" in out, out
    assert "PASSED test_blink.py::test_no_stub_is_an_import_error" in out, out
    assert "ERROR test_blink.py::test_own_names_are_kept" in out, out
    assert "machine_stubs: machine.reset is the simulator's own" in out, out


BOARD_TESTS = """
import pytest
from failstop_host.sim import SimTimeout


def test_watchdog_limit(failstop_device):
    run = failstop_device.run("wdt.py")
    print("LIMIT", run.lines("LIMIT"))


@pytest.mark.failstop_device(board="MPS2_AN385")
def test_marker_board_wins(failstop_device):
    run = failstop_device.run("wdt.py")
    print("LIMIT", run.lines("LIMIT"))


def test_timeout(failstop_device):
    with pytest.raises(SimTimeout):
        failstop_device.run("forever.py")
"""

WDT = """
import failstop
try:
    failstop.watchdog(10**7)
except ValueError as e:
    print("LIMIT", e)
"""


def test_board_and_timeout_defaults_from_the_command_line_and_the_ini_file(
    tmp_path: Path,
) -> None:
    files = {"wdt.py": WDT, "forever.py": "while True:\n    pass\n", "test_b.py": BOARD_TESTS}
    cli = run_pytest(
        tmp_path / "cli", files, "-s", "--failstop-board", "RPI_PICO", "--failstop-timeout", "2"
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "LIMIT ['timeout_ms must be 1..8388']" in cli.stdout
    assert "LIMIT ['timeout_ms must be 1..171798']" in cli.stdout  # the marker's board
    ini = run_pytest(
        tmp_path / "ini",
        {**files, "pytest.ini": "[pytest]\nfailstop_board = RPI_PICO\nfailstop_timeout = 2\n"},
        "-s",
        "--durations=0",
    )
    assert ini.returncode == 0, ini.stdout + ini.stderr
    assert "LIMIT ['timeout_ms must be 1..8388']" in ini.stdout
    timed = [ln for ln in ini.stdout.splitlines() if ln.endswith("test_b.py::test_timeout")]
    assert timed and float(timed[0].split("s ")[0]) < 10, ini.stdout  # 2 s, not 60 s
    plain = run_pytest(tmp_path / "plain", files, "-s", "-k", "watchdog_limit")
    assert plain.returncode == 0 and "LIMIT ['timeout_ms must be 1..3600000']" in plain.stdout
    bad = run_pytest(tmp_path / "bad", files, "--failstop-board", "ESP32")
    assert bad.returncode == 4 and "failstop board 'ESP32': one of unix" in bad.stderr
