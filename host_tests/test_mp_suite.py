"""MicroPython's own test suite (tests/run-tests.py from the source tree the firmware was
built from) on the unix firmware with failstop, against the same firmware without it.

Every test runs in a fresh process with a fresh retained region and no reboot
(FAILSTOP_MAX_BOOTS=1): a fail-stop fault ends the test as it would end a board's
program. The tests whose result differs from the stock build must be exactly the ones
listed in docs/micropython-tests.md, each ended by a fail-stop OOM or STACK fault (the
tests probe for MemoryError/RuntimeError on purpose; `failstop.recoverable()` is how a
program says it wants that)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends import ROOT, require_built, unavailable
from conftest import UNIX_FW

CACHE = Path(os.environ.get("FAILSTOP_CACHE", Path.home() / ".cache/failstop"))
MICROPY_DIR = Path(os.environ.get("MICROPY_DIR", CACHE / "src/micropython-1.25.0"))
STOCK = Path(os.environ.get("FAILSTOP_UNIX_STOCK", ROOT / "build/unix-stock/micropython"))
# run-tests.py's directories for the unix port; tests that need micropython-lib's
# unittest (not in the source package) are left out.
DIRS = ("basics", "micropython", "misc", "extmod", "float", "import", "io", "stress")
DIRS += ("unicode", "cmdline", "ports/unix")
DOC = ROOT / "docs/micropython-tests.md"

WRAPPER = """#!/bin/sh
f=$(mktemp "{tmp}/ram.XXXXXX")
FAILSTOP_RETAINED="$f" FAILSTOP_MAX_BOOTS=1 "{fw}" "$@"
rc=$?
rm -f "$f"
exit $rc
"""


def run_suite(binary: Path, files: list[str], results: Path) -> dict[str, str]:
    """{test file: pass/FAIL/skip} from run-tests.py."""
    env = dict(os.environ, MICROPY_MICROPYTHON=str(binary))
    cross = MICROPY_DIR / "mpy-cross/build/mpy-cross"
    if cross.exists():
        env["MICROPY_MPYCROSS"] = str(cross)
    p = subprocess.run(
        [sys.executable, "run-tests.py", "-j1", "-r", str(results), *files],
        cwd=MICROPY_DIR / "tests",
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    got = dict(
        (m.group(2), m.group(1))
        for m in re.finditer(r"^(pass|FAIL|skip) +(\S+\.py)", p.stdout, re.MULTILINE)
    )
    assert got, p.stdout + p.stderr
    return got


def documented() -> set[str]:
    return set(re.findall(r"^\| `(\S+\.py)` \|", DOC.read_text(), re.MULTILINE))


# Two runs of ~980 tests, one job each (run-tests.py's lines interleave with two): a few
# minutes on a loaded machine, more than make test's default per-test timeout.
@pytest.mark.timeout(1200)
def test_micropython_suite_differs_only_by_fail_stop_faults(tmp_path: Path) -> None:
    require_built(UNIX_FW, "make firmware BOARD=unix")
    require_built(STOCK, "make firmware-unix-stock")
    tests_dir = MICROPY_DIR / "tests"
    if not (tests_dir / "run-tests.py").exists():
        unavailable(f"no MicroPython tests/run-tests.py in {MICROPY_DIR}")
    files = sorted(
        str(f.relative_to(tests_dir))
        for d in DIRS
        for f in (tests_dir / d).glob("*.py")
        if "import unittest" not in f.read_text(errors="replace")
    )
    assert len(files) > 900
    wrapper = tmp_path / "micropython-failstop"
    wrapper.write_text(WRAPPER.format(tmp=tmp_path, fw=UNIX_FW))
    wrapper.chmod(0o755)
    stock = run_suite(STOCK, files, tmp_path / "stock")
    ours = run_suite(wrapper, files, tmp_path / "failstop")
    assert len(stock) == len(ours) == len(files), (len(stock), len(ours), len(files))
    differ = {t for t in files if stock.get(t) != ours.get(t)}
    flaky = sorted(differ - documented())
    if flaky:
        # Timing tests (select_poll_eintr, ...) can fail once on a loaded machine: a
        # difference must show again when the two are rerun on their own.
        again_stock = run_suite(STOCK, flaky, tmp_path / "stock-again")
        again_ours = run_suite(wrapper, flaky, tmp_path / "failstop-again")
        differ = (differ & documented()) | {t for t in flaky if again_stock[t] != again_ours[t]}
    assert differ == documented(), sorted(differ ^ documented())
    for t in differ:
        out = (tmp_path / "failstop" / (t.replace("/", "_") + ".out")).read_bytes()
        assert re.search(rb"failstop: (OOM|STACK) -> REBOOT", out), (t, out[-300:])
    # The rest passes as on stock (a test failing on both is an environment matter).
    assert sum(r == "pass" for r in ours.values()) > 850


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
