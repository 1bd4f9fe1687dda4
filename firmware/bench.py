"""make bench: what the failstop module costs, measured on the unix firmware.

  1. the fault path: instructions from hook entry to the reset request (callgrind),
  2. the C stack the fault path needs (GCC -fcallgraph-info=su on a measurement build),
  3. the hot path: instructions of MicroPython's own tests/perf_bench programs, with and
     without the module linked,
  4. `with failstop.fragile():` against a bare try/except.

Instruction counts are exact and repeatable (callgrind counts, it does not time).
Writes docs/bench-unix.md and prints it."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FW = Path(os.environ.get("FAILSTOP_UNIX_FW", ROOT / "build/unix/micropython")).resolve()
STOCK = Path(os.environ.get("FAILSTOP_UNIX_STOCK", ROOT / "build/unix-stock/micropython")).resolve()
MPY = Path(os.environ["MICROPY_DIR"]).resolve()
SCRIPTS = ROOT / "host_tests/scripts"
# Every program of tests/perf_bench (benchrun.py is their driver).
PERF = sorted(p.stem for p in (MPY / "tests/perf_bench").glob("*.py") if p.name != "benchrun.py")
# Targets (issue "lean and fast"): the median overhead over all programs, and the one
# that resumes generators most (every resume passes the frame-stack wrapper).
TARGET_MEDIAN, TARGET_YIELD_FROM = 0.5, 1.5
TMP = Path(tempfile.mkdtemp(prefix="failstop-bench-"))


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def callgrind(argv: list[str], toggle: str | None = None, cwd: Path = TMP) -> int:
    out = TMP / "cg.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if toggle:
        cmd.append(f"--toggle-collect={toggle}")
    # LD_BIND_NOW: libc symbols resolved at start, so a count is the firmware's own path and
    # not the dynamic linker's first-call resolution (~5,000 instructions a fault path).
    env = dict(
        os.environ,
        FAILSTOP_RETAINED=str(TMP / "bench.ram"),
        FAILSTOP_MAX_BOOTS="1",
        LD_BIND_NOW="1",
    )
    (TMP / "bench.ram").unlink(missing_ok=True)
    subprocess.run(cmd + argv, cwd=cwd, env=env, capture_output=True, check=False)
    text = out.read_text()
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if m is None:
        raise RuntimeError(f"no callgrind totals for {argv}")
    return int(m.group(1))


# Fault-path targets (issue "lean and fast"): on a 128 KiB heap, with the free-heap scan
# and without it.
TARGET_FAULT, TARGET_FAULT_NO_SCAN = 6000, 3500


def fault_path(fw: Path = FW) -> list[tuple[str, str, int, int]]:
    """(fault, hook, instructions from the hook, of which the free-heap scan)."""
    rows = []
    mcu = ["-X", "heapsize=131072"]
    cases = [
        ("PANIC with a str (panic_reasons.py)", "mod_failstop_panic", [*mcu, "panic_reasons.py"]),
        ("OOM, 3 frames (oom_bytearray.py)", "__wrap_m_malloc_fail", [*mcu, "oom_bytearray.py"]),
        (
            "STACK, 178 frames deep (stack_recursion.py)",
            "__wrap_mp_raise_recursion_depth",
            [*mcu, "stack_recursion.py"],
        ),
        (
            "OOM, 3 frames, 2 MiB heap (the unix default)",
            "__wrap_m_malloc_fail",
            ["oom_bytearray.py"],
        ),
    ]
    for name, hook, argv in cases:
        total = callgrind([str(fw), *argv], hook, cwd=SCRIPTS)
        scan = callgrind([str(fw), *argv], "fs_heap_free", cwd=SCRIPTS)
        rows.append((name, hook, total, scan))
    return rows


def measurement_build(name: str, cflags: str) -> Path:
    """The unix firmware with extra CFLAGS, into build/<name>; returns the build directory."""
    build = ROOT / "build" / name
    subprocess.run(
        [
            "make",
            "-C",
            str(MPY / "ports/unix"),
            "-j2",
            "VARIANT=standard",
            "MICROPY_PY_SSL=0",
            "MICROPY_PY_BTREE=0",
            "MICROPY_PY_FFI=1",
            "FROZEN_MANIFEST=",
            "STRIP=",
            f"BUILD={build}",
            f"USER_C_MODULES={ROOT / 'modules'}",
            f"CFLAGS_EXTRA={cflags}",
        ],
        check=True,
        capture_output=True,
    )
    return build


def stack_usage() -> tuple[int, list[str], list[str]]:
    """Deepest C stack of the fault path from the OOM hook, from GCC's call graph."""
    say("measurement build with -fstack-usage -fcallgraph-info=su (build/unix-su)")
    build = measurement_build("unix-su", "-fstack-usage -fcallgraph-info=su")
    nodes: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    for ci in build.rglob("*.ci"):
        text = ci.read_text(errors="replace")
        for m in re.finditer(
            r'node: \{ title: "([^"]+)" label: "[^"]*?\\n[^"]*?\\n(\d+) bytes', text
        ):
            nodes[m.group(1)] = max(nodes.get(m.group(1), 0), int(m.group(2)))
        for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', text):
            edges.setdefault(m.group(1), set()).add(m.group(2))
    unknown: set[str] = set()

    def deepest(fn: str, seen: frozenset[str]) -> tuple[int, list[str]]:
        if fn not in nodes:
            unknown.add(fn)
            return 0, []
        best: tuple[int, list[str]] = (0, [])
        for callee in edges.get(fn, ()):
            if callee in seen or callee.startswith("__real_") or callee == "failstop_boot":
                continue  # the reset ends the path; __real_* is only reached under RAISE
            d = deepest(callee, seen | {callee})
            if d[0] > best[0]:
                best = d
        return nodes[fn] + best[0], [f"{fn.rsplit(':', 1)[-1]} ({nodes[fn]} B)"] + best[1]

    total, path = deepest("__wrap_m_malloc_fail", frozenset({"__wrap_m_malloc_fail"}))
    return total, path, sorted(u for u in unknown if not u.startswith("__real_"))


# libc's SIMD string and memory routines (strcmp, memcpy, ...): how many instructions they
# take depends on the alignment of their arguments (page-cross and vector-alignment paths), and
# every link moves MicroPython's read-only data: +/-0.5% on a program that lexes (bm_hexiom)
# between two builds that differ only in layout. The same calls run in both builds; their
# cost is left out of the comparison.
LAYOUT_NOISE = re.compile(r"__(str|mem|stp|rawmem|wmem|wcs)\w*$")


def self_costs() -> list[tuple[int, str, str]]:
    """(own instructions, function, object) of every function in the last callgrind run."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(TMP / "cg.out")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+\S*:(\S+)(?: \[([^\]]*)\])?$", re.M)
    return [(int(m[1].replace(",", "")), m[2], m[3] or "") for m in line.finditer(out)]


def libc_string_cost() -> int:
    """Instructions of libc's string/memory routines in the last callgrind run."""
    return sum(c for c, fn, obj in self_costs() if "libc.so" in obj and LAYOUT_NOISE.match(fn))


def perf(fw: Path, name: str) -> int:
    src = (MPY / "tests/perf_bench" / f"{name}.py").read_text()
    run = (MPY / "tests/perf_bench/benchrun.py").read_text()
    prog = TMP / f"{name}_run.py"
    prog.write_text(src + "\n" + run + "\nbm_run(100, 100)\n")
    return callgrind([str(fw), str(prog)]) - libc_string_cost()


WRAPPER = "__wrap_mp_execute_bytecode"


def wrapper_cost() -> tuple[int, int]:
    """(calls, own instructions) of the shadow-stack wrapper in the last callgrind run."""
    text = (TMP / "cg.out").read_text()
    names = {m[1]: m[2] for m in re.finditer(r"^c?fn=\((\d+)\) (.*)$", text, re.M)}
    ids = {i for i, n in names.items() if n.split("'")[0] == WRAPPER}
    calls = sum(
        int(m[2]) for m in re.finditer(r"^cfn=\((\d+)\).*\ncalls=(\d+) ", text, re.M) if m[1] in ids
    )
    own = sum(c for c, fn, _ in self_costs() if fn.split("'")[0] == WRAPPER)
    return calls, own


FRAGILE = """
import failstop
def bare(n):
    x = 0
    for i in range(n):
        try:
            x += 1
        except Exception:
            raise
    return x
def fragile(n):
    x = 0
    for i in range(n):
        with failstop.fragile():
            x += 1
    return x
%s(%d)
"""


def per_iteration(kind: str, toggle: str | None = None) -> float:
    costs = []
    for n in (2000, 4000):
        prog = TMP / f"fragile_{kind}_{n}.py"
        prog.write_text(FRAGILE % (kind, n))
        costs.append(callgrind([str(FW), str(prog)], toggle))
    return (costs[1] - costs[0]) / 2000


TARGET_FRAGILE = 1.5


def main() -> None:
    out = [
        "# failstop benchmark figures — unix port (x86-64)",
        "",
        "Made by `make bench` (firmware/bench.py). Instruction counts are callgrind's `Ir`:",
        "exact and repeatable for the same binary and input.",
        "",
    ]
    say("fault path (callgrind, hook entry to the reset request)")
    out += [
        "## Fault path: instructions from hook entry to the reset request",
        "",
        "On a 128 KiB heap (MCU-sized) unless the row says otherwise; the free-heap figure is",
        "a scan of the GC allocation table (`fs_heap_free`, `MICROPY_FAILSTOP_HEAP_FREE`).",
        "Targets: ≤ 6,000 instructions with the scan, ≤ 3,500 without it.",
        "",
        "| fault | measured from | instructions | of which the heap scan | without the scan |",
        "|---|---|---:|---:|---:|",
    ]
    rows = fault_path()
    for name, hook, ir, scan in rows:
        out.append(f"| {name} | `{hook}` | {ir:,} | {scan:,} | {ir - scan:,} |")
    mcu = [r for r in rows if "MiB" not in r[0]]  # the targets are for the 128 KiB heap

    def verdict(over: list[str]) -> str:
        return "met for every fault" if not over else "missed for " + ", ".join(over)

    with_scan = verdict([n.split(",")[0] for n, _, ir, _ in mcu if ir > TARGET_FAULT])
    no_scan = verdict([n.split(",")[0] for n, _, ir, sc in mcu if ir - sc > TARGET_FAULT_NO_SCAN])
    out += [
        "",
        f"With the scan: {with_scan}; without it: {no_scan}.",
        "A STACK fault counts every active frame for the record's `depth` (here 175 past the",
        "three decoded): the frame stack is a linked list on the C stack, walked once.",
    ]
    say("fault path with the smallest code (MICROPY_FAILSTOP_FAST=0, build/unix-small)")
    small = measurement_build("unix-small", "-DMICROPY_FAILSTOP_FAST=0") / "micropython"
    out += [
        "",
        "The full profile builds the fault path for speed (`MICROPY_FAILSTOP_FAST`, see",
        "config.md: a 256-entry CRC32 table, wider loop steps, a recursion's repeated frame",
        "decoded once; ~1.3 KiB of Cortex-M flash). With the smallest code instead",
        "(`MICROPY_FAILSTOP_FAST=0`, the lean profile's choice):",
        "",
        "| fault | instructions | of which the heap scan | without the scan | vs. fast |",
        "|---|---:|---:|---:|---:|",
    ]
    for (name, _, fast, _), (_, _, ir, scan) in zip(rows, fault_path(small)):
        out.append(f"| {name} | {ir:,} | {scan:,} | {ir - scan:,} | {ir / fast:.2f}x |")
    say("fault-path C stack")
    total, path, unknown = stack_usage()
    out += [
        "",
        "## Fault path: C stack",
        "",
        f"Deepest static chain from `__wrap_m_malloc_fail` to the reset: **{total} bytes** "
        "(GCC `-fcallgraph-info=su`, x86-64, -Os):",
        "",
    ]
    out += [f"    {p}" for p in path]
    out += [
        "",
        "Callees outside the measured objects (libc leaves such as memcpy/memset, the HAL's "
        "write/execve) add their own frames: " + ", ".join(f"`{u}`" for u in unknown[:12]) + ".",
    ]
    say("hot path: tests/perf_bench with and without the module")
    out += [
        "",
        "## Hot path: MicroPython's tests/perf_bench, instructions with and without failstop",
        "",
        "Every instruction of the run but those of libc's SIMD string and memory routines",
        "(`__strcmp_avx2`, `__memmove_avx_unaligned_erms`, ...): their count depends on the",
        "alignment of their arguments, which moves with every link (up to ±0.5% on a program that",
        "lexes, between two builds that differ only in layout); both builds make the same calls.",
        "",
        "| program | stock | failstop | overhead |",
        "|---|---:|---:|---:|",
    ]
    tot_s = tot_f = 0
    overhead: dict[str, float] = {}
    s_yf = f_yf = calls = wrapper_own = 0
    for name in PERF:
        s, f = perf(STOCK, name), perf(FW, name)
        if name == "core_yield_from":
            s_yf, f_yf = s, f
            calls, wrapper_own = wrapper_cost()  # of the failstop run just made
        tot_s += s
        tot_f += f
        overhead[name] = 100 * (f - s) / s
        out.append(f"| {name} | {s:,} | {f:,} | {overhead[name]:+.2f}% |")
    out.append(f"| **all** | {tot_s:,} | {tot_f:,} | **{100 * (tot_f - tot_s) / tot_s:+.2f}%** |")
    median = statistics.median(overhead.values())
    yf = overhead.get("core_yield_from", 0.0)
    out += [
        "",
        f"Median over the {len(PERF)} programs: **{median:+.2f}%** (target ≤ +{TARGET_MEDIAN}%:"
        f" {'met' if median <= TARGET_MEDIAN else 'missed'}); `core_yield_from`: **{yf:+.2f}%**"
        f" (target ≤ +{TARGET_YIELD_FROM}%: {'met' if yf <= TARGET_YIELD_FROM else 'missed'}).",
    ]
    floor = 100 * (f_yf - s_yf - wrapper_own + 9 * calls) / max(s_yf, 1)
    out += [
        "",
        f"Of `core_yield_from`'s {f_yf - s_yf:,} extra instructions, {wrapper_own:,} are the"
        f" shadow-stack wrapper's own: {calls:,} bytecode calls and generator resumes at"
        f" {wrapper_own / max(calls, 1):.1f} instructions each (the rest is the boot's, once)."
        " A wrapper cannot take fewer than about 9 (its call and return, the node's two"
        " stores, the head's update and restore, the stack kept 16-byte aligned for the"
        f" call): at that count the program would still cost +{floor:.2f}%.",
    ]
    say("fragile() against try/except")
    bare, frag = per_iteration("bare"), per_iteration("fragile")
    # failstop's own part: the calls of fragile(), __enter__ and __exit__ and the attr slot.
    own = per_iteration("fragile", "mod_failstop_fragile_*")
    ratio = frag / bare
    out += [
        "",
        "## `with failstop.fragile():` against a bare `try/except`",
        "",
        "| block | instructions per iteration |",
        "|---|---:|",
        f"| `try: x += 1` / `except Exception: raise` | {bare:.0f} |",
        f"| `with failstop.fragile(): x += 1` | {frag:.0f} |",
        f"| ... of which failstop's code (`mod_failstop_fragile_*`) | {own:.0f} |",
        "",
        f"Ratio **{ratio:.2f}x** (target ≤ {TARGET_FRAGILE}x: "
        f"{'met' if ratio <= TARGET_FRAGILE else 'missed'}). The rest of the difference is"
        f" MicroPython's own `with` statement ({frag - bare - own:.0f} instructions: the global"
        " and module lookups, two method lookups, three calls through `mp_call_function_n_kw`,"
        " the extra opcodes); even with failstop's part free a `with` block would be"
        f" {(frag - own) / bare:.2f}x a `try` block.",
        "",
    ]
    text = "\n".join(out) + "\n"
    (ROOT / "docs/bench-unix.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
