"""The device-script corpus (host_tests/scripts/) on every backend, same expectations.

Each script runs as the main program from power-on, through every fail-stop reboot, until
it ends. Expectations are checked twice: on what the device itself printed (the device
API, `failstop.last()`), and on the retained region decoded by the host codec."""

from __future__ import annotations

import ast

import pytest

from backends import (
    MICROPY_VERSION,
    OTHER_MICROPY,
    SCRIPTS,
    Board,
    RunResult,
    fault_line,
    firmware_path,
    require_built,
)
from failstop_host import codec

OOM_MSG = "memory allocation failed, allocating 1000000000 bytes"


def only_record(res: RunResult) -> codec.Record:
    assert len(res.region.records) == 1, res.output
    return res.region.records[0]


def assert_clean_fault(res: RunResult, boots: int = 2) -> None:
    """The fault ended in a reboot, no except clause ran, and the program then finished."""
    assert "ZALGO" not in res.output, res.output
    assert res.end == "exit", res.output
    assert res.boots == boots, res.output


@pytest.mark.lean
def test_oom_huge_bytearray(board: Board) -> None:
    res = board.run("oom_bytearray.py")
    assert_clean_fault(res)
    line = fault_line("oom_bytearray.py")
    assert res.last() == [
        (
            1,
            "OOM",
            "MemoryError",
            "" if board.lean else OOM_MSG,  # lean: the host writes the text (no OOM_TEXT)
            (board.main_file("oom_bytearray.py"), line, "inner"),
            10**9,
            0,
        )
    ]
    rec = only_record(res)
    assert (rec.kind, rec.action, rec.boot, rec.reset_cause) == ("OOM", "REBOOT", 1, "power_on")
    assert [(f.file, f.function) for f in rec.traceback] == [
        (board.main_file("oom_bytearray.py"), "inner"),
        (board.main_file("oom_bytearray.py"), "outer"),
        (board.main_file("oom_bytearray.py"), "<module>"),
    ]
    assert rec.alloc_size == 10**9 and rec.heap_free is not None and rec.heap_free > 0
    assert f"MemoryError: {OOM_MSG}" in codec.format_record(rec)  # lean too: written on the host
    assert rec.firmware.startswith(f"{board.micropython}+fs")
    assert res.region.header is not None and res.region.header.boot_cause == "fault"


@pytest.mark.lean
def test_oom_list_grows_until_heap_full(board: Board) -> None:
    res = board.run("oom_list_grow.py")
    assert_clean_fault(res)
    ((seq, kind, exc, loc, heap_free, alloc, flags),) = res.last()
    assert (seq, kind, exc, flags) == (1, "OOM", "MemoryError", 0)
    assert loc == (board.main_file("oom_list_grow.py"), fault_line("oom_list_grow.py"), "fill")
    assert alloc > 0 and heap_free < alloc + 4096  # the heap was really full


@pytest.mark.lean
def test_oom_heap_locked(board: Board) -> None:
    res = board.run("oom_heap_locked.py")
    assert_clean_fault(res)
    assert res.last() == [
        (
            1,
            "OOM",
            "" if board.lean else "memory allocation failed, heap is locked",
            (board.main_file("oom_heap_locked.py"), fault_line("oom_heap_locked.py"), "isr_like"),
            codec.FLAG_HEAP_LOCKED,
        )
    ]
    assert only_record(res).flag_names == ["HEAP_LOCKED"]


@pytest.mark.lean
def test_stack_deep_recursion(board: Board) -> None:
    res = board.run("stack_recursion.py")
    assert_clean_fault(res)
    ((seq, kind, exc, msg, loc, depth, stack_used, flags),) = res.last()
    assert (seq, kind, exc, msg) == (1, "STACK", "RuntimeError", "maximum recursion depth exceeded")
    assert loc == (board.main_file("stack_recursion.py"), fault_line("stack_recursion.py"), "down")
    assert depth > 20 and stack_used > 0
    assert flags == codec.FLAG_TB_TRUNCATED
    rec = only_record(res)
    assert all(f.function == "down" for f in rec.traceback) and len(rec.traceback) == codec.NFRAMES


def test_depth_counts_every_active_frame(board: Board) -> None:
    """depth is exact past the three decoded frames (the fault path counts the rest several
    nodes a step), and recursion's repeated frames decode alike (the fault path reuses
    the frame before when the place is the same): 1 to 10 frames of down() under the
    module's."""
    res = board.run("panic_depth.py")
    assert_clean_fault(res, boots=11)
    main = board.main_file("panic_depth.py")
    panic_at = (main, fault_line("panic_depth.py"), "down")
    call_at = (main, fault_line("panic_depth.py", tag="# CALL"), "down")
    module_at = (main, fault_line("panic_depth.py", tag="# STEP"), "<module>")

    def frames(n: int) -> list[tuple]:
        return ([panic_at] + [call_at] * (n - 1) + [module_at])[: codec.NFRAMES]

    flags = [codec.FLAG_TB_TRUNCATED if n + 1 > codec.NFRAMES else 0 for n in range(1, 11)]
    got = [ast.literal_eval(s) for s in res.lines("DEPTH")]
    assert got == [(n, n + 1, frames(n), flags[n - 1]) for n in range(1, 11)]
    assert [r.depth for r in res.region.records] == [9, 10, 11]
    assert [(f.file, f.line, f.function) for f in res.region.records[-1].traceback] == frames(10)


def test_panic_accepts_anything(board: Board) -> None:
    res = board.run("panic_reasons.py")
    assert_clean_fault(res, boots=7)
    machine_line, failstop_line = (
        fault_line("panic_reasons.py", 1),
        fault_line("panic_reasons.py", 0),
    )
    loc = [
        (
            board.main_file("panic_reasons.py"),
            machine_line if i % 2 == 0 else failstop_line,
            "<module>",
        )
        for i in range(6)
    ]
    assert res.last() == [
        (1, "PANIC", "", "sensor stuck", loc[0], 0),
        (2, "PANIC", "", "42", loc[1], 0),
        (3, "PANIC", "KeyError", "valve", loc[2], 0),
        (4, "PANIC", "", "", loc[3], 0),
        (5, "PANIC", "", "x" * 64, loc[4], codec.FLAG_MSG_TRUNCATED),
        (6, "PANIC", "", "Unprintable", loc[5], codec.FLAG_REASON_UNPRINTABLE),
    ]
    assert "DONE 6" in res.output
    assert [r.seq for r in res.region.records] == [4, 5, 6]  # the ring keeps the newest three


def test_purse_commit_fault_is_not_swallowed(board: Board) -> None:
    res = board.run("purse.py")
    assert_clean_fault(res)
    line = fault_line("purse.py")
    ((seq, kind, exc, msg, loc, tb),) = res.last()
    assert (seq, kind, exc, msg) == (1, "PANIC", "ZeroDivisionError", "divide by zero")
    assert loc == (board.main_file("purse.py"), line, "deposit")
    assert tb[0] == loc and tb[1][0::2] == (board.main_file("purse.py"), "<module>")


def test_unhandled_exception_escaping_main(board: Board) -> None:
    res = board.run("unhandled.py")
    assert_clean_fault(res)
    assert "still running" in res.output  # sys.print_exception is not a fault
    assert "KeyError: valve" in res.output  # the traceback is still shown
    line = fault_line("unhandled.py")
    ((seq, kind, exc, msg, loc, tb),) = res.last()
    assert (seq, kind, exc, msg, loc) == (
        1,
        "UNHANDLED",
        "KeyError",
        "valve",
        (board.main_file("unhandled.py"), line, "lookup"),
    )
    assert tb[1][2] == "<module>"


@pytest.mark.lean
def test_watchdog_hang_with_interrupts_off(board: Board) -> None:
    res = board.run("watchdog_irqoff.py")
    assert_clean_fault(res)
    assert res.last() == [
        (
            1,
            "WATCHDOG",
            "irq-off",
            (board.main_file("watchdog_irqoff.py"), fault_line("watchdog_irqoff.py"), "critical"),
        )
    ]
    assert res.region.header is not None and res.region.header.boot_cause == "watchdog"


@pytest.mark.lean
def test_watchdog_during_mark_records_a_whole_mark_or_none(board: Board) -> None:
    res = board.run("watchdog_mark.py")
    assert_clean_fault(res)
    [line] = res.lines("MARK")
    kind, mark = ast.literal_eval(line)
    assert kind == "WATCHDOG" and mark in ("a" * 16, "b" * 16, ""), res.output
    assert only_record(res).mark == mark


def test_mark_interrupted_half_way_is_left_out(board: Board) -> None:
    """An interrupt at the worst moment of mark() (half the tag copied, the CRC not yet): the
    record's mark is none, never half a tag, and the torn block reads as none after the
    reboot (its CRC does not match) until mark() sets it again."""
    res = board.run("mark_torn.py")
    assert_clean_fault(res)
    [line] = res.lines("MARK")
    assert ast.literal_eval(line) == ("WATCHDOG", "", "<module>", fault_line("mark_torn.py"), "")
    assert res.lines("AGAIN") == [repr("c" * 16)]
    assert only_record(res).mark == ""
    assert res.region.header is not None and res.region.header.mark == "c" * 16


@pytest.mark.lean
def test_watchdog_hang_records_mark(board: Board) -> None:
    res = board.run("watchdog_hang.py")
    assert_clean_fault(res)
    assert "fed for 600 ms" in res.output  # feeding kept it alive
    assert res.last() == [
        (
            1,
            "WATCHDOG",
            "watchdog timeout",
            "valve-wait",
            (board.main_file("watchdog_hang.py"), fault_line("watchdog_hang.py"), "wait_for_valve"),
        )
    ]
    assert res.region.header is not None and res.region.header.boot_cause == "watchdog"
    # unix takes the early warning on a signal stack: 0 means unknown, never garbage.
    assert 0 <= only_record(res).stack_used < 64 * 1024


def test_halt_policy_stops_without_reset(board: Board) -> None:
    res = board.run("halt_policy.py")
    assert res.end == "halt" and "ZALGO" not in res.output
    rec = only_record(res)
    assert (rec.kind, rec.action, rec.boot) == ("OOM", "HALT", 1)
    assert res.boots == 1


def test_double_fault_keeps_first_record(board: Board) -> None:
    res = board.run("double_fault.py")
    assert_clean_fault(res)
    assert "double fault -> REBOOT" in res.output
    assert res.last() == [(1, "PANIC", "first", 1)]
    assert only_record(res).flag_names == ["DOUBLE_FAULT"]


def test_unhandled_traceback_runs_no_program_code(board: Board) -> None:
    """The UNHANDLED traceback comes from the record: the argument's __str__ never runs."""
    res = board.run("unhandled_poisoned.py")
    assert_clean_fault(res)
    main = board.main_file("unhandled_poisoned.py")
    loc = (main, fault_line("unhandled_poisoned.py"), "fail")
    assert res.last() == [(1, "UNHANDLED", "ValueError", loc, 0)]
    assert f'File "{main}", line {loc[1]}, in fail' in res.output
    assert "\nValueError" in res.output.replace("\r", "")


def test_fatal_nlr_jump_fail(board: Board) -> None:
    res = board.run("fatal_nlr.py")
    assert_clean_fault(res)
    assert res.last() == [
        (
            1,
            "FATAL",
            "uncaught NLR",
            (board.main_file("fatal_nlr.py"), fault_line("fatal_nlr.py"), "boom"),
        )
    ]


@pytest.mark.lean
def test_hardfault(board: Board) -> None:
    res = board.run("hardfault.py")
    assert_clean_fault(res)
    assert res.last() == [
        (1, "HARDFAULT", (board.main_file("hardfault.py"), fault_line("hardfault.py"), "poke"))
    ]


def test_crash_loop_breaker_trips_and_clears(board: Board) -> None:
    res = board.run("crash_loop.py")
    assert res.end == "exit" and res.boots == 4, res.output
    assert res.lines("MAIN") == ["boot 1 safe False", "boot 2 safe False", "boot 3 safe False"]
    assert "safe mode (3 fail-stop reboots" in res.output
    assert res.region.header is not None and res.region.header.safe_mode
    if not board.name.startswith("unix"):
        # Safe mode persists until cleared; the REPL still works in it; the keeper is
        # skipped. (On unix every run is a power-on, which starts a fresh window.)
        assert board.exec("import failstop; print(failstop.safe_mode())").strip().endswith("True")
        out = board.exec(
            "import failstop; print('KEEPER', failstop.keeper(lambda r: print('KEPT')))"
        )
        assert "KEEPER None" in out and "KEPT" not in out, out
    board.exec("import failstop; failstop.clear()")
    again = board.run("crash_loop.py", max_boots=1)
    assert again.end == "boot_limit" and "safe False" in again.lines("MAIN")[0]


def test_keeper_runs_once_after_fault(board: Board) -> None:
    res = board.run("keeper.py")
    assert_clean_fault(res)
    assert res.lines("BOOT") == ["1 power_on", "2 fault"]
    assert res.lines("KEPT") == ["PANIC for the keeper 1"]
    assert res.lines("KEEPER AGAIN") == ["None", "None"]
    assert "DONE True" in res.output


def test_keeper_that_faults_is_not_run_on_its_own_record(board: Board) -> None:
    res = board.run("keeper_faults.py")
    assert "ZALGO" not in res.output and res.end == "exit", res.output
    assert res.boots == 3, res.output
    assert res.lines("KEPT") == ["PANIC for the keeper 1"]
    assert res.lines("KEEPER") == ["False", "False"]  # boot 2's keeper never returned
    assert res.lines("DONE") == ["[(1, 'for the keeper', 0), (2, 'keeper bug', 1)]"]
    assert [r.flag_names for r in res.region.records] == [[], ["IN_KEEPER"]]


def test_raise_records_never_evict_the_evidence(board: Board) -> None:
    res = board.run("raise_evidence.py")
    assert res.end == "exit" and res.boots == 2, res.output
    assert res.lines("probe") == [f"{i} caught" for i in range(4)]
    assert res.lines("LAST") == ["(1, 'PANIC', 'the evidence')"]
    assert res.lines("RECORDS") == ["[('PANIC', 'REBOOT', 1), ('OOM', 'RAISE', 2)]"]


def test_fragile_lets_ctrl_c_and_generator_close_through(board: Board) -> None:
    res = board.run("fragile_base.py")
    assert "ZALGO" not in res.output and res.end == "exit", res.output
    assert "passed KeyboardInterrupt" in res.output and "passed GeneratorExit" in res.output
    main = board.main_file("fragile_base.py")
    kinds = [(r.kind, r.exc_type) for r in res.region.records]
    assert kinds == [("PANIC", "SystemExit"), ("PANIC", "CancelledError")], res.output
    assert res.region.records[0].traceback[0].file == main
    assert res.boots == 3


def test_recoverable_region_is_stock_inside_fail_stop_outside(board: Board) -> None:
    res = board.run("recoverable.py")
    assert "ZALGO" not in res.output and res.end == "exit" and res.boots == 3, res.output
    assert "fell back to 16" in res.output and "caught deep recursion" in res.output
    assert "records 0" in res.output
    assert res.lines("LAST") == [
        "(1, 'PANIC', 'ValueError', 'torn commit')",
        f"(2, 'OOM', 'MemoryError', '{OOM_MSG}')",
    ]


@pytest.mark.lean
def test_mark_allocates_nothing(board: Board) -> None:
    res = board.run("mark_locked.py", max_boots=2)
    assert res.end == "exit" and res.boots == 1, res.output
    assert res.lines("MARK") == ["in-irq"]


@pytest.mark.lean
def test_heap_free_is_the_free_heap_at_the_fault(board: Board) -> None:
    res = board.run("heap_free.py")
    assert res.end == "exit" and res.boots == 2, res.output
    [line] = res.lines("HEAP")
    heap_free, mem_free = (int(v) for v in line.split())
    assert only_record(res).heap_free == heap_free > 0
    if board.name == "sim":
        # The simulator's heap is CPython's (tracemalloc): its own call of panic() counts.
        assert abs(heap_free - mem_free) < 2048, res.output
    else:
        assert heap_free == mem_free, res.output


@pytest.mark.lean
def test_fault_on_another_thread_or_core(board: Board) -> None:
    res = board.run("thread_fault.py")
    assert "ZALGO" not in res.output and res.end == "exit", res.output
    if "no _thread" in res.output:
        assert res.boots == 1 and not res.region.records
        return
    assert res.boots == 2, res.output
    main = board.main_file("thread_fault.py")
    assert res.last() == [
        (1, "PANIC", "in thread", (main, fault_line("thread_fault.py"), "worker"), ["worker"])
    ]


def test_exception_escaping_a_thread_is_not_unhandled(board: Board) -> None:
    res = board.run("thread_exception.py")
    assert res.end == "exit" and res.boots == 1, res.output
    if "no _thread" not in res.output:
        assert "main still running 0" in res.output, res.output
        if board.name != "sim":  # CPython prints a thread's exception its own way
            assert "ValueError" in res.output, res.output
    assert not res.region.records


def test_simultaneous_faults_on_several_threads_or_cores(board: Board) -> None:
    res = board.run("threads_race.py")
    assert res.end == "exit", res.output
    if "no _thread" in res.output:
        return
    assert res.boots == 2 and "double fault" not in res.output, res.output
    ((seq, kind, tag, flags),) = res.last()
    assert (seq, kind, flags) == (1, "PANIC", 0) and tag in ("racer", "main")
    assert res.lines("RECORDS") == ["1"]


def test_bad_arguments_raise_clear_errors(board: Board) -> None:
    res = board.run("bad_args.py", max_boots=1)
    assert res.end == "exit" and "END" in res.output, res.output
    assert "NO ERROR" not in res.output
    errs = res.lines("ERR")
    expected_types = {
        "policy(1)": "TypeError",
        "policy('NOPE')": "ValueError",
        "policy('OOM', 'EXPLODE')": "ValueError",
        "policy('OOM', 3)": "TypeError",
        "policy('PANIC', 'RAISE')": "ValueError",
        "policy('WATCHDOG', 'RAISE')": "ValueError",
        "watchdog('1')": "TypeError",
        "watchdog(0)": "ValueError",
        "watchdog(-5)": "ValueError",
        "mark(5)": "TypeError",
        "mark('x' * 17)": "ValueError",
        "keeper(1)": "TypeError",
        "crash_loop(0)": "ValueError",
        "crash_loop('3')": "TypeError",
        "crash_loop(3, 0)": "ValueError",
        "_inject('OOM')": "ValueError",
        "recoverable(1)": "TypeError",
        "recoverable('NOPE')": "ValueError",
        "recoverable('PANIC')": "ValueError",
    }
    got = {}
    for ln in errs:
        for call, typ in expected_types.items():
            if ln.startswith(call + " "):
                rest = ln[len(call) + 1 :]
                assert rest.startswith(typ + " ") and len(rest) > len(typ) + 5, (
                    ln
                )  # type and a message
                got[call] = typ
    assert got == expected_types
    assert "policy OOM REBOOT RAISE RAISE" in res.output
    assert "mark 'xxxxxxxxxxxxxxxx' None ''" in res.output
    assert "crash_loop (3, 60000) (5, 1000)" in res.output


def test_device_and_host_decode_agree(board: Board) -> None:
    """The records the firmware wrote, read by the device and by the host codec, agree."""
    board.run("panic_reasons.py")
    fields = (
        "r.seq, r.kind, r.action, r.reset_cause, r.boot, r.uptime_ms, r.flags, r.heap_free,"
        " r.alloc_size, r.stack_used, r.depth, r.mark, r.firmware, r.exc_type, r.message,"
        " r.traceback"
    )
    dev = board.exec(
        "import failstop\n"
        "for r in failstop.records():\n"
        f" print('REC', repr(({fields})))\n"
        "import binascii\n"
        "print('RAW', binascii.hexlify(failstop.dump()).decode())"
    )

    got = [ast.literal_eval(ln[4:]) for ln in dev.splitlines() if ln.startswith("REC ")]
    host = [
        (
            r.seq,
            r.kind,
            r.action,
            r.reset_cause,
            r.boot,
            r.uptime_ms,
            r.flags,
            r.heap_free,
            r.alloc_size,
            r.stack_used,
            r.depth,
            r.mark,
            r.firmware,
            r.exc_type,
            r.message,
            [(f.file, f.line, f.function) for f in r.traceback],
        )
        for r in board.region().records
    ]
    assert got == host and len(host) == 3
    raw = [ln[4:].strip() for ln in dev.splitlines() if ln.startswith("RAW ")]
    assert raw and bytes.fromhex(raw[0]) == board.region().raw


def program_lines(output: str) -> list[str]:
    """What a program printed and the last line of its traceback, without the
    board-specific lines (banners, file names in tracebacks, prompts)."""
    keep = ("caught ", "after", "OSError: ")
    return [ln.strip() for ln in output.splitlines() if ln.strip().startswith(keep)]


def test_raise_policy_is_stock_behaviour(board: Board) -> None:
    # The stock unix port of the board's MicroPython version (the simulator's: the default).
    version = board.micropython if board.micropython in OTHER_MICROPY else MICROPY_VERSION
    stock = firmware_path("UNIX_STOCK", version)
    opt = "" if version == MICROPY_VERSION else f" MICROPY_VERSION={version}"
    require_built(stock, f"make firmware-unix-stock{opt}")
    res = board.run("raise_policy.py", max_boots=1)
    import subprocess

    ref = subprocess.run(
        [str(stock), "raise_policy.py"], cwd=SCRIPTS, capture_output=True, check=False
    )
    ref_out = (ref.stdout + ref.stderr).decode()
    if board.name.startswith("unix"):
        # The same binary without failstop: byte for byte (stderr comes last in both).
        assert res.exit_code == ref.returncode == 1
        assert res.output == ref_out
    else:
        # A board runs it as main.py and then waits at the REPL; the program's own
        # output and its escaping exception are stock MicroPython's.
        assert res.end == "exit"
    assert program_lines(res.output) == program_lines(ref_out)
    assert len(program_lines(ref_out)) == 5, ref_out
    assert "caught MemoryError" in res.output and "caught RuntimeError" in res.output
    # RAISE still records (best effort), once a boot: the first, OOM.
    assert [(r.kind, r.action) for r in res.region.records] == [("OOM", "RAISE")]
    assert res.boots == 1


# The module's API: the full profile, and what the lean profile keeps of it.
LEAN_API = ["Record", "feed", "last", "mark", "panic", "watchdog"]
FULL_API = sorted(
    [
        *LEAN_API,
        *("FATAL", "FIRMWARE", "HALT", "HARDFAULT", "OOM", "PANIC", "RAISE", "REBOOT", "STACK"),
        *("UNHANDLED", "WATCHDOG", "_inject", "boot_count", "clear", "crash_loop", "dump"),
        *("fragile", "keeper", "policy", "records", "recoverable", "reset_cause", "safe_mode"),
    ]
)


@pytest.mark.lean
def test_api_of_the_profile(board: Board) -> None:
    res = board.run("api_surface.py", max_boots=1)
    assert res.end == "exit" and res.boots == 1, res.output
    assert res.lines("API") == [str(LEAN_API if board.lean else FULL_API)]
