"""What the board benchmarks (bench_qemu.py, bench_rp2.py) share: timing summaries and
writing their page in docs/."""

from __future__ import annotations

import statistics
from pathlib import Path


def ms(xs: list[float]) -> str:
    """Median, p90 and minimum of times in milliseconds."""
    q = statistics.quantiles(xs, n=10)
    return f"median {statistics.median(xs):.1f} ms, p90 {q[-1]:.1f} ms, min {min(xs):.1f} ms"


def write_doc(out: Path, lines: list[str], root: Path) -> None:
    """Write the page and show it."""
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"[bench] wrote {out.relative_to(root)}")
