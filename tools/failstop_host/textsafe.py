"""Make device-provided text safe to print on a terminal.

A fault record or a serial line carries text the device chose: file names, exception
messages, the breadcrumb mark. Printed raw, such text could move the cursor, clear the screen,
retitle the window, or reorder what is shown (bidi overrides). :func:`escape` turns every such
character into a visible escape, so one field always prints as one inert line.
"""

from __future__ import annotations

# Bidirectional formatting characters ("Trojan Source"): embeddings and overrides
# U+202A..U+202E, isolates U+2066..U+2069, and the marks LRM, RLM, ALM.
_BIDI = frozenset(
    [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C]
)
# Line and paragraph separators: some terminals and viewers break lines on them.
_SEPARATORS = frozenset([0x2028, 0x2029])


def _needs_escape(cp: int) -> bool:
    return cp < 0x20 or 0x7F <= cp <= 0x9F or cp in _BIDI or cp in _SEPARATORS


def escape(s: str) -> str:
    """Escape ``s`` for a terminal.

    C0 controls (newline and tab included), DEL and C1 controls become ``\\xNN``; bidi
    formatting characters and line/paragraph separators become ``\\uNNNN``; a backslash
    becomes ``\\\\`` so the escaping cannot be faked by the device. All other characters,
    including non-ASCII text, are kept.
    """
    if s.isprintable() and "\\" not in s and not any(ord(c) in _BIDI for c in s):
        # Fast path. isprintable() is False for every C0/C1 control, DEL and U+2028/9.
        return s
    out = []
    for ch in s:
        cp = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif _needs_escape(cp):
            out.append(f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}")
        else:
            out.append(ch)
    return "".join(out)


def escape_bytes(data: bytes) -> str:
    """Decode device bytes as UTF-8 (invalid sequences become U+FFFD) and escape them."""
    return escape(data.decode("utf-8", "replace"))
