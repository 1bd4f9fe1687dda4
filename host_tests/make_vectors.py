"""Regenerate host_tests/vectors/: retained regions written by the real unix firmware,
each with the records as the firmware's own `failstop.records()` reports them.

    python host_tests/make_vectors.py build/unix/micropython
"""

from __future__ import annotations

import ast
import json
import sys
import tempfile
from pathlib import Path

from backends import UnixBackend

VECTORS = Path(__file__).parent / "vectors"
SCRIPTS = [
    "oom_bytearray.py",
    "stack_recursion.py",
    "panic_reasons.py",
    "purse.py",
    "watchdog_hang.py",
    "double_fault.py",
    "oom_heap_locked.py",
]
FIELDS = (
    "seq",
    "kind",
    "action",
    "reset_cause",
    "boot",
    "uptime_ms",
    "flags",
    "heap_free",
    "alloc_size",
    "stack_used",
    "pc",
    "lr",
    "depth",
    "mark",
    "firmware",
    "exc_type",
    "message",
    "traceback",
)
DUMP = (
    "import failstop\nfor r in failstop.records():\n print('REC', repr(("
    + ", ".join("r." + f for f in FIELDS)
    + ")))"
)


def main(firmware: str) -> None:
    VECTORS.mkdir(exist_ok=True)
    for script in SCRIPTS:
        with tempfile.TemporaryDirectory() as tmp:
            board = UnixBackend(Path(firmware).resolve(), Path(tmp))
            board.run(script)
            region = board.retained.read_bytes()
            out = board.exec(DUMP)
            board.retained.write_bytes(region)  # the dump boot must not be in the vector
        recs = [
            dict(zip(FIELDS, ast.literal_eval(ln[4:])))
            for ln in out.splitlines()
            if ln.startswith("REC ")
        ]
        name = script[:-3]
        (VECTORS / f"{name}.bin").write_bytes(region)
        (VECTORS / f"{name}.json").write_text(json.dumps(recs, indent=1) + "\n")
        print(f"{name}: {len(recs)} records")


if __name__ == "__main__":
    main(sys.argv[1])
