"""make demo-unix: the product's main job, narrated. Boots the firmware, runs the seed's Purse
example (its commit phase faults inside failstop.fragile() while a broad except waits to
swallow it), shows the board rebooting, and reads the record back with the host tool.

Board: the unix-port firmware (retained RAM is a file, a reset re-executes the binary).
`make demo` runs the same on the emulated MPS2_AN385 board (firmware/demo.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FW = Path(os.environ.get("FAILSTOP_UNIX_FW", ROOT / "build/unix/micropython")).resolve()
SCRIPT = ROOT / "host_tests/scripts/purse.py"


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def main() -> int:
    retained = Path(tempfile.mkdtemp(prefix="failstop-demo-")) / "retained.ram"
    env = dict(os.environ, FAILSTOP_RETAINED=str(retained), FAILSTOP_MAX_BOOTS="5")
    step(f"board: unix firmware {FW.relative_to(ROOT)}, retained RAM in {retained}")
    step(
        "the program: purse.py (the seed's prepare-commit Purse;"
        " a broad `except Exception` around the call)"
    )
    for n, line in enumerate(SCRIPT.read_text().splitlines(), 1):
        if 19 <= n <= 38:
            print(f"    {n:3} {line}")
    step("boot 1: run it; the commit phase divides by zero inside failstop.fragile()")
    p = subprocess.run(
        [str(FW), SCRIPT.name],
        cwd=SCRIPT.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for line in p.stdout.splitlines():
        print(f"    | {line}")
    if "ZALGO" in p.stdout:
        print("demo failed: the except clause swallowed the fault", file=sys.stderr)
        return 1
    step("the except clause never ran; the board rebooted and boot 2 printed failstop.last()")
    step(
        "host: failstop decode <retained RAM>  (the same report `failstop log` gives over mpremote)"
    )
    d = subprocess.run(
        [sys.executable, "-m", "failstop_host", "decode", str(retained)],
        capture_output=True,
        text=True,
    )
    for line in d.stdout.splitlines():
        print(f"    {line}")
    if d.returncode != 0:
        print(d.stderr, file=sys.stderr)
        return 1
    step("done: fail-stop, recorded, rebooted, read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
