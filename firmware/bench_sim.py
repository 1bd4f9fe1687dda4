"""make bench: the CPython simulator (tools/failstop_host/sim).

  1. simulated boots per second: a program that panics on every boot (boot, fault,
     record, reset, next boot), and power-on runs of a program that just ends;
  2. a full OOM sweep of the Purse example (host_tests/scripts/purse.py) and of a
     ~100-line workload (host_tests/scripts/workload.py): one run per allocation point
     with the OOM injected there, each run the fault and the reboot after it; every run
     must end in a valid OOM record and a clean reboot (or a clean finish);
  3. for comparison, the same sweeps as separate runs, ``run(oom_at=k)`` for every k;
  4. the sweep's two paths: a fail-stop OOM's run taken in the main line's process (the
     default) or forked from it at every point (``Runtime.sweep_in_process = False``,
     the path the RAISE policy takes); the forked runs must equal the in-process ones.

Wall-clock times (what a user waits for) and CPU times. Writes docs/bench-sim.md and
prints it. Usage: python firmware/bench_sim.py [--quick]"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from failstop_host.sim import SimDevice, SimRun  # noqa: E402
from failstop_host.sim.runtime import Runtime  # noqa: E402

SCRIPTS = ROOT / "host_tests/scripts"
DOC = ROOT / "docs/bench-sim.md"
TARGET_S = 10.0
T = TypeVar("T")


def say(msg: str) -> None:
    print(f"[bench-sim] {msg}", file=sys.stderr, flush=True)


@dataclass
class Timed:
    wall: float
    cpu: float  # this process and its children


def timed(fn: Callable[[], T]) -> tuple[T, Timed]:
    def cpu() -> float:
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    value = fn()
    return value, Timed(time.perf_counter() - t0, cpu() - c0)


def check(run: SimRun, reboot: bool = True) -> Optional[str]:
    """None when the run ended in a valid OOM record and (``reboot``) a clean reboot, or
    in a clean finish; else what went wrong."""
    new = run.new_records
    if not new:
        return None if run.end == "exit" else f"no record and no clean finish ({run.end})"
    rec = new[0]
    header = run.region.header
    if header is None or rec.kind != "OOM" or rec.seq != run.first_seq:
        return f"first record is {rec.kind} seq {rec.seq}, not the injected OOM"
    if rec.boot != header.boot_count - run.reboots:
        return f"the OOM record is from boot {rec.boot}, not the run's first boot"
    if rec.encode() != rec.raw:
        return "the record's bytes are not the documented layout"
    if rec.location is None or rec.location.line is None:
        return "the OOM record has no location"
    if not reboot:
        return None if run.end == "boot_limit" and run.boots == 1 else f"ended {run.end}"
    if run.end != "exit" or run.boots != 2:
        return f"the reboot did not end cleanly ({run.end}, {run.boots} boots)"
    return None


def boots_per_second(dev: SimDevice, tmp: Path, boots: int) -> tuple[int, Timed]:
    prog = tmp / "panic_every_boot.py"
    prog.write_text(
        textwrap.dedent(
            """
            import failstop, time
            failstop.crash_loop(254, 1)  # not a crash loop: every boot is 2 ms of
            time.sleep_ms(2)  # (virtual) uptime, longer than the 1 ms window
            failstop.panic("boot %d" % failstop.boot_count())
            """
        )
    )
    dev.erase()
    run, t = timed(lambda: dev.run(prog, max_boots=boots, timeout=600))
    assert run.end == "boot_limit" and run.boots == boots, run.output[-500:]
    return run.boots, t


def power_on_runs(dev: SimDevice, tmp: Path, runs: int) -> Timed:
    prog = tmp / "hello.py"
    prog.write_text("print('hello')\n")

    def go() -> None:
        for _ in range(runs):
            assert dev.run(prog).end == "exit"

    return timed(go)[1]


def sweep(
    dev: SimDevice, script: Path, max_boots: int = 2, in_process: bool = True
) -> tuple[list[SimRun], list[str], Timed]:
    """The OOM sweep, each point's run taken in the main line's process or forked (the
    boots fork from this process, so they see the class attribute as set here)."""
    dev.erase()
    Runtime.sweep_in_process = in_process
    try:
        runs, t = timed(lambda: dev.sweep_oom(script, max_boots=max_boots))
    finally:
        Runtime.sweep_in_process = True
    reboot = max_boots > 1
    bad = [f"oom_at={k}: {why}" for k, r in enumerate(runs, 1) if (why := check(r, reboot))]
    return runs, bad, t


def same_runs(a: list[SimRun], b: list[SimRun]) -> list[str]:
    """Where two sweeps' runs differ (output, end, boots, records but heap_free)."""

    def key(r: SimRun) -> object:
        recs = [(x.kind, x.seq, x.boot, x.location, x.message, x.mark) for x in r.records]
        return (r.output, r.end, r.exit_code, r.boots, recs)

    if len(a) != len(b):
        return [f"{len(a)} runs in process, {len(b)} forked"]
    return [f"oom_at={k}: differs" for k, (x, y) in enumerate(zip(a, b), 1) if key(x) != key(y)]


def separate_runs(dev: SimDevice, script: Path, points: int) -> tuple[list[str], Timed]:
    def go() -> list[str]:
        bad = []
        for k in range(1, points + 1):
            dev.erase()
            why = check(dev.run(script, oom_at=k, max_boots=2))
            if why:
                bad.append(f"oom_at={k}: {why}")
        return bad

    return timed(go)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer boots, no separate-run sweeps")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="failstop-bench-sim-") as tmp_s:
        tmp = Path(tmp_s)
        dev = SimDevice(tmp / "board")
        n_boots = 50 if args.quick else 300
        say(f"boots per second ({n_boots} boots, a panic on every boot)")
        boots, t_boot = boots_per_second(dev, tmp, n_boots)
        n_runs = 20 if args.quick else 100
        say(f"power-on runs ({n_runs} runs of a program that just ends)")
        t_hello = power_on_runs(dev, tmp, n_runs)
        rows = []
        forked: list[Forked] = []
        failures = []
        for name in ("purse.py", "workload.py"):
            script = SCRIPTS / name
            say(f"OOM sweep of {name}")
            runs, bad, t_sweep = sweep(dev, script)
            points = len(runs)
            failures += [f"{name} {b}" for b in bad]
            say(f"OOM sweep of {name}, the faulting boots only")
            runs1, bad1, t_faults = sweep(dev, script, max_boots=1)
            failures += [f"{name} (faulting boots) {b}" for b in bad1]
            say(f"OOM sweep of {name}, every point's run forked")
            fruns, fbad, f_sweep = sweep(dev, script, in_process=False)
            failures += [f"{name} (forked) {b}" for b in fbad + same_runs(runs, fruns)]
            say(f"OOM sweep of {name}, every point's run forked, the faulting boots only")
            fruns1, fbad1, f_faults = sweep(dev, script, max_boots=1, in_process=False)
            failures += [f"{name} (forked, faulting boots) {b}" for b in fbad1]
            failures += [f"{name} (forked, faulting boots) {b}" for b in same_runs(runs1, fruns1)]
            sep: Optional[Timed] = None
            if not args.quick:
                say(f"the same as {points} separate runs")
                sep_bad, sep = separate_runs(dev, script, points)
                failures += [f"{name} (separate) {b}" for b in sep_bad]
            lines = len(script.read_text().splitlines())
            rows.append((name, lines, points, len(bad), t_sweep, t_faults, sep))
            forked.append((name, points, t_sweep, f_sweep, t_faults, f_faults))
    total_sweeps = sum(r[4].wall for r in rows)  # with the reboots
    doc = render(load, boots, t_boot, n_runs, t_hello, rows, total_sweeps, failures, forked)
    DOC.write_text(doc)
    print(doc)
    if failures:
        say(f"{len(failures)} runs did not end in a valid OOM record and a clean reboot")
        return 1
    return 0


Forked = tuple[str, int, Timed, Timed, Timed, Timed]  # program, points, in process/forked x2


def render(
    load: float,
    boots: int,
    t_boot: Timed,
    n_runs: int,
    t_hello: Timed,
    rows: list[tuple[str, int, int, int, Timed, Timed, Optional[Timed]]],
    total_sweeps: float,
    failures: list[str],
    forked: list[Forked],
) -> str:
    cpus = os.cpu_count() or 1
    out = [
        "# Simulator benchmark",
        "",
        "Measured by `make bench` (`firmware/bench_sim.py`) on this machine: "
        f"{cpus} CPU(s), Python {platform.python_version()}, load average {load:.2f} when "
        "it started (other work on the machine slows the wall-clock figures; CPU time "
        "is the simulator's own work). Every boot is a process forked from the benchmark "
        "and ended at its fault (see [simulator.md](simulator.md)).",
        "",
        "## Boots",
        "",
        "| what | boots | wall | per boot | boots/s | CPU per boot |",
        "|---|---:|---:|---:|---:|---:|",
        f"| a program that panics on every boot: boot, fault, record, reset | {boots} "
        f"| {t_boot.wall:.2f} s | {t_boot.wall / boots * 1000:.1f} ms "
        f"| {boots / t_boot.wall:.0f} | {t_boot.cpu / boots * 1000:.1f} ms |",
        f"| power-on runs of a program that just ends (`print`) | {n_runs} "
        f"| {t_hello.wall:.2f} s | {t_hello.wall / n_runs * 1000:.1f} ms "
        f"| {n_runs / t_hello.wall:.0f} | {t_hello.cpu / n_runs * 1000:.1f} ms |",
        "",
        "## OOM sweeps",
        "",
        "One run per allocation point of the program's first boot, the OOM injected "
        "there (`SimDevice.sweep_oom`, `python -m failstop_host.sim --sweep-oom`); each "
        "run is the faulting boot and the reboot after it. Checked for every run: the "
        "first record it wrote is the injected OOM (valid magic, version and CRC, the "
        "documented bytes, a location) and the reboot ran the program to its end.",
        "",
        "| program | lines | allocation points | runs not OK | sweep wall | sweep CPU "
        "| faulting boots only | as separate runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, lines, points, bad, t, t1, sep in rows:
        sep_s = "not measured (--quick)" if sep is None else f"{sep.wall:.2f} s"
        out.append(
            f"| `{name}` | {lines} | {points} | {bad} | {t.wall:.2f} s | {t.cpu:.2f} s "
            f"| {t1.wall:.2f} s | {sep_s} |"
        )
    verdict = "met" if total_sweeps < TARGET_S and not failures else "NOT met"
    out += [
        "",
        f"Both sweeps together: {total_sweeps:.2f} s wall (target: under {TARGET_S:.0f} s: "
        f"{verdict}).",
        "",
        "*Faulting boots only*: the same sweep with `max_boots=1`, each run ending at its "
        "OOM record (checked the same way); *as separate runs*: `run(oom_at=k, "
        "max_boots=2)` for every k, one after the other (wall clock).",
        "",
        "How the sweep is fast: instead of `run(oom_at=k)` from scratch for every k "
        "(quadratic in the number of points), one traced run of the program stops at every "
        "allocation point and carries out there the run in which that point fails — the "
        "same fault path, into its own copy of the retained RAM — then goes on; only the "
        "reboots are separate boots (run on every CPU). `host_tests/test_sim.py` checks "
        "that a swept run equals the separate run (output, boots, records; `heap_free` "
        "may differ by a few hundred bytes, the sweep's own objects being in the same "
        "process).",
        "",
        "## The sweep's two paths",
        "",
        "A fail-stop OOM's run is taken in the main line's process (above), or forked from "
        "it at every point (`Runtime.sweep_in_process = False`; the path the RAISE policy "
        "always takes, its program going on after the error). The forked runs are checked "
        "equal to the in-process ones (output, end, boots, records but `heap_free`). Wall "
        "clock (CPU in brackets); *faulting boots only* as above, `max_boots=1`, where the "
        "cost of the path is all there is.",
        "",
        "| program | points | sweep in process | sweep forked | forked / in process "
        "| faulting boots in process | faulting boots forked | forked / in process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, points, t_in, t_fork, t1_in, t1_fork in forked:
        out.append(
            f"| `{name}` | {points} | {t_in.wall:.2f} s ({t_in.cpu:.2f}) "
            f"| {t_fork.wall:.2f} s ({t_fork.cpu:.2f}) | {t_fork.wall / t_in.wall:.1f}x "
            f"| {t1_in.wall:.2f} s ({t1_in.cpu:.2f}) | {t1_fork.wall:.2f} s ({t1_fork.cpu:.2f}) "
            f"| {t1_fork.wall / t1_in.wall:.1f}x |"
        )
    fork_total = sum(f[3].wall for f in forked)
    fork_verdict = "met" if fork_total < TARGET_S else "NOT met"
    out += [
        "",
        f"Both sweeps together, forked at every point: {fork_total:.2f} s wall (target: "
        f"under {TARGET_S:.0f} s: {fork_verdict}).",
    ]
    if failures:
        out += ["", "Runs not OK:", ""] + [f"- {f}" for f in failures]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
