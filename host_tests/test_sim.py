"""The CPython simulator's own behaviour (tools/failstop_host/sim): fault injection,
simulated resources, the boot sequence, the OOM sweep, the CLI. The corpus runs on it
through test_corpus.py (backend "sim"); test_sim_diff.py compares it with the firmware."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest

from failstop_host import codec
from failstop_host.codec import Action, Kind
from failstop_host.sim import Inject, Resources, SimDevice, SimRun, SimTimeout
from failstop_host.sim import mpstyle as mp
from failstop_host.sim.retained import (
    RC_POWER_ON,
    RC_WATCHDOG,
    REGION_SIZE,
    Retained,
)
from failstop_host.sim.runtime import Runtime

ROOT = Path(__file__).parent.parent
A_REBOOT = Action.REBOOT


def write(root: Path, name: str, source: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def line_of(path: Path, tag: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if tag in ln)


@pytest.fixture
def board(tmp_path: Path) -> Path:
    return tmp_path / "board"


@pytest.fixture
def dev(tmp_path: Path) -> SimDevice:
    return SimDevice(tmp_path / "sim")


def fields(rec: codec.Record) -> dict[str, object]:
    """Every field of a record but heap_free (see sweep_oom) and the raw bytes."""
    d = dataclasses.asdict(rec)
    del d["heap_free"], d["raw"]
    return d


TXN = """
    import failstop
    r = failstop.last()
    if r:
        print("LAST", r.kind, r.location)
    else:
        accounts = {"a": 10, "b": 0}
        def move(n):
            accounts["a"] -= n
            log = ["move %d" % n]  # ALLOC
            accounts["b"] += n
            return log
        try:
            for i in range(3):
                move(1)
        except BaseException:
            print("ZALGO", accounts)
        print("DONE", accounts)
"""


def test_every_injected_oom_is_fail_stop_and_the_sweep_equals_single_runs(
    dev: SimDevice, board: Path
) -> None:
    script = write(board, "main.py", TXN)
    clean = dev.measure(script)
    assert clean.end == "exit" and clean.allocs > 10
    runs = dev.sweep_oom(script, jobs=2)
    assert len(runs) == clean.allocs
    lines = range(1, len(script.read_text().splitlines()) + 1)
    for k, run in enumerate(runs, 1):
        # No except clause ran, the record is there, the board rebooted and ran clean.
        assert "ZALGO" not in run.output and "DONE" not in run.output, (k, run.output)
        rec = run.record
        assert rec is not None and (rec.kind, rec.seq, rec.boot) == ("OOM", 1, 1), k
        assert rec.location is not None and rec.location.line in lines
        assert run.end == "exit" and run.boots == 2 and run.exit_code == 0
        assert run.lines("LAST") == [
            f"OOM ('main.py', {rec.location.line}, {rec.location.function!r})"
        ]
        # The sweep is exactly run(oom_at=k), only faster.
        dev.erase()
        single = dev.run(script, oom_at=k, max_boots=2)
        assert (single.output, single.end, single.exit_code) == (run.output, run.end, run.exit_code)
        assert single.boot_reports == run.boot_reports
        assert [fields(r) for r in single.records] == [fields(r) for r in run.records]
    # Every allocation point of the loop body fails once per iteration.
    alloc_line = line_of(script, "# ALLOC")
    hit = [r.record.location.line for r in runs if r.record and r.record.location]
    assert hit.count(alloc_line) >= 3


def test_the_sweeps_two_paths_give_the_same_runs(
    dev: SimDevice, board: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fail-stop OOM's run taken in the main line's process (the default) equals the
    run forked at that point (the RAISE policy's path; docs/simulator.md measures both)."""
    script = write(board, "main.py", TXN)
    in_process = dev.sweep_oom(script, jobs=2)
    monkeypatch.setattr(Runtime, "sweep_in_process", False)  # the boots fork from here
    dev.erase()
    forked = dev.sweep_oom(script, jobs=2)
    assert len(forked) == len(in_process) > 10
    for k, (a, b) in enumerate(zip(in_process, forked), 1):
        assert (a.output, a.end, a.exit_code, a.boot_reports) == (
            b.output,
            b.end,
            b.exit_code,
            b.boot_reports,
        ), k
        assert [fields(r) for r in a.records] == [fields(r) for r in b.records], k


def test_oom_beyond_the_last_allocation_point_is_a_clean_run(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", TXN)
    n = dev.measure(script).allocs
    dev.erase()
    run = dev.run(script, oom_at=n + 1)
    assert run.record is None and run.lines("DONE") == ["{'a': 7, 'b': 3}"] and run.boots == 1


def test_raise_policy_oom_is_catchable_and_tracing_resumes(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop
        failstop.policy("OOM", "RAISE")
        caught = 0
        for i in range(20):
            try:
                x = [i] * 2
            except MemoryError as e:
                caught += 1
                print("caught", repr(e))
        print("caught", caught)
        failstop.policy("OOM", "REBOOT")
        def down(n):
            return down(n + 1)  # DOWN
        down(0)
        """,
    )
    run = dev.run(script, oom_at=8, max_boots=1)
    assert run.lines("caught") == ["MemoryError('memory allocation failed',)", "1"]
    # After the caught error the tracer is back: the stack is counted and checked again.
    oom, stack = run.new_records
    assert (oom.kind, oom.action, stack.kind, stack.action) == ("OOM", "RAISE", "STACK", "REBOOT")
    assert stack.depth == Resources().stack_limit
    assert stack.location == codec.Frame("main.py", line_of(script, "# DOWN"), "down")


def test_stack_exhaustion_at_depth(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop
        def walk(n):
            if n == 0:
                return 0
            return walk(n - 1) + 1  # CALL
        try:
            print("DEPTH", walk(40))
        except RuntimeError:
            print("ZALGO")
        """,
    )
    assert dev.run(script).lines("DEPTH") == ["40"]  # fits in the default stack
    run = dev.run(script, stack_at=12)
    rec = run.record
    assert rec is not None and (rec.kind, rec.exc_type, rec.message) == (
        "STACK",
        "RuntimeError",
        "maximum recursion depth exceeded",
    )
    assert rec.depth == 12 and rec.flags == codec.FLAG_TB_TRUNCATED
    assert rec.location == codec.Frame("main.py", line_of(script, "# CALL"), "walk")
    assert "ZALGO" not in run.output and run.lines("DEPTH") == ["40"] and run.boots == 2


def test_a_small_stack_faults_every_boot_until_safe_mode(tmp_path: Path, board: Path) -> None:
    dev = SimDevice(tmp_path / "sim", Resources(stack_limit=10))
    script = write(
        board,
        "main.py",
        """
        import failstop
        print("BOOT", failstop.boot_count(), failstop.safe_mode())
        def walk(n):
            return 0 if n == 0 else walk(n - 1) + 1
        walk(20)
        """,
    )
    run = dev.run(script)
    assert run.lines("BOOT") == ["1 False", "2 False", "3 False", "4 False"]
    assert [r.kind for r in run.records] == ["STACK"] * 3 and run.end == "exit"
    assert run.region.header is not None and run.region.header.safe_mode
    assert "main program not run" in run.output


WATCHDOG = """
    import failstop, time
    failstop.watchdog(500)
    time.sleep_ms(100)
    failstop.feed()
    failstop.mark("polling")
    n = 0
    while True:
        n += 1  # LOOP
"""


def test_hang_injected_with_the_watchdog_armed(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", WATCHDOG.replace("while True", "while n < 1000"))
    clean = dev.measure(script)
    # 100 ms slept + 1 µs an instruction (Resources.op_ns)
    assert clean.end == "exit" and clean.uptime_ms == 100 + clean.steps // 1000
    run = dev.run(script, hang_at=clean.steps - 50, max_boots=1)
    rec = run.record
    assert rec is not None and (rec.kind, rec.message, rec.mark) == (
        "WATCHDOG",
        "watchdog timeout",
        "polling",
    )
    # Virtual time: fed at 100 ms, so the watchdog fires 500 ms later, however long the
    # host takes; taken on the "exception stack": stack_used unknown (0).
    assert rec.uptime_ms == 600 and rec.stack_used == 0
    assert rec.location is not None and rec.location.line in (
        line_of(script, "while n"),
        line_of(script, "# LOOP"),
    )
    assert run.region.header is not None and run.region.header.pending_cause == "watchdog"


def test_a_real_hang_is_caught_by_the_watchdog_in_virtual_time(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", WATCHDOG)
    run = dev.run(script, max_boots=1)
    rec = run.record
    assert rec is not None and rec.kind == "WATCHDOG" and rec.uptime_ms == 600
    assert run.boot_reports[0].steps >= 500_000  # 500 ms at 1 µs an instruction


def test_hang_without_a_watchdog_stays_hung(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", "x = 1\nwhile x:\n    x += 1\n")
    run = dev.run(script, hang_at=20)
    assert (run.end, run.boots, run.record) == ("hang", 1, None)
    assert run.boot_reports[0].steps == 20


def test_virtual_clock_and_ticks(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop, time
        t0 = time.ticks_ms()
        time.sleep_ms(1234)
        time.sleep_us(500)
        time.sleep(0.25)
        print("DIFF", time.ticks_diff(time.ticks_ms(), t0))
        print("WRAP", time.ticks_diff(time.ticks_add(0, -1), 0), time.ticks_add(2**30 - 1, 1))
        failstop.panic("done")
        """,
    )
    run = dev.run(script, max_boots=1)
    assert run.lines("DIFF") == ["1484"] and run.lines("WRAP") == [f"-1 {2**30}"]  # 64-bit
    assert run.record is not None and run.record.uptime_ms == 1484
    pico = SimDevice(dev.workdir.parent / "pico", Resources.board("RPI_PICO"))
    assert pico.run(script, max_boots=1).lines("WRAP") == ["-1 0"]  # 30-bit ticks


def test_time_budget_stops_a_program_that_runs_forever(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", "import time\nwhile True:\n    time.sleep_ms(100)\n")
    run = dev.run(script, max_ms=1000)
    assert (run.end, run.boots, run.record) == ("time_limit", 1, None)
    assert run.boot_reports[0].uptime_ms == 1000


def test_heap_limit_list_growth(tmp_path: Path, board: Path) -> None:
    dev = SimDevice(tmp_path / "sim", Resources(heap_size=64 * 1024))
    script = write(
        board,
        "main.py",
        """
        import failstop
        keep = []
        try:
            while True:
                keep.append("reading %d" % len(keep) * 4)  # GROW
                failstop.mark(str(len(keep)))
        except MemoryError:
            print("ZALGO")
        """,
    )
    run = dev.run(script, max_boots=1)
    rec = run.record
    assert rec is not None and rec.kind == "OOM" and "ZALGO" not in run.output
    assert rec.location is not None and rec.location.line in (
        line_of(script, "# GROW"),
        line_of(script, "failstop.mark"),
    )
    assert rec.message == mp.oom_message(rec.alloc_size) and rec.alloc_size > 0
    assert rec.heap_free is not None and rec.heap_free < rec.alloc_size
    assert 200 < int(rec.mark) < 1000  # ~100 bytes an item in 64 KiB


def test_garbage_is_collected_before_the_heap_is_declared_full(tmp_path: Path, board: Path) -> None:
    dev = SimDevice(tmp_path / "sim", Resources(heap_size=64 * 1024))
    script = write(
        board,
        "main.py",
        """
        import gc
        class Node:
            def __init__(self):
                self.me = self  # a cycle: only the collector frees it
                self.data = [0] * 20
        for i in range(3000):
            Node()
        print("DONE", gc.mem_free() > 0)
        """,
    )
    run = dev.run(script)
    assert run.lines("DONE") == ["True"] and run.record is None


def test_huge_requests_fail_without_taking_host_memory(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop
        if failstop.boot_count() == 1:
            b = bytearray(10**9)
        else:
            z = [0] * 10**9
        """,
    )
    run = dev.run(script, max_boots=2)
    first, second = run.new_records
    assert (first.message, first.alloc_size) == (mp.oom_message(10**9), 10**9)
    # Not seen before CPython asks the OS: the address-space backstop, size unknown.
    assert (second.kind, second.message, second.alloc_size) == ("OOM", mp.OOM_UNKNOWN_SIZE, 0)


def test_locked_heap_fails_on_allocations_only(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import micropython
        count = 1000
        def isr(buf):
            global count
            count += 1          # arithmetic: no allocation on MicroPython
            buf[0] = len(buf)   # a call and a store into an existing buffer
        buf = bytearray(4)
        micropython.heap_lock()
        isr(buf)
        micropython.heap_unlock()
        print("OK", count, buf[0])
        micropython.heap_lock()
        pending = [count]  # LOCKED
        """,
    )
    run = dev.run(script, max_boots=1)
    assert run.lines("OK") == ["1001 4"]
    rec = run.record
    assert rec is not None and rec.flag_names == ["HEAP_LOCKED"]
    assert rec.location == codec.Frame("main.py", line_of(script, "# LOCKED"), "<module>")


def test_boot_py_keeper_and_safe_mode(dev: SimDevice, board: Path) -> None:
    write(
        board,
        "boot.py",
        """
        import failstop
        print("BOOT", failstop.boot_count(), failstop.reset_cause(), failstop.safe_mode())
        failstop.crash_loop(1, 60000)
        failstop.keeper(lambda r: print("KEPT", r.seq, r.kind, r.message))
        """,
    )
    main = write(
        board, "main.py", "import failstop\nfailstop.panic('valve %d' % failstop.boot_count())\n"
    )
    run = dev.run(main)
    assert run.lines("BOOT") == ["1 power_on False", "2 fault False", "3 fault True"]
    # Safe mode skips the keeper: boot 3 does not get record 2.
    assert run.lines("KEPT") == ["1 PANIC valve 1"]
    assert [r.seq for r in run.records] == [1, 2] and run.end == "exit"


def test_modules_from_the_board_filesystem(dev: SimDevice, board: Path) -> None:
    sensor = write(
        board,
        "lib/sensor.py",
        """
        import failstop
        def read(scale):
            with failstop.fragile():
                return 100 // scale  # FAULT
        """,
    )
    main = write(
        board, "main.py", "import sensor\nprint('VALUE', sensor.read(4))\nsensor.read(0)\n"
    )
    run = dev.run(main, max_boots=1)
    assert run.lines("VALUE") == ["25"]
    rec = run.record
    assert rec is not None and (rec.kind, rec.exc_type, rec.message) == (
        "PANIC",
        "ZeroDivisionError",
        "divide by zero",
    )
    assert [(f.file, f.line, f.function) for f in rec.traceback] == [
        ("lib/sensor.py", line_of(sensor, "# FAULT"), "read"),
        ("main.py", 3, "<module>"),
    ]


def test_a_boot_that_dies_is_recorded_post_hoc(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop
        if failstop.boot_count() == 1:
            import ctypes
            ctypes.string_at(0)  # a real segfault of the process
        print("AFTER", failstop.reset_cause())
        """,
    )
    run = dev.run(script)
    rec = run.record
    assert rec is not None and rec.kind == "HARDFAULT"
    assert rec.flag_names == ["NO_PYTHON_FRAME", "POSTHOC"]
    assert run.lines("AFTER") == ["fault"] and run.boots == 2


def test_machine_reset_is_a_soft_reset_not_a_fault(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop, machine
        print("BOOT", failstop.boot_count(), failstop.reset_cause())
        if failstop.boot_count() == 1:
            machine.reset()
        """,
    )
    run = dev.run(script)
    assert run.lines("BOOT") == ["1 power_on", "2 soft"] and run.record is None
    assert run.region.header is not None and run.region.header.loop_count == 0


def test_boot_cap_and_wall_clock_timeout(dev: SimDevice, board: Path) -> None:
    script = write(
        board, "main.py", "import failstop\nfailstop.crash_loop(50)\nfailstop.panic('again')\n"
    )
    run = dev.run(script, max_boots=3)
    assert (run.end, run.exit_code, run.boots) == ("boot_limit", 75, 3)
    assert "boot limit reached" in run.output
    spin = write(board, "spin.py", "while True:\n    pass\n")
    with pytest.raises(SimTimeout):
        dev.run(spin, timeout=0.5)


def test_records_are_the_firmware_layout(dev: SimDevice) -> None:
    run = dev.run(ROOT / "host_tests/scripts/panic_reasons.py")
    region = run.region
    assert region.header is not None and not region.invalid and len(region.records) == 3
    for rec in region.records:
        assert rec.encode() == rec.raw  # every byte accounted for by the documented fields
    raw = dev.retained.read_bytes()
    assert codec.decode_region(raw) == region and len(raw) == region.size
    # The host CLI reads it as it reads a board's.
    out = subprocess.run(
        [sys.executable, "-m", "failstop_host", "decode", str(dev.retained)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "#6 PANIC (REBOOT) boot 6" in out.stdout


def test_micropython_wording() -> None:
    assert mp.mp_repr(mp.MemoryError("x")) == "MemoryError('x',)"
    assert mp.mp_repr(mp.RuntimeError()) == "RuntimeError()"
    chunks: list[str] = []
    mp.write_exception_text(OSError(5, "escapes"), chunks.append)
    assert "".join(chunks) == "OSError: [Errno 5] EIO: escapes"
    assert mp.type_name(FileNotFoundError(2, "x")) == "OSError"
    assert mp.type_name(RecursionError()) == "RuntimeError"
    e = ZeroDivisionError("integer division or modulo by zero")
    mp.rewrite_message(e)
    assert e.args == ("divide by zero",)
    assert [mp.exc_message(x) for x in (KeyError("k"), ValueError(-7), ValueError(2**70))] == [
        "k",
        "-7",
        "",
    ]
    edges = [ValueError(v) for v in (-(2**62), 2**62 - 1, 2**62, -(2**30), 2**30 - 1, 2**30)]
    assert [mp.exc_message(x) for x in edges] == [str(e.args[0]) for e in edges[:2]] + [""] + [
        str(e.args[0]) for e in edges[3:]
    ]
    assert [mp.exc_message(x, small_int_bits=31) for x in edges] == [
        "",
        "",
        "",
        "-1073741824",
        "1073741823",
        "",
    ]


def test_cli_run_measure_sweep(tmp_path: Path) -> None:
    script = write(tmp_path, "main.py", TXN)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "tools"))
        return subprocess.run(
            [sys.executable, "-m", "failstop_host.sim", str(script), *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    measured = cli("--measure")
    assert measured.returncode == 0 and "allocation points" in measured.stdout
    n = int(measured.stdout.split(" allocation points")[0].rsplit(" ", 1)[1])
    faulted = cli("--oom-at", "3")
    assert faulted.returncode == 1 and "#1 OOM (REBOOT) boot 1" in faulted.stdout
    line = line_of(script, "# ALLOC")
    at_line = cli("--oom-at", f"main.py:{line}:2")
    assert at_line.returncode == 1, at_line.stderr
    assert f"  at main.py:{line} in move" in at_line.stdout
    assert f"LAST OOM ('main.py', {line}, 'move')" in at_line.stdout
    assert "DONE" not in at_line.stdout and "ZALGO" not in at_line.stdout
    bad = cli("--oom-at", "main.py:x")
    assert bad.returncode == 2 and "give K, FILE:LINE or FILE:LINE:N" in bad.stderr
    swept = cli("--sweep-oom")
    assert swept.returncode == 0
    assert f"--- {n} allocation points, 0 runs not an OOM record" in swept.stdout


def ks_on_line(dev: SimDevice, script: Path, line: int) -> list[int]:
    """The k of every allocation point reached on ``line``, in order (by an OOM sweep of a
    fresh board)."""
    dev.erase()
    return [
        k
        for k, run in enumerate(dev.sweep_oom(script), 1)
        if run.record is not None
        and run.record.location is not None
        and run.record.location.line == line
    ]


def test_oom_at_a_source_location(dev: SimDevice, board: Path) -> None:
    """``oom_at=("main.py", line)`` is the first allocation point reached on that line (in
    a nested function too): the same run as ``oom_at=k`` for that point's k; with n, the
    n-th point reached there (the last pass of a loop)."""
    script = write(board, "main.py", TXN)
    line = line_of(script, "# ALLOC")
    ks = ks_on_line(dev, script, line)
    assert len(ks) % 3 == 0 and len(ks) >= 3  # move() runs three times
    for n, k in ((1, ks[0]), (len(ks), ks[-1])):
        dev.erase()
        by_k = dev.run(script, oom_at=k)
        dev.erase()
        by_loc = dev.run(script, oom_at=("main.py", line, n))
        rec = by_loc.record
        assert rec is not None and rec.kind == "OOM" and rec.location is not None
        assert (rec.location.file, rec.location.line) == ("main.py", line)
        assert rec.location.function == "move"
        assert by_loc.output == by_k.output
        assert by_k.record is not None and fields(rec) == fields(by_k.record)
        assert by_loc.boot_reports[0].allocs == k
    dev.erase()
    assert dev.run(script, oom_at=("main.py", line)).boot_reports[0].allocs == ks[0]
    dev.erase()
    never = dev.run(script, oom_at=("main.py", line, len(ks) + 1))
    assert never.record is None and never.lines("DONE") == ["{'a': 7, 'b': 3}"]


def test_oom_at_a_location_survives_a_different_count(dev: SimDevice, board: Path) -> None:
    """One allocation point more before the line (as another CPython may count one more):
    ``oom_at=k`` now fails elsewhere, the location still fails the same line."""
    script = write(board, "main.py", TXN)
    line = line_of(script, "# ALLOC")
    k = ks_on_line(dev, script, line)[0]
    script.write_text(script.read_text().replace('{"a": 10, "b": 0}', "dict(a=10, b=int(0))"))
    assert ks_on_line(dev, script, line)[0] == k + 1
    dev.erase()
    by_k = dev.run(script, oom_at=k)
    dev.erase()
    by_loc = dev.run(script, oom_at=("main.py", line))
    assert by_k.record is not None and by_k.record.location is not None
    assert by_k.record.location.line != line
    assert by_loc.record is not None and by_loc.record.location is not None
    assert by_loc.record.location.line == line


def test_oom_at_a_location_is_checked(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", TXN)
    line = line_of(script, "try:")
    with pytest.raises(ValueError, match=rf"main\.py:{line} has no allocation point"):
        dev.run(script, oom_at=("main.py", line))
    with pytest.raises(ValueError, match=r"no file 'other\.py' on the board"):
        dev.run(script, oom_at=("other.py", 3))
    with pytest.raises(ValueError, match="line must be an int, 1 or more"):
        Inject(oom_at=("main.py", 0))
    with pytest.raises(ValueError, match=r"\(file, line\) or \(file, line, n\)"):
        Inject(oom_at=("main.py",))  # type: ignore[arg-type]


def test_sim_run_helpers(dev: SimDevice, board: Path) -> None:
    script = write(board, "main.py", "import failstop\nprint('HI', failstop.boot_count())\n")
    first = dev.run(script)
    second = dev.run(script, inject=Inject(oom_at=1))
    assert isinstance(first, SimRun) and first.lines("HI") == ["1"] and first.reboots == 0
    assert (
        second.reboots == 1 and second.first_seq == 1 and [r.seq for r in second.new_records] == [1]
    )
    assert second.lines("HI") == ["3"]  # boot 2 of the device was the first run


# --- the rules of the field-hardening core (7f389ae), on the simulated board -----------


def boot_region(path: Path, hw: int) -> tuple[Retained, list[str]]:
    """One failstop_boot of the region in ``path`` with hardware cause ``hw``."""
    out: list[str] = []
    ret = Retained(path)
    ret.boot(hw, out.append)
    return ret, out


def test_watchdog_bite_without_early_warning_is_recorded_post_hoc(tmp_path: Path) -> None:
    path = tmp_path / "r.ram"
    ret, _ = boot_region(path, RC_POWER_ON)
    ret.mark_set("spin")
    ret.close()
    ret, out = boot_region(path, RC_WATCHDOG)
    (rec,) = ret.records()
    assert (rec.kind, rec.action, rec.seq, rec.boot, rec.reset_cause) == (
        "WATCHDOG",
        "REBOOT",
        1,
        1,
        "power_on",
    )
    assert rec.flag_names == ["NO_PYTHON_FRAME", "POSTHOC"]
    assert (rec.message, rec.mark, rec.uptime_ms, rec.heap_free, rec.stack_used) == (
        "watchdog reset, no early warning",
        "spin",
        0,
        None,
        0,
    )
    assert (ret.hdr.boot_cause, ret.hdr.loop_count, ret.hdr.boot_count) == (RC_WATCHDOG, 1, 2)
    assert out == [
        "failstop: reboot after WATCHDOG (seq 1, boot 1): watchdog reset, no early warning\r\n"
    ]
    # With the early warning (a pending cause left), no second record.
    ret.enter_reboot(Kind.WATCHDOG, 5)
    ret.close()
    ret, _ = boot_region(path, RC_WATCHDOG)
    assert len(ret.records()) == 1 and ret.hdr.loop_count == 2
    ret.close()


def test_header_rebuild_keeps_records_and_mark_and_sees_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.ram"
    ret, _ = boot_region(path, RC_POWER_ON)
    ret.mark_set("kept")
    ret.enter_reboot(Kind.PANIC, 10)
    ret.write_record(
        slot=0,
        kind=Kind.PANIC,
        action=1,
        flags=0,
        uptime_ms=10,
        heap_free=None,
        alloc_size=0,
        stack_used=0,
        depth=0,
        exc_type="",
        message="m",
        frames=(),
    )
    ret.hdr.seen_seq = 1
    ret.commit()
    ret.mem[8] ^= 0x5A  # the header's CRC no longer matches (v1 headers are rebuilt too)
    ret.close()
    ret, _ = boot_region(path, RC_WATCHDOG)  # no post-hoc record: the header was not valid
    assert [r.seq for r in ret.records()] == [1]
    assert (ret.hdr.seen_seq, ret.hdr.next_seq, ret.hdr.boot_count) == (0, 2, 2)
    assert ret.mark_get() == "kept"
    region = codec.decode_region(ret.dump())
    assert region.header is not None and region.header.version == codec.HEADER_VERSION
    ret.close()


def test_torn_mark_block_reads_as_no_mark(tmp_path: Path) -> None:
    ret, _ = boot_region(tmp_path / "r.ram", RC_POWER_ON)
    hdr = ret.dump()[:44]
    ret.mark_set("old")
    new = codec.encode_mark("new-tag")
    for k in range(len(new) + 1):
        ret.mark_set("old")
        ret.mem[44 : 44 + k] = new[:k]
        assert ret.mark_get() in ("old", "", "new-tag"), k
        assert ret.dump()[:44] == hdr  # the header is never rewritten by a mark
    assert ret.mark_get() == "new-tag"
    ret.close()


def pick(path: Path, records: list[tuple[int, str]], seen: int, action: int) -> Optional[int]:
    """The slot a new record with ``action`` takes in a region whose slots hold these
    (seq, action) records, in slot order, with ``seen`` as the header's seen_seq."""
    raw = bytearray(codec.encode_header(boot_count=5, next_seq=10, seen_seq=seen, boot_cause=2))
    for seq, act in records:
        raw += codec.encode_slot(kind="OOM", seq=seq, action=act, boot=4)
    path.write_bytes(bytes(raw) + bytes(REGION_SIZE - len(raw)))
    ret = Retained(path)
    try:
        assert ret.load_header()
        return ret.pick_slot(action)
    finally:
        ret.close()


def test_slot_choice_and_raise_records_never_evict_the_evidence(tmp_path: Path) -> None:
    p = tmp_path / "r.ram"
    stops = [(7, "REBOOT"), (5, "REBOOT"), (6, "HALT")]
    raises = [(7, "REBOOT"), (8, "RAISE"), (9, "RAISE")]
    # An invalid slot first, else the oldest (not seq % 3).
    assert pick(p, [(4, "REBOOT"), (5, "REBOOT")], 0, Action.RAISE) == 2
    assert pick(p, stops, 0, A_REBOOT) == 1
    # RAISE: never an unseen record, nor the newest fail-stop record, seen or not.
    assert pick(p, stops, 6, Action.RAISE) == 1
    assert pick(p, stops, 4, Action.RAISE) is None
    assert pick(p, stops, 7, Action.RAISE) == 1
    assert pick(p, raises, 0, Action.RAISE) == 1  # RAISE records are fair game
    assert pick(p, raises, 9, Action.RAISE) == 1


def test_power_on_and_long_boots_start_a_fresh_crash_loop_window(
    tmp_path: Path, board: Path
) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop, time
        print("BOOT", failstop.boot_count(), failstop.safe_mode())
        failstop.crash_loop(1, 1000)
        if failstop.boot_count() < 4:
            time.sleep_ms(1500)  # longer than the window
            failstop.panic("late")
        """,
    )
    dev = SimDevice(tmp_path / "sim")
    run = dev.run(script)
    assert run.lines("BOOT") == ["1 False", "2 False", "3 False", "4 False"]
    fast = write(board, "fast.py", "import failstop\nfailstop.crash_loop(1)\nfailstop.panic('x')\n")
    dev.erase()
    assert dev.run(fast).end == "exit"  # boot 3 in safe mode
    assert dev.region().header.safe_mode  # type: ignore[union-attr]
    # The board is on at its REPL: exec does not reset it.
    out = dev.exec("import failstop; print('ON', failstop.safe_mode(), failstop.boot_count())")
    assert "ON True 3" in out
    # A power-on starts a fresh window: not in safe mode.
    again = dev.run(fast, max_boots=1)
    assert again.boot_reports[0].end == "reset" and "main program not run" not in again.output
    hdr = again.region.header
    assert hdr is not None and hdr.loop_count == 1 and hdr.boot_cause == "power_on"


def test_saturated_uptime_is_not_a_crash_loop(tmp_path: Path) -> None:
    dev = SimDevice(tmp_path / "sim", Resources(uptime_start_ms=2**32 - 1 - 10))
    run = dev.run(ROOT / "host_tests/scripts/long_uptime.py")
    assert run.lines("LAST") == [f"{2**32 - 1} False"] * 4
    assert run.lines("DONE") == ["False"]


def test_recoverable_nests_and_double_fault_injection(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop
        r = failstop.last()
        if r:
            print("LAST", r.kind, r.action, r.flags)
        else:
            with failstop.recoverable("OOM") as a:
                with failstop.recoverable("OOM") as b:
                    print("SAME", a is b)
                try:
                    bytearray(10**9)
                except MemoryError:
                    print("still stock")
            print("RECORDS", len(failstop.records()))
            failstop.policy("OOM", "RAISE")
            failstop._inject("DOUBLE", 8)
            try:
                bytearray(10**9)
            except MemoryError:
                print("ZALGO")
        """,
    )
    run = dev.run(script)
    assert run.lines("SAME") == ["True"] and "still stock" in run.output
    assert run.lines("RECORDS") == ["0"]
    assert "ZALGO" not in run.output and "failstop: double fault -> REBOOT" in run.output
    assert run.lines("LAST") == [f"OOM RAISE {codec.FLAG_DOUBLE_FAULT}"]
    assert run.records[0].flag_names == ["DOUBLE_FAULT"]


def test_missing_modules(tmp_path: Path, board: Path) -> None:
    dev = SimDevice(tmp_path / "sim", Resources(missing_modules=("asyncio", "json")))
    script = write(
        board,
        "main.py",
        """
        for name in ("asyncio", "json", "struct"):
            try:
                __import__(name)
                print("HAVE", name)
            except ImportError as e:
                print("NO", name, e)
        """,
    )
    run = dev.run(script)
    assert run.lines("NO") == ["asyncio no module named 'asyncio'", "json no module named 'json'"]
    assert run.lines("HAVE") == ["struct"]


def test_watchdog_bite_without_early_warning_on_the_board(dev: SimDevice, board: Path) -> None:
    script = write(
        board,
        "main.py",
        """
        import failstop
        r = failstop.last()
        if r:
            print("LAST", (r.seq, r.kind, r.boot, r.reset_cause, r.mark, r.message, r.location))
            print("NOW", failstop.boot_count(), failstop.reset_cause())
        else:
            failstop.watchdog(200)
            failstop.mark("spinning")
            while True:
                pass
        """,
    )
    run = dev.run(script, inject=Inject(early_warning=False))
    assert "failstop: WATCHDOG" not in run.output  # no fault path ran in boot 1
    assert run.lines("LAST") == [
        "(1, 'WATCHDOG', 1, 'power_on', 'spinning', 'watchdog reset, no early warning', None)"
    ]
    assert run.lines("NOW") == ["2 watchdog"]
    assert "failstop: reboot after WATCHDOG (seq 1, boot 1): watchdog reset" in run.output
    rec = run.record
    assert rec is not None and rec.flag_names == ["NO_PYTHON_FRAME", "POSTHOC"]
    assert run.boot_reports[0].hw_next == RC_WATCHDOG and run.end == "exit"


def test_board_presets() -> None:
    pico = Resources.board("RPI_PICO")
    assert pico.wdt_max_ms == 8388 and pico.heap_size is not None
    qemu = Resources.board("MPS2_AN385", stack_limit=50)
    assert qemu.wdt_max_ms == 171798 and qemu.stack_limit == 50
    assert (pico.small_int_bits, qemu.small_int_bits) == (31, 31)  # 32-bit words
    unix = Resources.board("unix")
    assert unix.small_int_bits == Resources().small_int_bits == 63
    with pytest.raises(ValueError, match="small_int_bits must be 31"):
        Resources(small_int_bits=32)
    assert unix.heap_size == Resources().heap_size  # the default stands for the unix port
    assert qemu.heap_size is not None and qemu.heap_size < pico.heap_size < unix.heap_size
    with pytest.raises(ValueError, match="unknown board 'ESP32'"):
        Resources.board("ESP32")


SMALL_INTS = """\
import failstop, time
print("WRAP", time.ticks_add(0, -1), time.ticks_diff(0, 1 << 29))
with failstop.fragile():
    raise ValueError(1 << 40)
"""


@pytest.mark.parametrize(
    ("backend", "preset"), [("unix", "unix"), ("qemu", "MPS2_AN385"), ("rp2", "RPI_PICO")]
)
def test_small_int_width_follows_the_board(backend: str, preset: str, tmp_path: Path) -> None:
    """What depends on the width of a small int, on the firmware and in the simulator with
    that board's preset: where the ticks wrap, and whether an exception's int argument
    (2**40: a small int on a 64-bit port, a long int on a 32-bit board) is recorded."""
    import re

    from backends import UnixBackend, require_built
    from conftest import UNIX_FW

    def wrap(text: str) -> str:
        m = re.search(r"WRAP (-?\d+ -?\d+)", text)
        assert m is not None, text
        return m.group(1)

    if backend == "unix":
        require_built(UNIX_FW, "make firmware BOARD=unix")
        fw = UnixBackend(UNIX_FW, tmp_path)
        board_wrap = wrap(fw.exec(SMALL_INTS))
        board_rec = fw.region().records[-1]
    else:
        from emulated_backend import at_repl
        from qemu_backend import qemu_board
        from rp2_backend import pico_board

        b = qemu_board(tmp_path) if backend == "qemu" else pico_board(tmp_path)
        with at_repl(b):
            start = b.output_end()
            # Typed at the REPL, one line at a time (the board resets at the panic).
            b.write(f"exec({SMALL_INTS!r})\r".encode())
            assert b.wait_for(rb"failstop: PANIC -> REBOOT", timeout=30, start=start)
            board_wrap = wrap(b.output(start).decode(errors="replace"))
            b.wait_for(rb">>> ", timeout=30, start=b.output_end())
            board_rec = codec.decode_region(b.retained()).records[-1]
    sim = SimDevice(tmp_path / "sim", Resources.board(preset))
    out = sim.exec(SMALL_INTS)
    sim_rec = sim.region().records[-1]
    assert wrap(out) == board_wrap
    assert (sim_rec.kind, sim_rec.exc_type, sim_rec.message) == (
        board_rec.kind,
        board_rec.exc_type,
        board_rec.message,
    )
    bits = Resources.board(preset).small_int_bits
    assert board_wrap == f"{2 ** (bits - 1) - 1} {-(2**29)}"
    assert board_rec.message == ("" if bits == 31 else str(1 << 40))


def test_a_frozen_module_costs_the_heap_nothing(dev: SimDevice, board: Path) -> None:
    """asyncio is frozen in MicroPython's firmware: importing it on a board takes little
    heap. Here the driver imports CPython's once, before the boots fork (about 2 MB: nearly
    the default heap), so a boot's import is as cheap; a board without it still has none."""
    script = write(
        board,
        "main.py",
        """
        import gc
        before = gc.mem_alloc()
        from asyncio import CancelledError
        print("COST", gc.mem_alloc() - before)
        """,
    )
    run = dev.run(script)
    assert run.end == "exit" and run.record is None, run.output
    assert int(run.lines("COST")[0]) < 64 * 1024
    without = SimDevice(dev.workdir.parent / "bare", Resources(missing_modules=("asyncio",)))
    bare = without.run(script, max_boots=1)
    assert bare.record is not None and bare.record.exc_type == "ImportError"
