"""Tests of the failstop command: decode, log (over real pseudo-terminals through mpremote's
own transport), watch, and escaping of device text."""

from __future__ import annotations

import binascii
import contextlib
import io
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
import serial

from failstop_host.cli import main
from failstop_host.codec import decode_region, encode_header, encode_region, encode_slot
from failstop_host.device import (
    CLEAR_SNIPPET,
    DEFAULT_TIMEOUT,
    DUMP_SNIPPET,
    Board,
    DeviceError,
    read_region,
)
from failstop_host.textsafe import escape
from failstop_host.watch import Event, LineSplitter, open_serial, parse_line, watch

PY = sys.executable
HOSTILE = "\x1b]0;title\x07\x1b[2J\r\x9b\u202e"
RAW_HOSTILE = ["\x1b", "\x07", "\r", "\x9b", "\u202e"]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def json_lines(out: str) -> tuple[dict, list[dict]]:
    """`--json` output: the region line, then the records."""
    first, *rest = [json.loads(ln) for ln in out.splitlines()]
    assert list(first) == ["region"], first
    return first["region"], rest


def three_records() -> bytes:
    return encode_region(
        [
            encode_slot(kind="PANIC", seq=4, boot=3, message="first", firmware="1.25.0+fs0.1.0"),
            encode_slot(
                kind="OOM",
                seq=5,
                boot=4,
                uptime_ms=1234,
                reset_cause="power_on",
                heap_free=1024,
                alloc_size=1000000,
                stack_used=800,
                exc_type="MemoryError",
                message="memory allocation failed, allocating 1000000 bytes",
                traceback=[("purse.py", 23, "deposit"), ("purse.py", 40, "main")],
            ),
            encode_slot(kind="STACK", seq=6, boot=5, exc_type="RuntimeError", mark="loop"),
        ],
        boot_count=6,
    )


@pytest.fixture
def region_file(tmp_path: object) -> str:
    path = os.path.join(str(tmp_path), "retained.bin")
    with open(path, "wb") as f:
        f.write(three_records())
    return path


def write(tmp_path: object, name: str, data: bytes) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# --- decode --------------------------------------------------------------------------------


def test_decode_shows_newest(region_file: str) -> None:
    code, out, err = run("decode", region_file)
    assert code == 0
    assert out.startswith("#6 STACK (REBOOT) boot 5")
    assert "#5" not in out and "mark 'loop'" in out
    assert err == ""  # empty slots are not reported without --all


def test_decode_all_oldest_first(region_file: str) -> None:
    code, out, _ = run("decode", "--all", region_file)
    assert code == 0
    heads = [ln for ln in out.splitlines() if ln.startswith("#")]
    assert heads[0].startswith("#4 PANIC") and heads[1].startswith("#5 OOM")
    assert heads[2].startswith("#6 STACK")
    assert "  at purse.py:23 in deposit" in out
    assert "  MemoryError: memory allocation failed, allocating 1000000 bytes" in out


def test_decode_json_lines(region_file: str) -> None:
    code, out, _ = run("decode", "--json", "--all", region_file)
    assert code == 0
    _, objs = json_lines(out)
    assert [o["seq"] for o in objs] == [4, 5, 6]
    assert objs[1]["location"] == {"file": "purse.py", "line": 23, "function": "deposit"}
    assert objs[1]["alloc_size"] == 1000000 and objs[1]["heap_free"] == 1024
    code, out, _ = run("decode", "--json", region_file)
    assert [o["seq"] for o in json_lines(out)[1]] == [6]


def test_json_and_text_show_the_region_header(tmp_path: object) -> None:
    data = bytearray(
        encode_region(
            [encode_slot(kind="PANIC", seq=4, boot=3), encode_slot(kind="OOM", seq=5, boot=4)],
            boot_count=5,
            loop_count=3,
            loop_limit=3,
            state=1,  # safe mode
        )
    )
    data[64 + 320 + 100] ^= 0x10  # slot 1 (seq 4) torn
    path = write(tmp_path, "r.bin", bytes(data))
    code, out, _ = run("decode", "--json", path)
    region, recs = json_lines(out)
    assert code == 0 and [r["seq"] for r in recs] == [5]
    assert region["header"]["boot_count"] == 5 and region["header"]["safe_mode"] is True
    assert (region["header"]["loop_count"], region["header"]["loop_limit"]) == (3, 3)
    assert region["header_error"] is None and (region["nslots"], region["records"]) == (3, 1)
    assert region["invalid"] == [
        {"slot": 0, "reason": "empty"},
        {"slot": 1, "reason": "bad crc"},
    ]
    code, out, _ = run("decode", path)
    last = out.splitlines()[-1]
    assert last.startswith("region: boot 5 ") and "crash loop 3/3" in last
    assert "SAFE MODE" in last and last.endswith("1 of 3 slots hold records, 1 empty, 1 invalid")


def test_decode_hex_dump(tmp_path: object) -> None:
    hexed = binascii.hexlify(three_records())
    wrapped = b"\n".join(hexed[i : i + 60] for i in range(0, len(hexed), 60)) + b"\n"
    path = write(tmp_path, "dump.hex", wrapped)
    code, out, _ = run("decode", "--json", path)
    assert code == 0 and json_lines(out)[1][0]["seq"] == 6


def test_decode_empty_region_exit_1(tmp_path: object) -> None:
    path = write(tmp_path, "blank.bin", bytes(1024))
    code, out, err = run("decode", path)
    assert (
        code == 1 and out == "region: header invalid (empty); 0 of 3 slots hold records, 3 empty\n"
    )
    assert "header invalid (empty)" in err and "no fault records" in err
    code, _, err = run("decode", "--all", path)
    assert code == 1 and "slot 2: empty" in err


def test_decode_reports_invalid_slots(tmp_path: object) -> None:
    data = bytearray(three_records())
    data[64 + 320 + 100] ^= 0x10  # slot 1 (seq 4) torn
    data[10] ^= 1  # header damaged
    code, out, err = run("decode", "--all", write(tmp_path, "torn.bin", bytes(data)))
    assert code == 0
    assert "slot 1: bad crc" in err and "header invalid (bad crc)" in err
    assert [ln.split()[0] for ln in out.splitlines() if ln.startswith("#")] == ["#5", "#6"]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "the file is empty"),
        (b"hello, this is not a region\n", "text but not a hex dump"),
        (b"abc", "text but not a hex dump"),  # odd number of hex digits
        (b"\x00\x01\x02" * 10, "too short"),
        (b"00" * 100, "too short"),
    ],
)
def test_decode_garbage_exit_3(tmp_path: object, data: bytes, message: str) -> None:
    code, out, err = run("decode", write(tmp_path, "junk", data))
    assert code == 3 and out == ""
    assert message in err and "Traceback" not in err


def test_decode_unreadable_exit_3(tmp_path: object) -> None:
    code, _, err = run("decode", os.path.join(str(tmp_path), "missing.bin"))
    assert code == 3 and "cannot read" in err and "No such file" in err
    code, _, err = run("decode", str(tmp_path))
    assert code == 3 and "cannot read" in err


def test_python_m_entry_point(tmp_path: object, region_file: str) -> None:
    proc = subprocess.run(
        [PY, "-m", "failstop_host", "decode", "--json", region_file],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and json_lines(proc.stdout)[1][0]["kind"] == "STACK"
    junk = write(tmp_path, "junk.bin", os.urandom(100))
    proc = subprocess.run(
        [PY, "-m", "failstop_host", "decode", junk], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3 and "too short" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- escaping of device text ---------------------------------------------------------------


def test_escape() -> None:
    assert escape("plain ascii, ünïcødé ok") == "plain ascii, ünïcødé ok"
    assert escape("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert escape("\x1b[2J") == "\\x1b[2J"
    assert escape("a\rb\nc\td") == "a\\x0db\\x0ac\\x09d"
    assert escape("\x7f\x80\x9b\x9f\xa0") == "\\x7f\\x80\\x9b\\x9f\xa0"
    assert escape("\u202a\u202e\u2066\u2069") == "\\u202a\\u202e\\u2066\\u2069"
    assert escape("back\\slash") == "back\\\\slash"
    assert escape("\\x1b") == "\\\\x1b"  # a device cannot fake an escape


def test_every_control_character_is_escaped() -> None:
    dangerous = [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
    dangerous += [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
    for ch in dangerous:
        assert ch not in escape(f"a{ch}b"), repr(ch)


def hostile_region() -> bytes:
    return encode_region(
        [
            encode_slot(
                kind="PANIC",
                seq=1,
                message=HOSTILE,
                mark="\x1b[2J\u202e",
                exc_type="Err\x1b[31m",
                firmware="fw\r\x9b",
                traceback=[("\x1b]0;x\x07.py", 1, "f\u202e")],
            )
        ]
    )


def test_hostile_strings_escaped_in_human_output(tmp_path: object) -> None:
    code, out, _ = run("decode", write(tmp_path, "evil.bin", hostile_region()))
    assert code == 0
    for ch in RAW_HOSTILE:
        assert ch not in out, repr(ch)
    assert "\\x1b]0;title\\x07\\x1b[2J\\x0d\\x9b\\u202e" in out
    assert "mark '\\x1b[2J\\u202e'" in out
    assert "at \\x1b]0;x\\x07.py:1 in f\\u202e" in out


def test_hostile_strings_safe_and_exact_in_json(tmp_path: object) -> None:
    code, out, _ = run("decode", "--json", write(tmp_path, "evil.bin", hostile_region()))
    assert code == 0
    assert out.isascii() and all(ch not in out for ch in RAW_HOSTILE)
    (obj,) = json_lines(out)[1]
    assert obj["message"] == HOSTILE and obj["mark"] == "\x1b[2J\u202e"


# --- watch: line parser --------------------------------------------------------------------


def test_parse_reboot_banner_full() -> None:
    line = (
        "failstop: reboot after OOM (seq 3, boot 2) at purse.py:23 in deposit: "
        "memory allocation failed, allocating 1000000 bytes\r\n"
    )
    ev = parse_line(line)
    assert ev == Event(
        "reboot",
        line.rstrip(),
        kind="OOM",
        seq=3,
        boot=2,
        file="purse.py",
        lineno=23,
        function="deposit",
        message="memory allocation failed, allocating 1000000 bytes",
    )
    assert ev.to_json()["location"] == {"file": "purse.py", "line": 23, "function": "deposit"}


@pytest.mark.parametrize(
    "line, fields",
    [
        (
            "failstop: reboot after WATCHDOG (seq 12, boot 40)",
            dict(kind="WATCHDOG", seq=12, boot=40, file=None, message=None),
        ),
        (
            "failstop: reboot after PANIC (seq 1, boot 1): bad: state: x",
            dict(kind="PANIC", file=None, message="bad: state: x"),
        ),
        (
            "failstop: reboot after STACK (seq 9, boot 3) at lib/a b.py:7 in <module>",
            dict(file="lib/a b.py", lineno=7, function="<module>", message=None),
        ),
        (
            "failstop: reboot after UNHANDLED (seq 2, boot 2) at C:/x.py:5 in f: ValueError: v",
            dict(file="C:/x.py", lineno=5, function="f", message="ValueError: v"),
        ),
    ],
)
def test_parse_reboot_banner_variants(line: str, fields: dict) -> None:
    ev = parse_line(line)
    assert ev is not None and ev.event == "reboot"
    for key, value in fields.items():
        assert getattr(ev, key) == value, key


def test_parse_fault_boot_and_other_lines() -> None:
    ev = parse_line("failstop: OOM -> REBOOT\r")
    assert ev is not None and (ev.event, ev.kind, ev.action) == ("fault", "OOM", "REBOOT")
    assert ev.to_json() == {
        "event": "fault",
        "kind": "OOM",
        "action": "REBOOT",
        "line": "failstop: OOM -> REBOOT",
    }
    ev = parse_line("MicroPython v1.25.0 on 2025-04-15; linux [GCC 12.2.0] version")
    assert ev is not None and ev.event == "boot"
    for other in [
        "",
        ">>> ",
        "failstop: reboot after OOM (seq x, boot 2)",
        "failstop: OOM -> ",
        "print('failstop: OOM -> REBOOT')",
        "  failstop: OOM -> REBOOT trailing",
        "Traceback (most recent call last):",
    ]:
        assert parse_line(other) is None, other


def test_parse_fault_line_after_output_without_line_end() -> None:
    # print("tick", end="") then the fault: the fault line shares the program's line.
    ev = parse_line("tick 5 ...failstop: OOM -> REBOOT\r")
    assert ev is not None and (ev.event, ev.kind, ev.action) == ("fault", "OOM", "REBOOT")
    ev = parse_line(">>> \r\nfailstop: double fault -> REBOOT")
    assert ev is not None and ev.to_json() == {
        "event": "double_fault",
        "action": "REBOOT",
        "line": ">>> \r\nfailstop: double fault -> REBOOT",
    }
    assert "double fault" in ev.describe()


def test_parse_reboot_and_safe_mode_after_a_line_the_board_did_not_end() -> None:
    # A board reset at its REPL prompt (a hardware watchdog bite), or after print(...,
    # end=""), prints its first line after what it had not ended.
    for before in (">>> ", "tick 5 ...", "raw REPL; CTRL-B to exit\r\n>"):
        ev = parse_line(before + "failstop: reboot after STACK (seq 6, boot 5)\r\n")
        assert ev is not None and (ev.event, ev.kind, ev.seq, ev.boot) == ("reboot", "STACK", 6, 5)
        ev = parse_line(
            before + "failstop: safe mode (4 fail-stop reboots within the crash-loop window)"
        )
        assert ev is not None and (ev.event, ev.count) == ("safe_mode", 4)


def test_parse_safe_mode_and_a_tight_boot_banner() -> None:
    line = (
        "failstop: safe mode (4 fail-stop reboots within the crash-loop window); "
        "main program not run"
    )
    ev = parse_line(line)
    assert ev is not None and ev.to_json() == {"event": "safe_mode", "count": 4, "line": line}
    assert "safe mode after 4" in ev.describe()
    for banner in [
        "MicroPython v1.25.0 on 2026-12-03; mps2-an385 with Cortex-M3",
        "MicroPython v1.25.0 on 2026-12-02; Raspberry Pi Pico with RP2040",
        "MicroPython v1.26.1 on 2025-09-11; linux [GCC 12.2.0] version",
        "MicroPython v1.26.0-preview.123.gabcdef on 2025-06-01; ESP32 module with ESP32",
    ]:
        ev = parse_line(banner)
        assert ev is not None and ev.event == "boot", banner
    for not_a_boot in [
        "MicroPython rocks",
        "MicroPython v1.25.0",
        "MicroPython version check: v1.25.0 on 2026-12-03; x",
        "MicroPython v1.25 on 2026-12-03; board",
    ]:
        assert parse_line(not_a_boot) is None, not_a_boot


def test_event_describe_escapes() -> None:
    ev = parse_line("failstop: reboot after PANIC (seq 1, boot 1): \x1b[2J\x9b")
    assert ev is not None
    text = ev.describe()
    assert "\x1b" not in text and "\x9b" not in text and "\\x1b[2J" in text


def test_line_splitter() -> None:
    s = LineSplitter(limit=10)
    assert s.feed(b"ab") == [] and s.pending() == "ab"
    assert s.feed(b"c\r\nde\nf") == ["abc", "de"]
    assert s.feed(b"\xc3") == [] and s.feed(b"\xa9\n") == ["f\u00e9"]
    assert s.feed(b"x" * 12) == ["x" * 12]


def test_line_splitter_never_cuts_a_character() -> None:
    s = LineSplitter(limit=10)
    assert s.feed(b"caf\xc3") == [] and s.pending() == "caf"  # the rest is still coming
    assert s.feed(b"\xa9") == [] and s.pending() == "caf\u00e9"
    assert s.feed(b"\n") == ["caf\u00e9"]
    assert s.feed(b"\xe2\x82") == [] and s.pending() == ""
    assert s.feed(b"\xac\n") == ["\u20ac"]
    # A runaway line is cut between characters, not inside one.
    assert s.feed(b"abcdefghij\xe2\x82") == ["abcdefghij"]
    assert s.feed(b"\xac\n") == ["\u20ac"]


# --- pseudo-terminals ----------------------------------------------------------------------


class Pty:
    """A real pseudo-terminal. The test plays the board on the master side."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.received = b""

    def serve(self, fn: Callable[[Pty], None]) -> None:
        self.thread = threading.Thread(target=fn, args=(self,), daemon=True)
        self.thread.start()

    def read(self, wait: float = 0.05) -> bytes:
        r, _, _ = select.select([self.master], [], [], wait)
        if not r:
            return b""
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return b""
        self.received += data
        return data

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join(5)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


def silent(p: Pty) -> None:
    """Never answers; drains what the host sends so its writes never block."""
    while not p.stop.is_set():
        p.read()


def chatter(p: Pty) -> None:
    """Answers garbage, continuously, whatever the host sends."""
    while not p.stop.is_set():
        p.read(0)
        try:
            p.send(b"\x00\xffgarbage>\r\n" * 8)
        except OSError:
            return
        time.sleep(0.001)


class FakeBoard:
    """Speaks MicroPython's raw REPL (no raw-paste) on the master side of a pty.

    ``on_exec`` maps the code the host runs to (stdout, stderr) bytes, or to None to stop
    answering halfway (a board that resets during the read)."""

    def __init__(self, on_exec: Callable[[str], Optional[tuple[bytes, bytes]]]) -> None:
        self.on_exec = on_exec
        self.commands: list[str] = []

    def __call__(self, p: Pty) -> None:
        buf = b""
        raw = False
        while not p.stop.is_set():
            buf += p.read()
            while buf:
                if not raw:
                    i = buf.find(b"\x01")
                    if i < 0:
                        buf = b""
                        break
                    buf = buf[i + 1 :]
                    raw = True
                    p.send(b"raw REPL; CTRL-B to exit\r\n>")
                    continue
                if buf.startswith(b"\x05A\x01"):
                    buf = buf[3:]
                    p.send(b"R\x00")  # raw-paste not supported: plain raw REPL
                    continue
                if buf.startswith(b"\r\x02") or buf.startswith(b"\x02"):
                    buf = buf[buf.index(b"\x02") + 1 :]
                    raw = False
                    p.send(b"\r\n>>> ")
                    continue
                if buf.startswith(b"\x01"):
                    buf = buf[1:]
                    p.send(b"raw REPL; CTRL-B to exit\r\n>")
                    continue
                end = buf.find(b"\x04")
                if end < 0:
                    break
                code = buf[:end].decode()
                buf = buf[end + 1 :]
                self.commands.append(code)
                answer = self.on_exec(code)
                if answer is None:
                    return
                outb, errb = answer
                p.send(b"OK" + outb + b"\x04" + errb + b"\x04>")


def board_with(region: bytes) -> FakeBoard:
    def on_exec(code: str) -> tuple[bytes, bytes]:
        if code == DUMP_SNIPPET:
            return binascii.hexlify(region) + b"\r\n", b""
        if code == CLEAR_SNIPPET:
            return b"", b""
        return b"", b"NameError: name not defined\r\n"

    return FakeBoard(on_exec)


def timed(fn: Callable[[], object]) -> tuple[float, BaseException]:
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as info:
        fn()
    return time.monotonic() - t0, info.value


# --- log: device reader over real ptys and mpremote's transport ---------------------------


def test_log_silent_board_times_out(pty: Pty) -> None:
    pty.serve(silent)
    elapsed, exc = timed(lambda: read_region(pty.name, timeout=2))
    assert elapsed < 5, elapsed
    assert "no answer from the board within 2 s" in str(exc)


def test_log_silent_board_default_timeout(pty: Pty) -> None:
    pty.serve(silent)
    elapsed, exc = timed(lambda: read_region(pty.name))
    assert DEFAULT_TIMEOUT - 1 < elapsed < 15, elapsed
    assert "no answer" in str(exc)


def test_log_garbage_board_times_out(pty: Pty) -> None:
    pty.serve(chatter)
    elapsed, exc = timed(lambda: read_region(pty.name, timeout=2))
    assert elapsed < 5, elapsed
    assert pty.name in str(exc) and "no usable answer" in str(exc) and "garbage>" in str(exc)
    assert "\x00" not in str(exc) and "\xff" not in str(exc)


def test_log_board_resets_during_read(pty: Pty) -> None:
    region = three_records()

    def on_exec(code: str) -> Optional[tuple[bytes, bytes]]:
        # Half the hex, then the board reboots and prints its banner, then silence.
        half = binascii.hexlify(region)[:700]
        pty.send(b"OK" + half + b"\r\nfailstop: OOM -> REBOOT\r\nMicroPython v1.25.0\r\n")
        return None

    pty.serve(FakeBoard(on_exec))
    elapsed, exc = timed(lambda: read_region(pty.name, timeout=2))
    assert elapsed < 5, elapsed
    assert "no usable answer" in str(exc) and "did it reset" in str(exc)
    assert "MicroPython v1.25.0" in str(exc)


def test_log_board_sends_bad_hex(pty: Pty) -> None:
    pty.serve(FakeBoard(lambda code: (b"zz not hex\r\n", b"")))
    elapsed, exc = timed(lambda: read_region(pty.name, timeout=3))
    assert elapsed < 5
    assert "not a hex dump" in str(exc)


def test_log_board_without_failstop(pty: Pty) -> None:
    err = b'Traceback (most recent call last):\r\n  File "<stdin>", line 1\r\n'
    err += b"ImportError: no module named 'failstop'\r\n"
    pty.serve(FakeBoard(lambda code: (b"", err)))
    _, exc = timed(lambda: read_region(pty.name, timeout=3))
    assert "no failstop module" in str(exc)


def test_log_reads_region(pty: Pty) -> None:
    region = three_records()
    board = board_with(region)
    pty.serve(board)
    with Board(pty.name, timeout=5) as b:
        assert b.dump() == region
    assert board.commands == [DUMP_SNIPPET]
    deadline = time.monotonic() + 3  # the board thread reads what close() sent
    while not pty.received.endswith(b"\r\x02") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pty.received.endswith(b"\r\x02")  # left the raw REPL


def test_log_command_json_and_clear(pty: Pty) -> None:
    board = board_with(three_records())
    pty.serve(board)
    code, out, err = run("log", "--port", pty.name, "--json", "--all", "--clear", "--timeout", "5")
    assert code == 0, err
    assert [o["seq"] for o in json_lines(out)[1]] == [4, 5, 6]
    assert board.commands == [DUMP_SNIPPET, CLEAR_SNIPPET]
    assert "records cleared" in err


def test_log_clear_not_sent_after_bad_read(pty: Pty) -> None:
    board = FakeBoard(lambda code: (b"0011\r\n", b""))  # hex, but not a region
    pty.serve(board)
    code, out, err = run("log", "--port", pty.name, "--clear", "--timeout", "5")
    assert code == 3 and out == ""
    assert "bad region" in err and "too short" in err
    assert board.commands == [DUMP_SNIPPET]


def test_log_human_output_and_no_records(pty: Pty) -> None:
    pty.serve(board_with(encode_header() + bytes(960)))
    code, out, err = run("log", "-p", pty.name, "--timeout", "5")
    assert code == 1 and "no fault records" in err
    assert out.startswith("region: boot 1 (cause: power_on)"), out


def test_log_missing_port() -> None:
    code, out, err = run("log", "--port", "/dev/does-not-exist-failstop", "--timeout", "1")
    assert code == 3 and out == ""
    assert "no such serial port" in err and "Traceback" not in err


def test_board_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Board("/dev/null", timeout=0)


# --- watch: the serial loop over a pty -----------------------------------------------------


class WatchRun:
    """``watch`` running in a thread against a pty, as a user would run it."""

    def __init__(self, pty: Pty, *, as_json: bool, read: bool = False) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.result: list[int] = []
        self.ready = threading.Event()  # set once watch has opened the port
        self.opens: list[float] = []  # when watch opened the port
        self.thread = threading.Thread(target=self._run, args=(pty.name, as_json, read))
        self.thread.daemon = True
        self.t0 = time.monotonic()
        self.thread.start()

    def _open(self, port: str, baud: int) -> object:
        ser = open_serial(port, baud)
        self.opens.append(time.monotonic())
        self.ready.set()
        return ser

    def _run(self, port: str, as_json: bool, read: bool) -> None:
        self.result.append(
            watch(
                port,
                as_json=as_json,
                read=read,
                out=self.out,
                err=self.err,
                timeout=5,
                opener=self._open,
            )
        )

    def wait_ready(self) -> None:
        assert self.ready.wait(10), "watch did not open the port"

    def finish(self, limit: float = 10) -> tuple[int, str, str, float]:
        self.thread.join(limit)
        assert not self.thread.is_alive(), "watch did not stop"
        elapsed = time.monotonic() - self.t0
        return self.result[0], self.out.getvalue(), self.err.getvalue(), elapsed


def unplug(pty: Pty) -> None:
    """The board goes away: close the master side of the pty."""
    pty.stop.set()
    if pty.thread:
        pty.thread.join(5)
    os.close(pty.master)
    pty.master = os.open(os.devnull, os.O_RDONLY)  # keeps Pty.close() harmless


BOOT_LOG = (
    b"hello from main.py\r\n"
    b"failstop: OOM -> REBOOT\r\n"
    b"failstop: reboot after OOM (seq 3, boot 2) at purse.py:23 in deposit: oops \x1b[2J\r\n"
    b"MicroPython v1.25.0 on 2025-04-15; linux version\r\n"
    b">>> "
)


def test_watch_passes_through_and_exits_when_port_vanishes(pty: Pty) -> None:
    run_ = WatchRun(pty, as_json=False)
    run_.wait_ready()
    pty.send(BOOT_LOG)
    time.sleep(0.8)
    unplug(pty)
    code, out, err, elapsed = run_.finish()
    assert code == 3 and elapsed < 10
    assert "lost" in err and "Traceback" not in err
    lines = out.splitlines()
    assert "hello from main.py" in lines
    assert "[failstop] fault OOM, action REBOOT" in lines
    assert any(
        ln.startswith("[failstop] board rebooted after OOM (record #3, boot 2)") for ln in lines
    )
    assert "\x1b" not in out and "oops \\x1b[2J" in out
    assert any(ln.startswith("[failstop] board booted: MicroPython v1.25.0") for ln in lines)
    assert ">>> " in out  # an unterminated prompt is shown once the board is quiet


def test_watch_json_events(pty: Pty) -> None:
    run_ = WatchRun(pty, as_json=True)
    run_.wait_ready()
    pty.send(BOOT_LOG)
    time.sleep(0.5)
    unplug(pty)
    code, out, _, _ = run_.finish()
    assert code == 3
    events = [json.loads(ln) for ln in out.splitlines()]
    assert [e["event"] for e in events] == ["fault", "reboot", "boot"]
    assert events[1]["seq"] == 3 and events[1]["message"] == "oops \x1b[2J"
    assert events[1]["location"] == {"file": "purse.py", "line": 23, "function": "deposit"}


def test_watch_shows_a_multibyte_character_split_across_reads(pty: Pty) -> None:
    run_ = WatchRun(pty, as_json=False)
    run_.wait_ready()
    pty.send(b"temp 21\xc2")  # the prompt-like partial line is shown once it settles
    time.sleep(0.8)
    pty.send(b"\xb0C\r\nok\r\n")
    time.sleep(0.5)
    unplug(pty)
    _, out, _, _ = run_.finish()
    assert "temp 21\u00b0C\nok\n" in out, out
    assert "\ufffd" not in out


def test_watch_port_is_exclusive_with_dtr_rts_low(pty: Pty) -> None:
    ser = open_serial(pty.name, 115200)
    try:
        assert ser.dtr is False and ser.rts is False  # set before opening
        with pytest.raises(serial.SerialException):
            open_serial(pty.name, 115200)  # a second monitor: busy
        err = io.StringIO()
        assert watch(pty.name, out=io.StringIO(), err=err) == 3
        assert "cannot open" in err.getvalue()
    finally:
        ser.close()


def test_watch_reads_each_record_once(pty: Pty) -> None:
    region = three_records()
    inner = board_with(region)
    run_ = WatchRun(pty, as_json=True, read=True)

    def serve(p: Pty) -> None:
        run_.wait_ready()
        p.send(b"failstop: reboot after STACK (seq 6, boot 5)\r\n")
        inner(p)

    pty.serve(serve)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and DUMP_SNIPPET not in inner.commands:
        time.sleep(0.05)
    while time.monotonic() < deadline and len(run_.opens) < 2:
        time.sleep(0.05)  # watch has the port again
    time.sleep(1.0)  # generous: on a loaded machine watch takes a while to read again
    pty.send(b"failstop: reboot after STACK (seq 6, boot 5)\r\n")  # the same record again
    time.sleep(3.0)
    unplug(pty)
    _, out, err, _ = run_.finish()
    events = [json.loads(ln) for ln in out.splitlines()]
    assert [e["event"] for e in events] == ["reboot", "record", "reboot"], (
        err,
        out,
        inner.commands,
        pty.received,
    )
    assert inner.commands == [DUMP_SNIPPET]


def test_watch_read_after_reboot(pty: Pty) -> None:
    region = three_records()
    inner = board_with(region)

    run_ = WatchRun(pty, as_json=True, read=True)

    def serve(p: Pty) -> None:
        run_.wait_ready()
        p.send(b"failstop: reboot after STACK (seq 6, boot 5)\r\n")
        inner(p)

    pty.serve(serve)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and DUMP_SNIPPET not in inner.commands:
        time.sleep(0.05)
    time.sleep(0.5)
    unplug(pty)
    code, out, err, _ = run_.finish()
    events = [json.loads(ln) for ln in out.splitlines()]
    assert [e["event"] for e in events] == ["reboot", "record"], err
    assert events[1]["seq"] == 6 and events[1]["kind"] == "STACK"
    assert code == 3


def test_watch_follows_a_usb_board_through_its_reset(tmp_path: Path) -> None:
    # A USB serial board (a Pico) leaves the bus at every reset and comes back as a new
    # device; udev's /dev/serial/by-id link is the stable name. Here: a link to one pty,
    # removed at the "reset", then made again to a new pty that carries the reboot banner.
    link = tmp_path / "usb-MicroPython_Board_in_FS_mode-if00"
    first = Pty()
    link.symlink_to(first.name)
    out, err = io.StringIO(), io.StringIO()
    opened = threading.Event()

    def opener(port: str, baud: int) -> object:
        ser = open_serial(port, baud)
        opened.set()
        return ser

    result: list[int] = []
    t = threading.Thread(
        target=lambda: result.append(
            watch(str(link), out=out, err=err, opener=opener, reconnect=5, timeout=5)
        ),
        daemon=True,
    )
    t.start()
    assert opened.wait(10)
    first.send(b"hello\r\nfailstop: PANIC -> REBOOT\r\n")
    time.sleep(0.5)
    opened.clear()
    link.unlink()
    unplug(first)
    time.sleep(0.5)  # the host enumerates the board again
    second = Pty()
    link.symlink_to(second.name)
    assert opened.wait(10), err.getvalue()
    second.send(b"failstop: reboot after PANIC (seq 1, boot 1): valve\r\nMicroPython v1.25.0\r\n")
    time.sleep(0.8)
    link.unlink()
    unplug(second)  # gone for good this time: watch gives up after `reconnect`
    t.join(15)
    assert result == [3], err.getvalue()
    lines = out.getvalue().splitlines()
    assert "[failstop] fault PANIC, action REBOOT" in lines
    assert any(ln.startswith("[failstop] port gone") for ln in lines)
    assert "[failstop] port back" in lines
    assert any(ln.startswith("[failstop] board rebooted after PANIC (record #1") for ln in lines)
    assert "not back in 5 s" in err.getvalue()
    for p in (first, second):
        p.close()


def test_watch_missing_port() -> None:
    err = io.StringIO()
    assert watch("/dev/does-not-exist-failstop", out=io.StringIO(), err=err) == 3
    assert "cannot open" in err.getvalue()


def test_watch_ctrl_c_exits_cleanly(pty: Pty) -> None:
    class Interrupting:
        def __init__(self) -> None:
            self.in_waiting = 0
            self.closed = False

        def read(self, n: int) -> bytes:
            raise KeyboardInterrupt

        def close(self) -> None:
            self.closed = True

    ser = Interrupting()
    err = io.StringIO()
    code = watch(pty.name, out=io.StringIO(), err=err, opener=lambda port, baud: ser)
    assert code == 0 and ser.closed and "stopped" in err.getvalue()


def test_region_roundtrip_through_fake_board_matches_decoder(pty: Pty) -> None:
    region = three_records()
    pty.serve(board_with(region))
    got = read_region(pty.name, timeout=5)
    assert got == decode_region(region)


# --- port names and exit codes, on every command -------------------------------------------


class FakePortInfo:
    def __init__(self, device: str, serial_number: str) -> None:
        self.device, self.serial_number = device, serial_number
        self.vid, self.pid = 0x2E8A, 0x0005

    def __lt__(self, other: FakePortInfo) -> bool:
        return self.device < other.device


def test_port_names_as_mpremote_spells_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from failstop_host import ports

    monkeypatch.setattr(
        ports,
        "_comports",
        lambda: [FakePortInfo("/dev/ttyACM1", "E6614C"), FakePortInfo("/dev/ttyACM0", "DE6")],
    )
    env: dict[str, str] = {}
    assert ports.port_name("a0", env) == "/dev/ttyACM0"
    assert ports.port_name("u3", env) == "/dev/ttyUSB3"
    assert ports.port_name("c12", env) == "COM12"
    assert ports.port_name("id:E6614C", env) == "/dev/ttyACM1"
    assert ports.port_name("port:a0", env) == "a0"
    assert ports.port_name("/dev/ttyS4", env) == "/dev/ttyS4"
    assert ports.port_name("socket://localhost:4000", env) == "socket://localhost:4000"
    assert ports.port_name("auto", env) is None and ports.port_name(None, env) is None
    assert ports.port_name(None, {"FAILSTOP_PORT": "u1"}) == "/dev/ttyUSB1"
    assert ports.port_name("a2", {"FAILSTOP_PORT": "u1"}) == "/dev/ttyACM2"  # option wins
    with pytest.raises(ports.PortError, match="serial number 'NOPE'"):
        ports.port_name("id:NOPE", env)
    assert ports.first_usb_port() == "/dev/ttyACM0"


def test_log_reads_the_board_named_by_failstop_port(
    pty: Pty, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = board_with(three_records())
    pty.serve(board)
    monkeypatch.setenv("FAILSTOP_PORT", "port:" + pty.name)
    code, out, err = run("log", "--json", "--timeout", "5")
    assert code == 0, err
    assert json_lines(out)[1][0]["seq"] == 6


def test_log_unknown_serial_number_is_a_board_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from failstop_host import ports

    monkeypatch.setattr(ports, "_comports", lambda: [])
    code, out, err = run("log", "-p", "id:0123456789", "--timeout", "1")
    assert code == 3 and out == ""
    assert "no serial device with serial number '0123456789'" in err
    code, _, err = run("watch", "-p", "id:0123456789")
    assert code == 3 and "serial number" in err
    monkeypatch.delenv("FAILSTOP_PORT", raising=False)
    code, _, err = run("watch")  # auto, and no USB serial device
    assert code == 3 and "no USB serial device found" in err and "FAILSTOP_PORT" in err


def test_watch_takes_the_port_as_option_or_argument() -> None:
    for how in ("-p", "argument"):
        p = Pty()
        try:
            argv = ["watch", "-p", p.name] if how == "-p" else ["watch", p.name]
            threading.Timer(0.8, lambda p=p: p.send(b"hello\r\n")).start()
            threading.Timer(1.6, lambda p=p: unplug(p)).start()
            code, out, err = run(*argv, "--reconnect", "0")
            assert "hello" in out, (how, out, err)
            assert code == 3 and "lost" in err, (how, err)  # the port went away
        finally:
            p.close()
    code, _, err = run("watch", "/dev/x", "-p", "/dev/y")
    assert code == 2 and "give the port once" in err


def test_exit_codes_are_distinct(tmp_path: object) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["log", "--no-such-option"], io.StringIO(), io.StringIO())
    assert usage.value.code == 2  # usage error
    code, _, _ = run("decode", write(tmp_path, "blank.bin", bytes(1024)))
    assert code == 1  # no records
    code, _, _ = run("decode", write(tmp_path, "junk", b"junk"))
    assert code == 3  # input or board error
    p = subprocess.run(
        [PY, "-m", "failstop_host", "--help"], capture_output=True, text=True, timeout=60
    )
    text = " ".join(p.stdout.split())
    assert "1 no records, 2 usage error, 3 board or input error" in text


# --- --elf: symbolized code addresses ------------------------------------------------------

QEMU_ELF = Path(
    os.environ.get(
        "FAILSTOP_QEMU_FW", Path(__file__).parent.parent / "build/MPS2_AN385/firmware.elf"
    )
)


def elf_function(elf: Path, name: str) -> int:
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        return int(sym["st_value"])


@pytest.fixture
def elf() -> Path:
    from backends import require_built

    require_built(QEMU_ELF, "make firmware BOARD=MPS2_AN385")
    return QEMU_ELF


def test_decode_elf_symbolizes_pc_and_lr(tmp_path: object, elf: Path) -> None:
    pc = (elf_function(elf, "gc_alloc") & ~1) + 4
    lr = elf_function(elf, "mp_obj_new_bytearray") + 8  # Thumb: bit 0 set
    region = encode_region([encode_slot(kind="HARDFAULT", seq=1, pc=pc, lr=lr)])
    path = write(tmp_path, "hf.bin", region)
    code, out, err = run("decode", path, "--elf", str(elf))
    assert code == 0, err
    lines = out.splitlines()
    assert any(ln.startswith(f"  pc 0x{pc:08x}  gc_alloc (gc.c:") for ln in lines), out
    assert any(ln.startswith(f"  lr 0x{lr:08x}  mp_obj_new_bytearray (objarray.c:") for ln in lines)
    code, out, _ = run("decode", path, "--elf", str(elf), "--json")
    (rec,) = json_lines(out)[1]
    assert rec["pc_symbol"]["function"] == "gc_alloc" and rec["pc_symbol"]["file"] == "gc.c"
    assert isinstance(rec["pc_symbol"]["line"], int)
    assert rec["lr_symbol"]["function"] == "mp_obj_new_bytearray"
    code, out, _ = run("decode", path)  # without --elf: the bare addresses
    assert f"  pc 0x{pc:08x}, lr 0x{lr:08x}" in out.splitlines()


def test_elf_errors_are_input_errors(tmp_path: object, region_file: str) -> None:
    code, out, err = run("decode", region_file, "--elf", os.path.join(str(tmp_path), "no.elf"))
    assert code == 3 and out == "" and "--elf: cannot read" in err
    code, out, err = run("decode", region_file, "--elf", region_file)
    assert code == 3 and "not an ELF file" in err
    code, _, err = run("log", "-p", "/dev/null", "--elf", region_file)
    assert code == 3 and "not an ELF file" in err


def test_watch_read_elf(pty: Pty, elf: Path) -> None:
    from failstop_host.cli import Symbols

    pc = (elf_function(elf, "gc_alloc") & ~1) + 4
    region = encode_region([encode_slot(kind="HARDFAULT", seq=1, pc=pc, lr=pc + 1)])
    inner = board_with(region)
    symbols = Symbols(str(elf))
    out, err = io.StringIO(), io.StringIO()
    opened = threading.Event()

    def opener(port: str, baud: int) -> object:
        ser = open_serial(port, baud)
        opened.set()
        return ser

    def serve(p: Pty) -> None:
        opened.wait(10)
        p.send(b"failstop: reboot after HARDFAULT (seq 1, boot 1)\r\n")
        inner(p)

    pty.serve(serve)
    t = threading.Thread(
        target=lambda: watch(
            pty.name,
            as_json=False,
            read=True,
            out=out,
            err=err,
            timeout=5,
            opener=opener,
            symbolize=symbols.text,
            symbolize_json=symbols.add_json,
        ),
        daemon=True,
    )
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "  lr 0x" not in out.getvalue():
        time.sleep(0.1)
    time.sleep(0.3)
    unplug(pty)
    t.join(10)
    lines = out.getvalue().splitlines()
    assert any(ln.startswith(f"  pc 0x{pc:08x}  gc_alloc (gc.c:") for ln in lines), err.getvalue()


def test_mpremote_is_imported_only_to_read_a_board(region_file: str) -> None:
    """decode (and the package itself) work without mpremote; log says what it needs."""
    code = (
        "import sys\n"
        "sys.modules['mpremote'] = None  # not installed\n"
        "from failstop_host.cli import main\n"
        f"assert main(['decode', {region_file!r}]) == 0\n"
        "assert not any(m.startswith('mpremote.') for m in sys.modules)\n"
        "sys.exit(main(['log', '-p', '/dev/null', '--timeout', '1']))\n"
    )
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stderr
    assert "#6 STACK" in p.stdout
    assert "reading a board needs mpremote 1.25 or newer (pip install 'mpremote>=1.25')" in p.stderr


def test_package_readme_has_no_links_into_the_repository() -> None:
    """docs/host.md is the package's readme (on PyPI, outside the repository): its links
    are anchors within it."""
    import re

    text = (Path(__file__).parent.parent / "docs/host.md").read_text()
    links = re.findall(r"\]\(([^)]*)\)", text)
    assert links and all(link.startswith(("#", "https://")) for link in links), links


def test_emulate_explains_how_to_get_the_emulators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from failstop_host import emulator

    elf = Path(os.environ.get("FAILSTOP_QEMU_FW", "build/MPS2_AN385/firmware.elf"))
    if not elf.exists():
        pytest.skip("no MPS2_AN385 firmware")
    monkeypatch.setattr(emulator.shutil, "which", lambda name: None)  # no QEMU installed
    code, _, err = run("emulate", str(elf), "--flash", str(tmp_path / "f.img"))
    assert code == 3 and "qemu-system-arm not found" in err
    assert "apt-get install qemu-system-arm" in err and "npm install rp2040js" in err
