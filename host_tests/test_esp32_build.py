"""`make firmware BOARD=ESP32_GENERIC` (and _S3, _C3) without ESP-IDF, and the build glue
(ports/esp32/build.sh) with a FAKE idf.py.

There is no ESP-IDF on this machine. Without one the build must stop at once and say what to
install and which versions. With one, build.sh must run MicroPython's own esp32 Makefile
with the failstop module, and that Makefile must call idf.py with the board and
USER_C_MODULES: that is checked with a stand-in `idf.py` (a script written by this test that
records its arguments and writes placeholder outputs), MicroPython 1.25.0's real
ports/esp32/Makefile (from the source tree make deps fetches) in a scratch tree, and a
stand-in for MicroPython's makeimg.py (which needs ESP-IDF's partition tool). Nothing is
compiled: that the firmware builds and links is NOT tested here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_SH = ROOT / "ports" / "esp32" / "build.sh"
BOARDS = ("ESP32_GENERIC", "ESP32_GENERIC_S3", "ESP32_GENERIC_C3")
MICROPY_DIR = Path(
    os.environ.get(
        "MICROPY_DIR",
        Path(os.environ.get("FAILSTOP_CACHE", Path.home() / ".cache" / "failstop"))
        / "src"
        / "micropython-1.25.0",
    )
)
HOOKS = (
    "__wrap_m_malloc_fail",
    "__wrap_mp_raise_recursion_depth",
    "__wrap_pyexec_file_if_exists",
    "__wrap_panic_arch_fill_info",
    "__wrap_panic_soc_fill_info",
    "__wrap_panic_restart",
    "__wrap_esp_system_abort",
    "esp_task_wdt_isr_user_handler",
)


def clean_env(tmp: Path, path_first: Optional[Path] = None) -> dict[str, str]:
    """The environment of a machine without ESP-IDF: no IDF_PATH, no idf.py on PATH, a HOME
    without ~/esp/esp-idf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDF_") and k != "MAKEFLAGS"}
    dirs = [d for d in env.get("PATH", "").split(os.pathsep) if d]
    dirs = [d for d in dirs if not (Path(d) / "idf.py").exists()]
    if path_first is not None:
        dirs.insert(0, str(path_first))
    env["PATH"] = os.pathsep.join(dirs)
    env["HOME"] = str(tmp / "home")
    (tmp / "home").mkdir(exist_ok=True)
    return env


@pytest.mark.parametrize("board", BOARDS)
def test_without_esp_idf_make_firmware_stops_at_once_and_says_what_to_install(
    board: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path)
    env["FAILSTOP_CACHE"] = str(tmp_path / "cache")  # nothing is fetched first
    t0 = time.monotonic()
    p = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "firmware",
            f"BOARD={board}",
            f"BUILD={tmp_path / 'build'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    elapsed = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert elapsed < 10, f"took {elapsed:.1f} s: it must not install or fetch anything first"
    assert not (tmp_path / "cache").exists()
    assert f"{board}: ESP-IDF not found" in out
    assert "v5.2" in out and "5.4.1" in out and "5.4.2" in out
    assert "install.sh esp32,esp32s3,esp32c3" in out and "export.sh" in out


def fake_idf(bindir: Path, version: str, log: Path, nm_symbols: Optional[list[str]] = None) -> None:
    """A stand-in idf.py (NOT ESP-IDF): prints `version` for --version; for `build`, records
    its arguments and writes placeholder outputs where the real one would."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "idf.py"
    script.write_text(
        f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
if "--version" in sys.argv:
    print("ESP-IDF v{version}")
    sys.exit(0)
with open({str(log)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
b = Path(sys.argv[sys.argv.index("-B") + 1])
(b / "bootloader").mkdir(parents=True, exist_ok=True)
(b / "partition_table").mkdir(parents=True, exist_ok=True)
(b / "bootloader" / "bootloader.bin").write_bytes(b"\\xe9placeholder-bootloader")
(b / "partition_table" / "partition-table.bin").write_bytes(b"placeholder-partitions")
(b / "micropython.bin").write_bytes(b"placeholder-app")
(b / "micropython.elf").write_bytes(b"\\x7fELF placeholder")
(b / "sdkconfig").write_text("# placeholder\\n")
"""
    )
    script.chmod(0o755)
    if nm_symbols is not None:
        nm = bindir / "xtensa-esp32-elf-nm"
        lines = "".join(f"400d{i:04x} T {s}\\n" for i, s in enumerate(nm_symbols))
        nm.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
        nm.chmod(0o755)


def scratch_micropython(tmp: Path, board: str, submodules: bool = True, minor: int = 25) -> Path:
    """A scratch MicroPython tree: the real 1.25.0 ports/esp32/Makefile and py/verbose.mk,
    the board's directory, the two submodules (placeholders), and a stand-in makeimg.py."""
    real = MICROPY_DIR / "ports" / "esp32" / "Makefile"
    if not real.exists():
        if os.environ.get("FAILSTOP_REQUIRE_ALL"):
            pytest.fail(f"no MicroPython source at {MICROPY_DIR} (make deps)")
        pytest.skip(f"no MicroPython source at {MICROPY_DIR} (make deps)")
    tree = tmp / "micropython"
    port = tree / "ports" / "esp32"
    (port / "boards" / board).mkdir(parents=True)
    shutil.copy(real, port / "Makefile")
    (tree / "py").mkdir()
    shutil.copy(MICROPY_DIR / "py" / "verbose.mk", tree / "py" / "verbose.mk")
    (tree / "py" / "mpconfig.h").write_text(
        f"#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR {minor}\n"
    )
    if submodules:
        for sub in ("lib/berkeley-db-1.xx", "lib/micropython-lib"):
            (tree / sub).mkdir(parents=True)
            (tree / sub / "README").write_text("placeholder\n")
    (port / "makeimg.py").write_text(
        "# STAND-IN for MicroPython's makeimg.py (which needs ESP-IDF's gen_esp32part).\n"
        "import sys\n"
        "sdkconfig, boot, parts, app, out, uf2 = sys.argv[1:7]\n"
        "data = b''.join(open(p, 'rb').read() for p in (boot, parts, app))\n"
        "open(out, 'wb').write(data)\n"
    )
    return tree


def run_build(
    board: str, out: Path, env: dict[str, str], tree: Optional[Path]
) -> subprocess.CompletedProcess[str]:
    env = dict(env, ROOT=str(ROOT), MICROPY_DIR=str(tree or ""), PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(BUILD_SH), board, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("version", ["5.4.2", "5.5.1", "5.1.4", "6.0"])
def test_unsupported_idf_versions_are_refused(version: str, tmp_path: Path) -> None:
    fake_idf(tmp_path / "bin", version, tmp_path / "idf.log")
    env = clean_env(tmp_path, tmp_path / "bin")
    p = run_build("ESP32_GENERIC", tmp_path / "out", env, None)
    assert p.returncode == 2, p.stdout + p.stderr
    assert (
        f"ESP-IDF v{version if version.count('.') == 2 else version + '.0'} is not supported"
        in p.stdout
    )
    assert not (tmp_path / "idf.log").exists()
    # FAILSTOP_IDF_ANY=1 goes on (to the next check: here, no MicroPython tree).
    p = run_build(
        "ESP32_GENERIC", tmp_path / "out", dict(env, FAILSTOP_IDF_ANY="1"), tmp_path / "none"
    )
    assert (
        p.returncode == 2
        and "building anyway" in p.stdout
        and "no MicroPython esp32 port" in p.stdout
    )


def test_a_tree_without_the_esp32_submodules_is_refused(tmp_path: Path) -> None:
    fake_idf(tmp_path / "bin", "5.2.2", tmp_path / "idf.log")
    tree = scratch_micropython(tmp_path, "ESP32_GENERIC", submodules=False)
    p = run_build("ESP32_GENERIC", tmp_path / "out", clean_env(tmp_path, tmp_path / "bin"), tree)
    assert p.returncode == 2
    assert "lib/berkeley-db-1.xx lib/micropython-lib" in p.stdout
    assert "make -C ~/micropython/ports/esp32 submodules" in p.stdout


@pytest.mark.parametrize(
    ("board", "version"),
    [("ESP32_GENERIC", "5.2.2"), ("ESP32_GENERIC_S3", "5.3.1"), ("ESP32_GENERIC_C3", "5.4.1")],
)
def test_the_idf_py_invocation(board: str, version: str, tmp_path: Path) -> None:
    """With a FAKE idf.py: MicroPython's real esp32 Makefile calls it with the board and
    the failstop module; firmware.bin and firmware.elf end up in build/<BOARD>/."""
    log = tmp_path / "idf.log"
    fake_idf(tmp_path / "bin", version, log, nm_symbols=list(HOOKS))
    tree = scratch_micropython(tmp_path, board)
    out = tmp_path / "build" / board
    p = run_build(board, out, clean_env(tmp_path, tmp_path / "bin"), tree)
    assert p.returncode == 0, p.stdout + p.stderr + (out / "build.log").read_text()
    (call,) = [json.loads(line) for line in log.read_text().splitlines()]
    argv = call["argv"]
    assert Path(call["cwd"]) == tree / "ports" / "esp32"
    joined = " ".join(argv)
    assert f"-D MICROPY_BOARD={board}" in joined
    assert f"-D MICROPY_BOARD_DIR={tree / 'ports' / 'esp32' / 'boards' / board}" in joined
    assert f"-DUSER_C_MODULES={ROOT / 'modules' / 'failstop' / 'micropython.cmake'}" in argv
    assert argv[argv.index("-B") + 1] == str(out / "idf")
    assert argv[-1] == "build"
    assert (out / "firmware.bin").read_bytes().startswith(b"\xe9placeholder-bootloader")
    assert (out / "firmware.elf").exists()
    assert f"ESP-IDF v{version}" in p.stdout


def test_a_missing_hook_fails_the_build(tmp_path: Path) -> None:
    """The linked ELF must carry every hook (a --wrap of a symbol called only inside its
    own file silently does nothing): build.sh checks with the toolchain's nm (a FAKE nm
    here, listing all hooks but one)."""
    fake_idf(tmp_path / "bin", "5.2.2", tmp_path / "idf.log", nm_symbols=[*HOOKS[:-2], HOOKS[-1]])
    tree = scratch_micropython(tmp_path, "ESP32_GENERIC")
    p = run_build("ESP32_GENERIC", tmp_path / "out", clean_env(tmp_path, tmp_path / "bin"), tree)
    assert p.returncode == 1
    assert "hook __wrap_esp_system_abort missing" in p.stdout
    assert not (tmp_path / "out" / "firmware.bin").exists()


def test_dry_run_prints_the_command(tmp_path: Path) -> None:
    fake_idf(tmp_path / "bin", "5.4", tmp_path / "idf.log")
    tree = scratch_micropython(tmp_path, "ESP32_GENERIC_S3")
    env = dict(clean_env(tmp_path, tmp_path / "bin"), FAILSTOP_ESP32_DRY_RUN="1")
    p = run_build("ESP32_GENERIC_S3", tmp_path / "out", env, tree)
    assert p.returncode == 0
    assert "ESP-IDF v5.4.0" in p.stdout
    assert f"USER_C_MODULES={ROOT}/modules/failstop/micropython.cmake" in p.stdout
    assert not (tmp_path / "idf.log").exists()


def test_micropython_1_26_takes_idf_5_4_2(tmp_path: Path) -> None:
    """MicroPython 1.26 calls IDF 5.4.2's renamed panic function: with a 1.26 tree the gate
    moves to 5.4.2; with 1.25 (the default) 5.4.2 is refused."""
    fake_idf(tmp_path / "bin", "5.4.2", tmp_path / "idf.log", nm_symbols=list(HOOKS))
    env = clean_env(tmp_path, tmp_path / "bin")
    tree = scratch_micropython(tmp_path, "ESP32_GENERIC", minor=26)
    p = run_build("ESP32_GENERIC", tmp_path / "out", env, tree)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "idf.log").exists()
    old = scratch_micropython(tmp_path / "old", "ESP32_GENERIC", minor=25)
    p = run_build("ESP32_GENERIC", tmp_path / "out2", env, old)
    assert p.returncode == 2 and "ESP-IDF v5.4.2 is not supported" in p.stdout
