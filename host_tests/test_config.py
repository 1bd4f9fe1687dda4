"""Every configuration option of the C module and its HALs is documented once, on its
`// FAILSTOP_CONFIG:` line right above the `#ifndef` that gives its default, and
docs/config.md (made from those lines by firmware/configdoc.py) is up to date."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "firmware"))

import configdoc  # noqa: E402

IFNDEF = re.compile(r"^#ifndef (MICROPY_FAILSTOP_\w+)$")


def test_every_option_is_documented_once_right_above_its_default() -> None:
    opts = configdoc.options()
    names = [o.name for o in opts]
    assert len(names) == len(set(names)), "an option documented twice"
    assert len(names) >= 17
    for path in sorted(p for d in ("modules", "ports") for p in (ROOT / d).rglob("*.[ch]")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = IFNDEF.match(line)
            if m and i + 1 < len(lines) and lines[i + 1].startswith(f"#define {m.group(1)} "):
                above = configdoc.MARKER.match(lines[i - 1]) if i > 0 else None
                assert above and above.group(1) == m.group(1), (
                    f"{path}:{i + 1}: {m.group(1)} has no FAILSTOP_CONFIG line right above"
                )


def test_docs_config_is_made_from_the_sources() -> None:
    assert (ROOT / "docs/config.md").read_text() == configdoc.render(), (
        "docs/config.md is out of date: python firmware/configdoc.py"
    )
