"""Differential tests: every script of the device-script corpus (host_tests/scripts) runs
on the unix firmware and on the CPython simulator, and what they leave is compared field
by field, so the two cannot drift apart.

Compared, on every record: kind, action, seq, boot, reset_cause, exc_type, message,
flags, mark, depth, and every stored frame (file, line, function). On the header:
boot_count, next_seq, seen_seq, pending_cause, boot_cause, loop_count, loop_limit,
loop_window_ms, mark, state. On the run: how it ended, its exit status, and the console
output line by line (banners, tracebacks, what the scripts print).

Not compared, because MicroPython and CPython genuinely differ there:

  heap_free       MicroPython's GC heap and CPython's objects have different sizes; the
                  simulator measures CPython's bytes (tracemalloc) against its heap size.
  alloc_size      the same, except where the failed request is one both see with the same
                  size, bytearray(n): compared for oom_bytearray.py and oom_list_grow.py.
  stack_used      the unix port measures its C stack; the simulator models it
                  (512 B + 448 B a frame).
  uptime_ms,      wall-clock milliseconds on unix, virtual time in the simulator.
  loop_uptime_ms
  firmware        "1.25.0+fs0.1.0" and "1.25.0+fs0.1-sim": meant to tell them apart.
  pc, lr          the host CPU's registers on unix (HARDFAULT); the simulator has no CPU.

Per script (SPECIAL): how deep a stack overflow goes depends on the stack size, so the
simulator's stack is set to the depth the firmware reached, and then depth is compared
too; a HARDFAULT message is each port's own text (a signal on unix, a bus fault of the
simulated board), and the fields a script prints that are not compared are masked in its
output; a script may run on both with months of uptime (FAILSTOP_UPTIME_MS and
Resources.uptime_start_ms), or with the simulator missing a module the unix build does
not have (asyncio). EXCLUDED lists scripts that are not for the unix port or never end.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from backends import SCRIPTS, RunResult, UnixBackend, require_built
from conftest import UNIX_FW
from failstop_host import codec
from failstop_host.sim import Resources
from sim_backend import SimBackend

EXCLUDED = {
    "reset_loop.py": "a QEMU-board script: the unix port has no machine.reset()",
    "forever.py": "never ends, by design (test_field.py power-cycles it on the unix port)",
    "watchdog_ticking.py": "never ends, by design (test_board_host.py reads a running board)",
    "threads_race.py": "which racing thread wins (and what the losers print) is timing",
    "thread_exception.py": "CPython prints an exception escaping a thread its own way",
    "heap_free.py": "prints the free heap: the simulator's is CPython's (test_corpus.py checks it)",
    "watchdog_mark.py": "which mark() the watchdog interrupts is timing",
}
# Scripts of the emulated Pico's own tests (test_rp2_field.py): two cores in lockstep,
# the RUN pin, a stalled USB host, watchdog timing of the RP2040.
EXCLUDED.update(
    (name, "an RP2040 script (test_rp2_field.py)")
    for name in (
        "both_cores_fault.py",
        "core0_fault.py",
        "core1_fault.py",
        "dupterm_tap.py",
        "pin_forever.py",
        "usb_stalled_ctrlc.py",
        "watchdog_budget.py",
        "watchdog_feed_stall.py",
        "watchdog_no_warning.py",
    )
)


@dataclass(frozen=True)
class Special:
    stack_from_unix: bool = False  # sim stack limit := the depth of the unix STACK record
    alloc_size: bool = False  # the failed request is a bytearray(n): sizes compared
    message_differs: tuple[str, ...] = ()  # kinds whose message is port text
    last_masked: tuple[int, ...] = ()  # positions of LAST tuples not compared
    uptime_start_ms: Optional[int] = None  # both boards start every boot at this uptime
    missing_modules: tuple[str, ...] = ()  # the unix firmware has no such module: nor the sim
    notes: str = ""


SPECIAL = {
    "oom_bytearray.py": Special(alloc_size=True),
    "oom_list_grow.py": Special(
        alloc_size=True, last_masked=(4,), notes="LAST prints heap_free (position 4)"
    ),
    "stack_recursion.py": Special(
        stack_from_unix=True, last_masked=(6,), notes="LAST prints stack_used (position 6)"
    ),
    "fragile_base.py": Special(missing_modules=("asyncio",), notes="no asyncio in the unix build"),
    "long_uptime.py": Special(uptime_start_ms=2**32 - 1 - 10, notes="months of uptime"),
    "hardfault.py": Special(message_differs=("HARDFAULT",)),
}

RECORD_FIELDS = [
    "kind",
    "action",
    "seq",
    "boot",
    "reset_cause",
    "exc_type",
    "message",
    "flags",
    "mark",
    "depth",
    "traceback",
]
HEADER_FIELDS = [
    "boot_count",
    "next_seq",
    "seen_seq",
    "pending_cause",
    "boot_cause",
    "loop_count",
    "loop_limit",
    "loop_window_ms",
    "mark",
    "state",
]


def corpus() -> list[str]:
    return sorted(p.name for p in SCRIPTS.glob("*.py") if p.name not in EXCLUDED)


@dataclass
class Pair:
    unix: RunResult
    sim: RunResult
    special: Special = field(default_factory=Special)


def run_both(script: str, tmp_path: Path) -> Pair:
    require_built(UNIX_FW, "make firmware BOARD=unix")
    special = SPECIAL.get(script, Special())
    (tmp_path / "unix").mkdir()
    board = UnixBackend(UNIX_FW, tmp_path / "unix")
    if special.uptime_start_ms is not None:
        board.board_env["FAILSTOP_UPTIME_MS"] = str(special.uptime_start_ms)
    unix = board.run(script, timeout=60)
    resources = Resources(
        uptime_start_ms=special.uptime_start_ms or 0, missing_modules=special.missing_modules
    )
    if special.stack_from_unix:
        depths = [r.depth for r in unix.region.records if r.kind == "STACK"]
        assert depths, f"{script}: the firmware wrote no STACK record\n{unix.output}"
        resources = dataclasses.replace(resources, stack_limit=depths[0])
    sim = SimBackend(tmp_path / "sim", resources).run(script, timeout=60)
    return Pair(unix, sim, special)


def record_view(rec: codec.Record, special: Special) -> dict[str, object]:
    view: dict[str, object] = {f: getattr(rec, f) for f in RECORD_FIELDS}
    if rec.kind in special.message_differs:
        view["message"] = "<port text>"
    if special.alloc_size:
        view["alloc_size"] = rec.alloc_size
    return view


def header_view(region: codec.Region) -> Optional[dict[str, object]]:
    h = region.header
    return None if h is None else {f: getattr(h, f) for f in HEADER_FIELDS}


_BANNER_MSG = re.compile(
    r"^(failstop: reboot after (\w+) \(seq \d+, boot \d+\)(?: at \S+:\d+ in \S+)?): .*$"
)


def output_view(output: str, special: Special) -> list[str]:
    lines = []
    for ln in output.splitlines():
        if ln.startswith("LAST ") and special.last_masked:
            value = list(ast.literal_eval(ln[5:]))
            for i in special.last_masked:
                value[i] = "<not compared>"
            ln = f"LAST {tuple(value)!r}"
        m = _BANNER_MSG.match(ln)
        if m and m.group(2) in special.message_differs:
            ln = m.group(1) + ": <port text>"
        lines.append(ln)
    return lines


@pytest.mark.parametrize("script", corpus())
def test_simulator_matches_unix_firmware(script: str, tmp_path: Path) -> None:
    pair = run_both(script, tmp_path)
    unix, sim, special = pair.unix, pair.sim, pair.special
    assert (sim.end, sim.exit_code) == (unix.end, unix.exit_code), sim.output
    assert output_view(sim.output, special) == output_view(unix.output, special)
    assert header_view(sim.region) == header_view(unix.region)
    assert [record_view(r, special) for r in sim.region.records] == [
        record_view(r, special) for r in unix.region.records
    ]
    assert [r.slot for r in sim.region.records] == [r.slot for r in unix.region.records]


def test_every_corpus_script_is_compared_or_excluded_with_a_reason() -> None:
    names = {p.name for p in SCRIPTS.glob("*.py")}
    assert set(EXCLUDED) <= names and set(SPECIAL) <= names
    assert all(reason for reason in EXCLUDED.values())
    assert len(corpus()) >= 15  # the whole corpus, not a chosen few
