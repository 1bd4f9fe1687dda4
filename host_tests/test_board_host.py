"""The `failstop` command end to end against the emulated boards (MPS2_AN385 in QEMU, its
console a UART; the Pico in rp2040js, its console USB CDC): `log` (text, --json, --all,
--clear) and `watch` through the console's pseudo-terminal with real mpremote, and the
bounded-time error when the board stops answering. What the command reports is checked
against the region read straight from the board's RAM."""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import MICROPY_VERSION, SCRIPTS, fault_line
from emulated_backend import at_repl, mpremote
from failstop_host import codec
from failstop_host.emulator import PROMPT, ConsoleBoard, QemuBoard
from qemu_backend import QEMU_FW, qemu_board
from rp2_backend import PICO_FW, pico_board

FAILSTOP = [sys.executable, "-m", "failstop_host"]


@pytest.fixture(params=["qemu", "rp2"])
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConsoleBoard]:
    b: ConsoleBoard = qemu_board(tmp_path) if request.param == "qemu" else pico_board(tmp_path)
    with at_repl(b):
        yield b


def faulted(board: ConsoleBoard, script: str) -> None:
    """Install `script` as main.py, power-cycle, wait until it ended at the REPL."""
    p = mpremote(board.port, "fs", "cp", str(SCRIPTS / script), ":main.py")
    assert p.returncode == 0, p.stdout + p.stderr
    board.power_cycle()
    assert board.wait_for(re.escape(PROMPT), timeout=30), board.output()
    assert board.watchdog_resets(), "the board did not reset through its watchdog"


def failstop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FAILSTOP, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_log_reports_the_record_the_board_holds(board: ConsoleBoard) -> None:
    faulted(board, "purse.py")
    line = fault_line("purse.py")
    p = failstop("log", "-p", board.port)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("#1 PANIC (REBOOT) boot 1, ")
    assert f"at main.py:{line} in deposit" in p.stdout
    assert "ZeroDivisionError: divide by zero" in p.stdout
    assert f"firmware {MICROPY_VERSION}+fs" in p.stdout

    j = failstop("log", "-p", board.port, "--json")
    assert j.returncode == 0, j.stderr
    region, rec = [json.loads(ln) for ln in j.stdout.splitlines()]
    ram_region = codec.decode_region(board.retained())
    ram = ram_region.records[-1]
    assert rec == json.loads(json.dumps(ram.to_json()))  # what RAM holds, field by field
    assert region == {"region": json.loads(json.dumps(codec.region_json(ram_region)))}
    assert region["region"]["header"]["boot_count"] == 2  # the boot after the panic
    assert rec["location"] == {"file": "main.py", "line": line, "function": "deposit"}


def test_log_all_and_clear(board: ConsoleBoard) -> None:
    faulted(board, "panic_reasons.py")  # six panics; the ring keeps the newest three
    p = failstop("log", "-p", board.port, "--all", "--json", "--clear")
    assert p.returncode == 0, p.stderr
    assert [json.loads(ln).get("seq") for ln in p.stdout.splitlines()] == [None, 4, 5, 6]
    assert "records cleared" in p.stderr
    assert codec.decode_region(board.retained()).records == ()
    again = failstop("log", "-p", board.port)
    assert again.returncode == 1 and "no fault records" in again.stderr


def test_watch_sees_fault_reboot_and_reads_the_record(board: ConsoleBoard) -> None:
    w = subprocess.Popen(
        [*FAILSTOP, "watch", board.port, "--json", "--read", "--timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it open the port
        start = len(board.output())
        board.write(b"import machine\rmachine.panic('valve stuck')\r")
        assert board.wait_for(rb"reboot after PANIC", timeout=20, start=start)
        events: list[dict[str, object]] = []
        assert w.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = w.stdout
        threading.Thread(target=lambda: [lines.put(ln) for ln in stdout], daemon=True).start()
        deadline = time.monotonic() + 30  # a watch that says nothing more must not hang us
        while not any(e["event"] == "record" for e in events):
            try:
                events.append(json.loads(lines.get(timeout=max(0.1, deadline - time.monotonic()))))
            except queue.Empty:
                break
    finally:
        w.send_signal(signal.SIGINT)
        try:
            w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.kill()
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["fault", "reboot"], events
    assert events[0]["kind"] == "PANIC" and events[0]["action"] == "REBOOT"
    assert events[1]["message"] == "valve stuck" and events[1]["seq"] == 1
    rec = next(e for e in events if e["event"] == "record")
    assert (rec["kind"], rec["message"], rec["reset_cause"]) == ("PANIC", "valve stuck", "power_on")


def running(board: ConsoleBoard, script: str, until: bytes) -> None:
    """Install `script` as main.py, power-cycle, wait until its output shows `until`."""
    p = mpremote(board.port, "fs", "cp", str(SCRIPTS / script), ":main.py")
    assert p.returncode == 0, p.stdout + p.stderr
    board.power_cycle()
    assert board.wait_for(re.escape(until), timeout=30), board.output()


def test_log_does_not_disturb_a_running_program(board: ConsoleBoard) -> None:
    """A program that armed a 1.5 s watchdog and runs forever: `failstop log` stops it
    with Ctrl-C (no record), feeds the watchdog while it reads, and restarts it."""
    running(board, "watchdog_ticking.py", b"tick 3\r\n")
    resets = board.resets
    p = failstop("log", "-p", board.port, "--all")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "no fault records" in p.stderr
    assert "interrupted and restarted (soft reset)" in p.stderr
    after = len(board.output())
    assert board.wait_for(rb"tick 8\r\n", timeout=30, start=after), board.output(after)
    assert board.resets == resets  # the watchdog never bit
    assert codec.decode_region(board.retained()).records == ()  # nothing recorded
    again = failstop("log", "-p", board.port, "--json")  # and once more, the same
    assert again.returncode == 1, again.stderr
    (region,) = [json.loads(ln)["region"] for ln in again.stdout.splitlines()]
    assert region["records"] == 0 and region["header"]["safe_mode"] is False
    assert codec.decode_region(board.retained()).records == ()


def test_log_stay_leaves_the_board_at_its_repl(board: ConsoleBoard) -> None:
    running(board, "forever.py", b"RUNNING")
    p = failstop("log", "-p", board.port, "--stay")
    assert p.returncode == 0, p.stderr  # forever.py panics once after power-on
    assert "early fault" in p.stdout
    assert "stopped; the board waits at its REPL" in p.stderr
    start = len(board.output())
    board.write(b"print(6 * 7)\r")
    assert board.wait_for(rb"42\r\n>>> ", timeout=10, start=start), board.output(start)


def json_events(w: subprocess.Popen[str], until: str, timeout: float) -> list[dict[str, object]]:
    """The JSON events `w` prints until one is `until` (or `timeout` passes), then a second
    more (anything it should not have printed)."""
    assert w.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = w.stdout
    threading.Thread(target=lambda: [lines.put(ln) for ln in stdout], daemon=True).start()
    events: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            events.append(json.loads(lines.get(timeout=0.2)))
        except queue.Empty:
            if any(e["event"] == until for e in events):
                deadline = min(deadline, time.monotonic() + 1.0)
    return events


def test_watch_read_leaves_the_program_running(board: ConsoleBoard) -> None:
    """forever.py panics once after power-on, then runs: watch --read shows the fault, the
    reboot and the record once; the program goes on (restarted by a soft reset)."""
    p = mpremote(board.port, "fs", "cp", str(SCRIPTS / "forever.py"), ":main.py")
    assert p.returncode == 0, p.stdout + p.stderr
    w = subprocess.Popen(
        [*FAILSTOP, "watch", board.port, "--json", "--read", "--timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it open the port
        board.power_cycle()
        events = json_events(w, "record", timeout=40)
        start = len(board.output())
        time.sleep(3)  # what the board does after the read
    finally:
        w.send_signal(signal.SIGINT)
        try:
            w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.kill()
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["fault", "reboot", "record"], events
    assert kinds.count("record") == 1, events
    assert events[2]["message"] == "early fault"
    out = board.output()
    assert out.rfind(b"soft reboot") < out.rfind(b"RUNNING"), out[-400:]
    assert b"failstop:" not in board.output(start)  # no fault since
    assert len(codec.decode_region(board.retained()).records) == 1


def addr2line(elf: Path, address: int) -> tuple[str, str]:
    """binutils' answer (function, file:line), when a toolchain is there to compare with."""
    tool = shutil.which("arm-none-eabi-addr2line")
    if tool is None:
        pytest.skip("no arm-none-eabi-addr2line to compare with")
    p = subprocess.run(
        [tool, "-f", "-e", str(elf), hex(address)], capture_output=True, text=True, check=True
    )
    func, where = p.stdout.split("\n")[:2]
    file, line = where.rsplit(":", 1)
    return func, f"{Path(file).name}:{line.split()[0]}"


def test_log_elf_symbolizes_a_hard_fault(board: ConsoleBoard) -> None:
    """hardfault.py stores to an unmapped address: the record's pc and lr, symbolized from
    the firmware's ELF (DWARF line table, pyelftools), agree with binutils' addr2line."""
    elf = QEMU_FW if isinstance(board, QemuBoard) else PICO_FW.with_suffix(".elf")
    running(board, "hardfault.py", b"LAST")
    board.settle()
    p = failstop("log", "-p", board.port, "--elf", str(elf))
    assert p.returncode == 0, p.stderr
    j = failstop("log", "-p", board.port, "--elf", str(elf), "--json")
    assert j.returncode == 0, j.stderr
    rec = json.loads(j.stdout.splitlines()[1])
    assert rec["kind"] == "HARDFAULT" and rec["pc"] and rec["lr"]
    assert rec["pc_symbol"]["function"] == "mp_binary_set_val_array_from_int"
    for reg, is_return in (("pc", False), ("lr", True)):
        sym = rec[f"{reg}_symbol"]
        address = rec[reg] & ~1
        func, where = addr2line(elf, address - 1 if is_return else address)
        assert (sym["function"], f"{sym['file']}:{sym['line']}") == (func, where), reg
        assert f"  {reg} 0x{rec[reg]:08x}  {func} ({where})" in p.stdout.splitlines()


def test_log_gives_up_in_bounded_time_when_the_board_stops(board: ConsoleBoard) -> None:
    board.pause()  # the CPU stops: the UART is open but nothing answers
    t0 = time.monotonic()
    p = failstop("log", "-p", board.port, "--timeout", "2")
    took = time.monotonic() - t0
    assert p.returncode == 3, p.stdout + p.stderr
    assert "failstop log:" in p.stderr and len(p.stderr.strip()) > 20
    assert took < 15, took


def test_log_gives_up_in_bounded_time_when_the_board_keeps_resetting(board: ConsoleBoard) -> None:
    p = mpremote(board.port, "fs", "cp", str(SCRIPTS / "reset_loop.py"), ":main.py")
    assert p.returncode == 0, p.stdout + p.stderr
    board.power_cycle()
    t0 = time.monotonic()
    log = failstop("log", "-p", board.port, "--timeout", "3")
    took = time.monotonic() - t0
    assert board.resets > 3  # it really was resetting meanwhile
    assert log.returncode == 3, log.stdout + log.stderr
    assert log.stderr.startswith("failstop log: ") and log.stdout == ""
    assert took < 20, took


def test_pico_fault_path_probe(tmp_path: Path) -> None:
    """The emulated Pico measures a fault path as a debugger would (make bench uses it):
    the stack below the hook's entry and the emulated time, to the record and the reset."""
    pico = pico_board(tmp_path, probe=["failstop_fault"], probe_end="failstop_hal_reset")
    with at_repl(pico) as b:
        assert b.probes() == []
        b.write(b"import machine; machine.panic('probe')\r")
        assert b.wait_for(rb"reboot after PANIC", timeout=20), b.output()
        b.settle()
        (p,) = b.probes()
        # Some stack, far less than the stack-check margin (256 + 512 B on rp2); the
        # record is written before the reset, which waits for the USB drain.
        assert 0 < p["end_stack"] <= p["stack"] < 768, p
        assert 0 < p["end_ns"] < p["ns"] < 60_000_000, p
