"""docs/config.md from the `// FAILSTOP_CONFIG:` lines of the C sources (modules/, ports/):
every option of the module and its HALs, documented once, next to its default.
`python firmware/configdoc.py` rewrites the file; host_tests/test_config.py checks it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs/config.md"
MARKER = re.compile(r"^\s*// FAILSTOP_CONFIG: (\w+), (.+), type=(bool|int|string), default=(.+)$")


class Option(NamedTuple):
    name: str
    text: str
    type: str
    default: str
    path: Path


def options() -> list[Option]:
    found: list[Option] = []
    for d in ("modules", "ports"):
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix not in (".h", ".c"):
                continue
            for line in path.read_text().splitlines():
                m = MARKER.match(line)
                if m:
                    found.append(Option(*m.groups(), path.relative_to(ROOT)))  # type: ignore[arg-type]
    return found


HEAD = """# Configuration

Every option of the C module and its HALs, with its default. Each is documented once in
the source, on a `// FAILSTOP_CONFIG:` line above the `#ifndef` that gives the default;
this page is made from those lines (`python firmware/configdoc.py`;
host_tests/test_config.py checks that it is up to date). Set an option with `-D` in your
port's `CFLAGS` / `target_compile_definitions`, or in the port's `failstop_port.h`, which
is included before the defaults.

## Profiles

`make firmware BOARD=MPS2_AN385 FAILSTOP_PROFILE=lean` (also `BOARD=RPI_PICO`) builds the
lean profile into `build/<BOARD>-lean/`: `MICROPY_FAILSTOP_LEAN=1`, which turns the feature
options below off by default. The lean module keeps the fail-stop promise for panic, OOM,
STACK, FATAL (uncaught NLR, failed asserts), the watchdog and CPU faults (HARDFAULT with
PC and LR, no message text), the record and its crash-loop counting (safe mode included),
`mark()` and `last()`; its API is `panic`, `last`, `watchdog`, `feed`, `mark` and `Record`.
In a build of your own, pass `-DMICROPY_FAILSTOP_LEAN=1` (make: `FAILSTOP_PROFILE=lean`
is read by `micropython.mk`; CMake: `-DFAILSTOP_PROFILE=lean`), and turn single features
back on with their options.

The record format is the same in both profiles: the host tools read either (an OOM
record without its text is reported with MicroPython's text, written from `alloc_size`).

## Options

| option | type | default | file | what it does |
|---|---|---|---|---|
"""

TAIL = """
Port interface macros (not options; a port's `failstop_port.h` sets them when it needs
to): `FAILSTOP_TLS` (storage class of the shadow frame stack: `__thread` on unix and
ESP32), `FAILSTOP_NCORES` and `FAILSTOP_CORE_ID()` (cores that run Python without a GIL:
2 on the RP2040).
"""


def render() -> str:
    rows = [f"| `{o.name}` | {o.type} | `{o.default}` | {o.path} | {o.text} |" for o in options()]
    return HEAD + "\n".join(rows) + "\n" + TAIL


if __name__ == "__main__":
    OUT.write_text(render())
    sys.exit(0)
