"""Every configuration option of the C module and its HALs is documented once, on its
`// FAILSTOP_CONFIG:` line next to the `#ifndef` that gives its default, and listed in
docs/config.md with that default."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
MARKER = re.compile(r"^\s*// FAILSTOP_CONFIG: (\w+), (.+), type=(bool|int|string), default=(.+)$")
IFNDEF = re.compile(r"^#ifndef (MICROPY_FAILSTOP_\w+)$")


def sources() -> list[Path]:
    return sorted(
        p for d in ("modules", "ports") for p in (ROOT / d).rglob("*") if p.suffix in (".h", ".c")
    )


def markers() -> dict[str, tuple[str, str, Path]]:
    found: dict[str, tuple[str, str, Path]] = {}
    for path in sources():
        for line in path.read_text().splitlines():
            m = MARKER.match(line)
            if m:
                name, _, _, default = m.groups()
                assert name not in found, f"{name} documented twice: {found[name][2]}, {path}"
                found[name] = (m.group(3), default, path)
    return found


def test_every_option_with_a_default_has_its_marker_line() -> None:
    docs = markers()
    for path in sources():
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = IFNDEF.match(line)
            if m and i + 1 < len(lines) and lines[i + 1].startswith(f"#define {m.group(1)} "):
                assert m.group(1) in docs, f"{path}:{i + 1}: {m.group(1)} has no FAILSTOP_CONFIG line"
                assert MARKER.match(lines[i - 1]), f"{path}:{i}: the marker goes right above"


def test_docs_config_lists_every_option_with_its_default() -> None:
    table = {}
    for line in (ROOT / "docs/config.md").read_text().splitlines():
        m = re.match(r"^\| `(MICROPY_FAILSTOP_\w+)` \| (.+?) \| (.+?) \|", line)
        if m:
            table[m.group(1)] = (m.group(2).strip("`"), m.group(3).strip("`"))
    want = {name: (typ, default) for name, (typ, default, _) in markers().items()}
    assert table == want
    assert len(want) >= 16
