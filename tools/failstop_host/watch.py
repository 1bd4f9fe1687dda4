"""``failstop watch PORT``: a serial monitor that recognises failstop's lines.

The firmware prints, just before a fail-stop reset::

    failstop: <KIND> -> <ACTION>

(anywhere in a line: the program may have printed without a line end), or, for a fault
while handling a fault, ``failstop: double fault -> REBOOT``; at the first boot after a
fault, exactly one banner line::

    failstop: reboot after <KIND> (seq <N>, boot <B>)[ at <file>:<line> in <func>][: <message>]

and, when the crash-loop breaker holds the board, ``failstop: safe mode (<N> fail-stop
reboots within the crash-loop window); main program not run``. MicroPython's own banner
(``MicroPython v1.25.0 on 2025-04-15; <board> with <mcu>``) means the board (re)booted.
:func:`parse_line` turns one line into an event; :func:`watch` runs the monitor loop.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO

import serial

from .codec import format_record
from .device import DEFAULT_TIMEOUT, DeviceError, read_region
from .textsafe import escape

_FAULT = re.compile(r"failstop: (?P<kind>[A-Z][A-Z0-9_]*) -> (?P<action>[A-Z][A-Z0-9_]*)\Z")
_DOUBLE = re.compile(r"failstop: double fault -> (?P<action>[A-Z][A-Z0-9_]*)\Z")
_SAFE = re.compile(
    r"failstop: safe mode \((?P<count>\d+) fail-stop reboots within the crash-loop window\)"
)
# MicroPython's banner, as py/ and every port print it: version, build date, board.
_BOOT = re.compile(
    r"MicroPython v\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?(?: dirty)? on \d{4}-\d{2}-\d{2}; \S.*\Z"
)
_REBOOT = re.compile(
    r"failstop: reboot after (?P<kind>[A-Z][A-Z0-9_]*) "
    r"\(seq (?P<seq>\d+), boot (?P<boot>\d+)\)"
    r"(?: at (?P<file>.*?):(?P<line>\d+) in (?P<function>[^:\s]*))?"
    r"(?:: (?P<message>.*))?\Z",
    re.DOTALL,
)


@dataclass(frozen=True)
class Event:
    """Something the monitor recognised in the board's output.

    ``event`` is ``"fault"`` (the firmware is about to act on a fault), ``"double_fault"``
    (a fault while handling one: the board resets at once), ``"reboot"`` (the first boot
    after a fault), ``"safe_mode"`` (the crash-loop breaker stopped the main program;
    ``count`` fail-stop reboots) or ``"boot"`` (MicroPython's banner).
    """

    event: str
    line: str
    kind: Optional[str] = None
    action: Optional[str] = None
    seq: Optional[int] = None
    boot: Optional[int] = None
    file: Optional[str] = None
    lineno: Optional[int] = None
    function: Optional[str] = None
    message: Optional[str] = None
    count: Optional[int] = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.event}
        if self.event == "fault":
            d.update(kind=self.kind, action=self.action)
        elif self.event == "double_fault":
            d.update(action=self.action)
        elif self.event == "safe_mode":
            d.update(count=self.count)
        elif self.event == "reboot":
            d.update(kind=self.kind, seq=self.seq, boot=self.boot)
            if self.file is not None:
                d["location"] = {"file": self.file, "line": self.lineno, "function": self.function}
            else:
                d["location"] = None
            d["message"] = self.message
        d["line"] = self.line
        return d

    def describe(self) -> str:
        """A human one-liner; device text escaped."""
        e = escape
        if self.event == "fault":
            return f"[failstop] fault {e(self.kind or '')}, action {e(self.action or '')}"
        if self.event == "double_fault":
            action = e(self.action or "")
            return f"[failstop] double fault (a fault in the fault path), action {action}"
        if self.event == "safe_mode":
            return (
                f"[failstop] board in safe mode after {self.count} fail-stop reboots: "
                "main.py not run (failstop.clear() ends it)"
            )
        if self.event == "reboot":
            s = f"[failstop] board rebooted after {e(self.kind or '')} (record #{self.seq}"
            s += f", boot {self.boot})"
            if self.file is not None:
                s += f" at {e(self.file)}:{self.lineno} in {e(self.function or '')}"
            if self.message is not None:
                s += f": {e(self.message)}"
            return s
        return f"[failstop] board booted: {e(self.line)}"


def parse_line(line: str) -> Optional[Event]:
    """Recognise one line of board output (without or with its line ending)."""
    text = line.rstrip("\r\n")
    if _BOOT.match(text):
        return Event("boot", text)
    # The board's own lines may follow a line it had not ended when it reset (the REPL's
    # ">>> " prompt, or print(..., end="")): found anywhere in the line.
    m = _REBOOT.search(text)
    if m:
        return Event(
            "reboot",
            text,
            kind=m["kind"],
            seq=int(m["seq"]),
            boot=int(m["boot"]),
            file=m["file"],
            lineno=int(m["line"]) if m["line"] is not None else None,
            function=m["function"],
            message=m["message"],
        )
    m = _SAFE.search(text)
    if m:
        return Event("safe_mode", text, count=int(m["count"]))
    # The fault lines may follow program output without a line end (print(..., end="")).
    m = _DOUBLE.search(text)
    if m:
        return Event("double_fault", text, action=m["action"])
    m = _FAULT.search(text)
    if m:
        return Event("fault", text, kind=m["kind"], action=m["action"])
    return None


def _complete_utf8(data: bytes) -> int:
    """The length of ``data`` without a UTF-8 sequence cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return len(data) - back if need > back else len(data)
        return len(data)
    return len(data)


class LineSplitter:
    """Collects serial bytes into lines (``\\n`` terminated, ``\\r`` dropped at the end)."""

    def __init__(self, limit: int = 4096) -> None:
        self._buf = b""
        self._limit = limit

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > self._limit:  # a runaway line: hand it on in pieces
            cut = _complete_utf8(self._buf)  # never in the middle of a character
            lines.append(self._buf[:cut])
            self._buf = self._buf[cut:]
        return [ln.rstrip(b"\r").decode("utf-8", "replace") for ln in lines]

    def pending(self) -> str:
        """The unterminated line so far, up to its last complete character (the rest of a
        multibyte character may be in the next read)."""
        buf = self._buf[: _complete_utf8(self._buf)]
        return buf.rstrip(b"\r").decode("utf-8", "replace")


Opener = Callable[[str, int], Any]


def open_serial(port: str, baud: int, dtr: bool = False, rts: bool = False) -> Any:
    """The monitor's port: pyserial, reads bounded to 0.1 s so Ctrl-C is seen promptly;
    opened exclusively (a second monitor or mpremote gets "busy", not half the bytes);
    DTR and RTS set low *before* opening, as miniterm and esp-idf-monitor do: on ESP32
    boards they drive EN and GPIO0, and opening with them high resets the board."""
    ser = serial.Serial()
    ser.port = port
    ser.baudrate = baud
    ser.timeout = 0.1
    ser.exclusive = True
    ser.dtr = dtr
    ser.rts = rts
    ser.open()
    return ser


def watch(
    port: str,
    baud: int = 115200,
    as_json: bool = False,
    read: bool = False,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
    timeout: float = DEFAULT_TIMEOUT,
    opener: Optional[Opener] = None,
    idle_flush: float = 0.3,
    reconnect: float = 0.0,
    dtr: bool = False,
    rts: bool = False,
    symbolize: Optional[Callable[[int, bool], str]] = None,
    symbolize_json: Optional[Callable[[dict[str, Any], int, int], dict[str, Any]]] = None,
) -> int:
    """Monitor ``port`` until Ctrl-C (exit 0) or until the port fails or vanishes (exit 3).

    Board output is passed through line by line, escaped; recognised lines also print an
    event. With ``as_json`` only events are printed, one JSON object per line. With ``read``,
    after a reboot-after-fault banner the record is read through the REPL and printed, once
    per record (the read interrupts the program the board just started and restarts it with
    a soft reset, see :class:`~failstop_host.device.Board`). With ``reconnect`` > 0, a port that
    vanishes (a USB board's serial goes away at every reset, e.g. a Pico's) is reopened as
    soon as it is back, for up to ``reconnect`` seconds, and watching goes on.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if opener is None:

        def opener(port: str, baud: int) -> Any:
            return open_serial(port, baud, dtr=dtr, rts=rts)

    seen: set[int] = set()  # records already read and shown (--read)

    def emit_json(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, ensure_ascii=True) + "\n")
        out.flush()

    try:
        ser = opener(port, baud)
    except (serial.SerialException, OSError, ValueError) as exc:
        err.write(f"failstop watch: cannot open {escape(port)}: {escape(str(exc))}\n")
        return 3
    if not as_json:
        err.write(f"failstop watch: {escape(port)} at {baud} baud, Ctrl-C to stop\n")
    splitter = LineSplitter()
    last_data = time.monotonic()
    shown_partial = 0  # characters of the pending line already printed
    try:
        while True:
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if reconnect <= 0:
                    err.write(f"failstop watch: port {escape(port)} lost: {escape(str(exc))}\n")
                    return 3
                with contextlib.suppress(Exception):
                    ser.close()
                if as_json:
                    emit_json({"event": "disconnected", "port": port})
                else:
                    out.write(
                        f"[failstop] port gone (reset or unplugged), waiting {reconnect:g} s\n"
                    )
                    out.flush()
                back = _reopen(port, baud, opener, reconnect)
                if back is None:
                    err.write(
                        f"failstop watch: port {escape(port)} gone, not back in {reconnect:g} s\n"
                    )
                    return 3
                ser = back
                if as_json:
                    emit_json({"event": "reconnected", "port": port})
                else:
                    out.write("[failstop] port back\n")
                    out.flush()
                splitter = LineSplitter()
                shown_partial = 0
                continue
            now = time.monotonic()
            if not data:
                if not as_json and now - last_data > idle_flush:
                    # Show an unterminated line (e.g. the REPL prompt) once it settles.
                    partial = splitter.pending()
                    if len(partial) > shown_partial:
                        out.write(escape(partial[shown_partial:]))
                        out.flush()
                        shown_partial = len(partial)
                continue
            last_data = now
            want_read: Optional[int] = None
            for line in splitter.feed(data):
                event = parse_line(line)
                if as_json:
                    if event:
                        emit_json(event.to_json())
                else:
                    out.write(escape(line[shown_partial:]) + "\n")
                    if event:
                        out.write(event.describe() + "\n")
                    out.flush()
                shown_partial = 0
                if read and event and event.event == "reboot" and event.seq not in seen:
                    want_read = event.seq
            if want_read is not None:
                ser.close()
                shown = _read_and_show(
                    port, as_json, out, err, timeout, seen, symbolize, symbolize_json
                )
                seen.add(want_read)
                if shown is not None:
                    seen.add(shown)
                try:
                    ser = opener(port, baud)
                except (serial.SerialException, OSError, ValueError) as exc:
                    err.write(f"failstop watch: cannot reopen {escape(port)}: {escape(str(exc))}\n")
                    return 3
                splitter = LineSplitter()
                shown_partial = 0
    except KeyboardInterrupt:
        if not as_json:
            err.write("\nfailstop watch: stopped\n")
        return 0
    finally:
        with contextlib.suppress(Exception):  # closing a vanished port may fail
            ser.close()


def _reopen(port: str, baud: int, opener: Opener, within: float) -> Optional[Any]:
    """Open ``port`` again as soon as it is back (a USB serial device re-enumerating)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return opener(port, baud)
        except (serial.SerialException, OSError, ValueError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)


def _read_and_show(
    port: str,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    timeout: float,
    seen: set[int],
    symbolize: Optional[Callable[[int, bool], str]] = None,
    symbolize_json: Optional[Callable[[dict[str, Any], int, int], dict[str, Any]]] = None,
) -> Optional[int]:
    """Read the board's newest record and show it unless it was shown already; its seq."""
    try:
        region = read_region(port, timeout)
    except DeviceError as exc:
        err.write(f"failstop watch: could not read the record: {exc}\n")
        return None
    rec = region.newest
    if rec is None:
        err.write("failstop watch: the board holds no valid record\n")
        return None
    if rec.seq in seen:
        return rec.seq
    if as_json:
        obj = {"event": "record", **rec.to_json()}
        if symbolize_json is not None:
            obj = symbolize_json(obj, rec.pc, rec.lr)
        out.write(json.dumps(obj, ensure_ascii=True) + "\n")
    else:
        out.write(format_record(rec, symbolize) + "\n")
    out.flush()
    return rec.seq
