"""The supported mpremote range at both ends: pyproject.toml's floor (``mpremote>=X``) and
the pin in firmware/requirements-dev.txt. Each gets its own virtual environment (pip,
cached under $FAILSTOP_CACHE/mpremote-venvs, outside the repository) with only that
mpremote and the package's other dependencies; this tree's package runs from it, and
`failstop log` (the command that uses mpremote's transport) reads the emulated MPS2_AN385
board: a record, as --json, checked against the board's RAM; and a running program with an
armed watchdog, interrupted, read and restarted with nothing recorded.

The board is the MPS2_AN385 in QEMU, not the unix firmware: the unix port's REPL has no
raw REPL (Ctrl-A), which is mpremote's protocol."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest

from backends import ROOT, SCRIPTS
from emulated_backend import at_repl, mpremote
from failstop_host import codec
from failstop_host.emulator import PROMPT
from qemu_backend import qemu_board

CACHE = Path(os.environ.get("FAILSTOP_CACHE", Path.home() / ".cache" / "failstop"))


def floor() -> str:
    m = re.search(r'"mpremote>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert m is not None, "pyproject.toml: no mpremote>= floor"
    return m.group(1)


def pin() -> str:
    text = (ROOT / "firmware/requirements-dev.txt").read_text()
    m = re.search(r"^mpremote==([0-9.]+)$", text, re.M)
    assert m is not None, "firmware/requirements-dev.txt: no mpremote== pin"
    return m.group(1)


def exact(version: str) -> str:
    """A floor such as 1.22 is the release 1.22.0."""
    return version if version.count(".") >= 2 else version + ".0"


def env_with(version: str) -> Path:
    """The python of a virtual environment with mpremote ``version`` (made once, cached)."""
    py = f"py{sys.version_info.major}.{sys.version_info.minor}"
    home = CACHE / "mpremote-venvs" / f"mpremote-{version}-{py}"
    if not (home / "ready").exists():
        CACHE.joinpath("mpremote-venvs").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}-"))
        venv.EnvBuilder(with_pip=True).create(tmp)
        pip = subprocess.run(
            [
                str(tmp / "bin/python"), "-m", "pip", "install", "-q",
                "--disable-pip-version-check", f"mpremote=={version}", "pyserial>=3.5",
                "pyelftools>=0.30",
            ],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if pip.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"pip install mpremote=={version} failed:\n{pip.stdout}{pip.stderr}")
        (tmp / "ready").write_text(version)
        shutil.rmtree(home, ignore_errors=True)
        tmp.rename(home)  # venv scripts are not used (their shebang names tmp): python -m
    return home / "bin/python"


def failstop(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FAILSTOP_PORT"))}
    env["PYTHONPATH"] = str(ROOT / "tools")  # this tree's package, that env's mpremote
    return subprocess.run(
        [str(python), "-m", "failstop_host", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_the_range_is_a_range() -> None:
    from failstop_host import device

    assert floor() == device.MPREMOTE_FLOOR  # what `failstop log` asks for is pyproject's
    assert device._version(exact(floor())) <= device._version(pin())
    assert device._version("1.30.0rc0.post101") == (1, 30, 0)


def test_an_mpremote_below_the_floor_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older mpremote fails in its transport with a TypeError deep inside (1.24: no
    SerialTransport(timeout=)); `failstop log` says which version it needs instead."""
    import importlib.metadata

    from failstop_host import device

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.24.1")
    with pytest.raises(device.DeviceError, match=r"needs mpremote 1\.25 or newer, not 1\.24\.1"):
        device._mpremote()


@pytest.mark.parametrize("end", ["floor", "pin"])
def test_failstop_log_with_mpremote_at(end: str, tmp_path: Path) -> None:
    version = exact(floor()) if end == "floor" else pin()
    python = env_with(version)
    mp = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, failstop_host.device as d;"
         "d._mpremote(); print(m.version('mpremote'))"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tools")},
    )  # fmt: skip
    assert mp.returncode == 0 and mp.stdout.strip() == version, mp.stdout + mp.stderr

    with at_repl(qemu_board(tmp_path)) as board:
        # A record: purse.py's commit faults inside fragile(); the board reboots.
        p = mpremote(board.port, "fs", "cp", str(SCRIPTS / "purse.py"), ":main.py")
        assert p.returncode == 0, p.stdout + p.stderr
        board.power_cycle()
        assert board.wait_for(re.escape(PROMPT), timeout=30), board.output()
        log = failstop(python, "log", "-p", board.port, "--json")
        assert log.returncode == 0, log.stdout + log.stderr
        region, rec = [json.loads(ln) for ln in log.stdout.splitlines()]
        ram = codec.decode_region(board.retained())
        assert rec == json.loads(json.dumps(ram.records[-1].to_json()))
        assert region == {"region": json.loads(json.dumps(codec.region_json(ram)))}

        # A running program with a 1.5 s watchdog: interrupted, read, restarted.
        p = mpremote(board.port, "fs", "cp", str(SCRIPTS / "watchdog_ticking.py"), ":main.py")
        assert p.returncode == 0, p.stdout + p.stderr
        board.power_cycle()  # RAM lost: no records
        assert board.wait_for(rb"tick 3\r\n", timeout=30), board.output()
        resets = board.resets
        log = failstop(python, "log", "-p", board.port, "--all")
        assert log.returncode == 1, log.stdout + log.stderr
        assert "no fault records" in log.stderr
        assert "interrupted and restarted (soft reset)" in log.stderr
        after = board.output_end()
        assert board.wait_for(rb"tick 5\r\n", timeout=30, start=after), board.output(after)
        assert board.resets == resets and codec.decode_region(board.retained()).records == ()
