"""The fail-stop promise on the emulated Pico under field conditions (issue 11, RP2040):
an attached host that stops reading while Ctrl-C arrives, pico-sdk panics and C asserts,
watchdog budgets and feeds, a bite with no early warning."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from backends import SCRIPTS, fault_line
from emulated_backend import EmulatedBackend, at_repl, mpremote
from failstop_host import codec
from failstop_host.pico import PicoBoard
from rp2_backend import pico_board

SCRATCH1 = 0x40058010
READY = 0x5A1160
SCRATCH2 = 0x40058014
ZALGO = 0x2A160


def scratch(board: PicoBoard, addr: int) -> int:
    return int.from_bytes(board.read_memory(addr, 4), "little")


def records(board: PicoBoard) -> tuple[codec.Record, ...]:
    return codec.decode_region(board.retained()).records


def test_fault_with_host_not_reading_and_ctrl_c_runs_no_except(tmp_path: Path) -> None:
    """Issue 11 item 4. The host has the port open and does not read (the CDC FIFO is
    full), Ctrl-C bytes arrive, then an OOM: the fault path's console output must not run
    the scheduler (which raised the pending KeyboardInterrupt into the program's except
    clause, interrupts off, the board stuck). Record, reboot, no except clause.
    Before the raw console (MicroPython's CDC writer in the fault path), this board never
    rebooted: the banner waited in mp_usbd_cdc_tx_strn -> mp_event_wait_ms -> WFE with
    interrupts off, which nothing woke (the timer interrupt was already pending)."""
    with at_repl(pico_board(tmp_path)) as b:
        p = mpremote(b.port, "fs", "cp", str(SCRIPTS / "usb_stalled_ctrlc.py"), ":stall.py")
        assert p.returncode == 0, p.stdout + p.stderr
        assert b.wait_for(rb">>> $", timeout=10), b.output()
        b.host_read(False)
        b.write(b"import stall\r")
        deadline = time.monotonic() + 30
        while scratch(b, SCRATCH1) != READY:
            assert time.monotonic() < deadline, b.runner_log()
            time.sleep(0.05)
        assert b.status()["in_stalled"]  # the board's output waits for the host
        b.write(b"\x03\x03")  # mpremote's interrupt, as a host connecting sends it
        time.sleep(3.0)  # the board handles the fault meanwhile, its output unread
        b.host_read(True)
        m = b.wait_for(rb"failstop: reboot after OOM", timeout=20)
        time.sleep(1.0)  # whatever else the board prints
        out = b.output().decode(errors="replace")
        # The except clause leaves its mark in a watchdog scratch register (it survives
        # the reset): its printing alone could be stuck behind interrupts that are off.
        assert scratch(b, SCRATCH2) != ZALGO, "the program's except clause ran:\n" + out
        assert "ZALGO" not in out, out
        assert m is not None, out
        assert b.watchdog_resets() == 1, b.boot_reasons()
        (rec,) = records(b)
        assert (rec.kind, rec.action, rec.exc_type) == ("OOM", "REBOOT", "MemoryError")
        assert rec.location is not None and rec.location.function == "fault", rec
        assert rec.flag_names == [], rec.flag_names  # no double fault on the way


# What the fault path's console must never reach: MicroPython's stdout (dupterm
# streams, the CDC writer that waits through the scheduler) and the scheduler itself
# (pending exceptions, scheduled Python callbacks).
NOT_IN_FAULT_PATH = {
    "mp_hal_stdout_tx_strn",
    "mp_hal_stdout_tx_strn_cooked",
    "mp_usbd_cdc_tx_strn",
    "mp_os_dupterm_tx_strn",
    "mp_event_wait_ms",
    "mp_event_handle_nowait",
    "mp_handle_pending",
    "mp_sched_run_pending",
    "mp_usbd_task",
    "mp_call_function_n_kw",
}
# The HAL's output and stop functions, and what tinyusb's task calls through its class
# driver table for MicroPython's built-in CDC (not visible as direct calls).
FAULT_PATH_ROOTS = (
    "failstop_hal_write",
    "failstop_hal_reset",
    "failstop_hal_halt",
    "cdcd_xfer_cb",
    "cdcd_control_xfer_cb",
)

# Not followed: the runtime USB device's descriptor callbacks reach Python objects only
# while a machine.USBDevice is set (MP_STATE_VM(usbd)); the fault path's USB polling
# clears it first (and its output does not poll at all while it is set).
GUARDED = ("usbd_get_buffer_in_cb", "mp_usbd_runtime_string_cb")


def call_graph(elf: Path) -> dict[str, set[str]]:
    """Direct calls and tail calls between functions (arm-none-eabi-objdump)."""
    import subprocess

    dis = subprocess.run(
        ["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    graph: dict[str, set[str]] = {}
    current = None
    head = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")
    call = re.compile(r"\s(?:bl|blx|b|b\.n|b\.w)\s+[0-9a-f]+ <([^>+]+)>")
    for line in dis.splitlines():
        m = head.match(line)
        if m:
            current = m.group(1)
            graph.setdefault(current, set())
            continue
        m = call.search(line)
        if m and current is not None and m.group(1) != current:
            graph[current].add(m.group(1))
    return graph


def test_fault_path_console_reaches_no_scheduler_and_no_stdout() -> None:
    """Issue 11 item 4, statically: from the HAL's fault-path output (and the CDC class
    callbacks tinyusb's task runs), no call chain reaches MicroPython's stdout or the
    scheduler. The old HAL wrote through mp_usbd_cdc_tx_strn (-> mp_event_wait_ms ->
    mp_handle_pending)."""
    from rp2_backend import PICO_FW

    graph = call_graph(PICO_FW.with_suffix(".elf"))
    seen: dict[str, str] = {}
    todo = [(r, r) for r in FAULT_PATH_ROOTS if r in graph]
    assert len(todo) == len(FAULT_PATH_ROOTS), [r for r in FAULT_PATH_ROOTS if r not in graph]
    while todo:
        fn, path = todo.pop()
        if fn in seen:
            continue
        seen[fn] = path
        for callee in graph.get(fn, ()):
            if callee.startswith(GUARDED):
                continue
            todo.append((callee, f"{path} -> {callee}"))
    bad = sorted(seen[f] for f in NOT_IN_FAULT_PATH if f in seen)
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("sdk_panic('valve stuck')", r"panic: valve stuck \(-42, 0xf5\)"),
        ("c_assert()", r"assert hook != 0 at ports/rp2/failstop_hal\.c:\d+"),
    ],
)
def test_sdk_panic_and_c_assert_are_fatal(tmp_path: Path, call: str, message: str) -> None:
    """Issue 11 item 6 (rp2): pico-sdk's panic() printed through stdio and stopped at a
    breakpoint, a failed C assert printed and panicked: now FATAL with their text, the
    Python location, and a reboot. No correct program reaches either, so the firmware's
    test hooks (_failstop_rp2) call the real panic() and the C assert handler."""
    with at_repl(pico_board(tmp_path)) as b:
        b.write(f"import _failstop_rp2; _failstop_rp2.{call}\r".encode())
        assert b.wait_for(rb"failstop: reboot after FATAL", timeout=20), b.output()
        assert b.wait_for(rb">>> $", timeout=20), b.output()
        (rec,) = records(b)
        assert (rec.kind, rec.action) == ("FATAL", "REBOOT"), rec
        assert re.fullmatch(message, rec.message), rec.message
        assert rec.location is not None and rec.location.function == "<module>", rec
        assert b.watchdog_resets() == 1 and b.boot_reasons()[1] == "force"


def run_imported(b: PicoBoard, script: str, reboots: int = 1) -> str:
    """Copy `script` to the board and import it at the REPL; wait for its reboots and the
    prompt after them; the output."""
    p = mpremote(b.port, "fs", "cp", str(SCRIPTS / script), ":t.py")
    assert p.returncode == 0, p.stdout + p.stderr
    assert b.wait_for(rb">>> $", timeout=10), b.output()
    start = len(b.output())
    b.write(b"import t\r")
    deadline = time.monotonic() + 30
    while b.resets < reboots:
        assert time.monotonic() < deadline, b.output().decode(errors="replace")
        time.sleep(0.05)
    assert b.wait_for(rb"MicroPython v[^\n]*\n.*\n>>> $", timeout=20, start=start), b.output()
    return b.output(start).decode(errors="replace")


def test_fault_path_rearms_the_watchdog_to_its_budget(tmp_path: Path) -> None:
    """Issue 11 item 10 (rp2): a 1 ms program timeout and a fault 0.4 ms after feeding;
    recording takes ~0.9 ms. The fault path re-arms the watchdog to its budget on entry
    (MICROPY_FAILSTOP_WDT_BUDGET_MS): the record is complete, the reset is failstop's.
    Before, the program's timeout bit mid-record: no record, reset cause 'watchdog'."""
    with at_repl(pico_board(tmp_path)) as b:
        run_imported(b, "watchdog_budget.py")
        assert b.boot_reasons() == ["power_on", "force"]
        (rec,) = records(b)
        assert (rec.kind, rec.message, rec.flag_names) == ("PANIC", "short budget", [])
        assert rec.location is not None and rec.location.function == "late_fault"
        hdr = codec.decode_region(b.retained()).header
        assert hdr is not None and hdr.boot_cause == "fault"


def test_watchdog_bite_without_early_warning_is_reported(tmp_path: Path) -> None:
    """Issue 11 item 10 (rp2): a bite the firmware did not ask for and no early warning
    took (a 1 ms timeout) reads as 'watchdog' from the RP2040's REASON register, and the
    next boot records it post hoc, with the mark. Before: no record at all."""
    with at_repl(pico_board(tmp_path)) as b:
        run_imported(b, "watchdog_no_warning.py")
        assert b.boot_reasons() == ["power_on", "timer"]
        (rec,) = records(b)
        assert (rec.kind, rec.mark, rec.boot) == ("WATCHDOG", "spin", 1), rec
        assert "POSTHOC" in rec.flag_names, rec.flag_names
        hdr = codec.decode_region(b.retained()).header
        assert hdr is not None and hdr.boot_cause == "watchdog" and hdr.loop_count == 1


def test_feed_is_timed_before_the_hardware_takes_it(tmp_path: Path) -> None:
    """Issue 11 item 10 (rp2): the CPU stalls 50 ms right after the hardware took a feed
    (a long interrupt handler there), past the early-warning deadline of the feed
    before. The feed time was recorded after the hardware feed: the early warning then
    saw the old time and recorded a WATCHDOG at the feed, though the program was on time.
    Now the feed time comes first; the program runs on."""
    with at_repl(pico_board(tmp_path)) as b:
        b.stall_after("watchdog_update", 50, skip=1)  # skip the feed inside arming
        out = run_imported(b, "watchdog_feed_stall.py")
        assert len(b.stalls()) == 1, b.runner_log()
        assert "ALIVE" in out, out
        (rec,) = records(b)
        assert (rec.kind, rec.message) == ("PANIC", "done"), rec


def test_fault_on_core1_is_recorded_with_its_own_frames(tmp_path: Path) -> None:
    """Issue 11 item 3 on the emulated Pico (the runner models the RP2040's second core):
    a thread on core 1 runs out of memory while core 0 spins in another function. The
    record has the core-1 thread's location and frames and none of core 0's (one frame
    stack per core); core 0 was forced off (PSM) before the record was written; the
    board rebooted. With one frame stack for both cores, core 0's frames were recorded."""
    pico = pico_board(tmp_path)
    board = EmulatedBackend("rp2", pico)
    try:
        res = board.run("core1_fault.py", max_boots=3)
        assert res.end == "exit", res.output
        line = fault_line("core1_fault.py")
        assert res.last() == [
            ("OOM", "MemoryError", [("main.py", line, "grow"), ("main.py", line + 4, "worker")])
        ], res.output
        (rec,) = res.region.records
        assert rec.location is not None
        assert (rec.location.function, rec.location.line) == ("grow", line)
        assert "spin" not in [f.function for f in rec.traceback]
        assert "<module>" not in [f.function for f in rec.traceback]
        assert res.region.header is not None and res.region.header.boot_cause == "fault"
        log = pico.runner_log()
        assert "core 1 launched" in log and "core 0 forced off" in log, log
    finally:
        board.close()


def test_fault_on_core0_while_core1_runs_python(tmp_path: Path) -> None:
    """Issue 11 item 3, the other way round: core 1 spins in a Python function while the
    main program on core 0 runs out of memory. Core 0's frames only, and core 1 forced
    off (PSM) after it had been launched, before the reset."""
    pico = pico_board(tmp_path)
    board = EmulatedBackend("rp2", pico)
    try:
        res = board.run("core0_fault.py", max_boots=3)
        assert res.end == "exit", res.output
        line = fault_line("core0_fault.py")
        assert res.last() == [
            ("OOM", "MemoryError", [("main.py", line, "grow"), ("main.py", line + 4, "<module>")])
        ], res.output
        log = pico.runner_log()
        launched = log.index("core 1 launched")
        assert "core 1 forced off" in log[launched:].split("watchdog reset")[0], log
    finally:
        board.close()


def test_both_cores_fault_at_once_one_record(tmp_path: Path) -> None:
    """Issue 11 item 3, the claim: both cores fault together. The fault path is claimed
    atomically (a hardware spin lock): one record, complete, no double fault, one
    reboot. With the old check-then-set guard the second core took the first one's
    half-written record for a double fault and committed it."""
    pico = pico_board(tmp_path)
    board = EmulatedBackend("rp2", pico)
    try:
        res = board.run("both_cores_fault.py", max_boots=3)
        assert res.end == "exit" and res.boots == 2, res.output
        ((kind, flags, where, n),) = res.last()
        assert (kind, flags, n) == ("OOM", 0, 1), res.output
        assert where in ("grow0", "grow1")
        (rec,) = res.region.records
        assert rec.flag_names == [] and rec.message.startswith("memory allocation failed")
    finally:
        board.close()


def test_pin_reset_starts_a_fresh_crash_loop_window(tmp_path: Path) -> None:
    """Issue 11 item 1 on the Pico: the RUN pin (a reset button) keeps SRAM, so the
    retained region and its crash-loop count survive it. A program that faults once after
    each pin reset, five in a row: never safe mode (the count restarts at a pin reset).
    Before, the fourth pin reset put the board in safe mode."""
    with at_repl(pico_board(tmp_path)) as b:
        p = mpremote(b.port, "fs", "cp", str(SCRIPTS / "pin_forever.py"), ":main.py")
        assert p.returncode == 0, p.stdout + p.stderr
        for n in range(5):
            start = len(b.output())
            b.pin_reset()
            assert b.wait_for(rb"RUNNING", timeout=30, start=start), (n, b.output(start))
            out = b.output(start).decode(errors="replace")
            assert "pin safe False" in out and "safe mode" not in out, (n, out)
        hdr = codec.decode_region(b.retained()).header
        assert hdr is not None and hdr.loop_count == 1 and not hdr.safe_mode
        assert b.boot_reasons().count("pin") == 5


def test_halt_stops_the_fault_path_watchdog_budget(tmp_path: Path) -> None:
    """The fault path arms the watchdog to its budget (500 ms) on entry; HALT must stop it
    again, or a board halted for a debugger resets under it half a second later."""
    with at_repl(pico_board(tmp_path)) as b:
        b.write(b"import failstop; failstop.policy('OOM', 'HALT'); bytearray(10**9)\r")
        assert b.wait_for(rb"failstop: OOM -> HALT", timeout=20), b.output()
        t0 = b.status()["sim_ms"]
        deadline = time.monotonic() + 60
        while b.status()["sim_ms"] - t0 < 1500:  # emulated time: three budgets
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert b.resets == 0 and b.running, b.boot_reasons()
        (rec,) = records(b)
        assert (rec.kind, rec.action) == ("OOM", "HALT")


def test_unhandled_traceback_runs_no_dupterm_stream(tmp_path: Path) -> None:
    """Issue 11 item 4 on the Pico: an UNHANDLED traceback was printed through
    MicroPython's stdout, which feeds os.dupterm streams: a Python write() ran in the fault
    path. Now the traceback comes from the record over the raw console."""
    pico = pico_board(tmp_path)
    board = EmulatedBackend("rp2", pico)
    try:
        res = board.run("dupterm_tap.py", max_boots=3)
        assert res.end == "exit" and res.boots == 2, res.output
        assert scratch(pico, SCRATCH2) != ZALGO, "a dupterm stream ran in the fault path"
        line = fault_line("dupterm_tap.py")
        assert res.last() == [("UNHANDLED", "KeyError", "valve", ("main.py", line, "lookup"))]
        assert "KeyError: valve" in res.output  # the traceback still shown
    finally:
        board.close()
