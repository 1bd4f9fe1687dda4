"""``failstop watch PORT``: a serial monitor that recognises failstop's lines.

The firmware prints, just before a fail-stop reset::

    failstop: <KIND> -> <ACTION>

and, at the first boot after a fault, exactly one banner line::

    failstop: reboot after <KIND> (seq <N>, boot <B>)[ at <file>:<line> in <func>][: <message>]

A line starting with ``MicroPython `` is the interpreter's banner: the board (re)booted.
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
_REBOOT = re.compile(
    r"failstop: reboot after (?P<kind>[A-Z][A-Z0-9_]*) "
    r"\(seq (?P<seq>\d+), boot (?P<boot>\d+)\)"
    r"(?: at (?P<file>.*?):(?P<line>\d+) in (?P<function>[^:\s]*))?"
    r"(?:: (?P<message>.*))?\Z",
    re.DOTALL,
)
_BOOT_PREFIX = "MicroPython "


@dataclass(frozen=True)
class Event:
    """Something the monitor recognised in the board's output.

    ``event`` is ``"fault"`` (the firmware is about to act on a fault), ``"reboot"`` (the
    first boot after a fault) or ``"boot"`` (MicroPython's banner).
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

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.event}
        if self.event == "fault":
            d.update(kind=self.kind, action=self.action)
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
    if text.startswith(_BOOT_PREFIX):
        return Event("boot", text)
    m = _REBOOT.match(text)
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
    m = _FAULT.match(text)
    if m:
        return Event("fault", text, kind=m["kind"], action=m["action"])
    return None


class LineSplitter:
    """Collects serial bytes into lines (``\\n`` terminated, ``\\r`` dropped at the end)."""

    def __init__(self, limit: int = 4096) -> None:
        self._buf = b""
        self._limit = limit

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > self._limit:  # a runaway line: hand it on in pieces
            lines.append(self._buf)
            self._buf = b""
        return [ln.rstrip(b"\r").decode("utf-8", "replace") for ln in lines]

    def pending(self) -> str:
        return self._buf.rstrip(b"\r").decode("utf-8", "replace")

    def take_pending(self) -> str:
        text = self.pending()
        self._buf = b""
        return text


Opener = Callable[[str, int], Any]


def open_serial(port: str, baud: int) -> Any:
    """The monitor's port: pyserial, reads bounded to 0.1 s so Ctrl-C is seen promptly."""
    return serial.Serial(port, baud, timeout=0.1)


def watch(
    port: str,
    baud: int = 115200,
    as_json: bool = False,
    read: bool = False,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
    timeout: float = DEFAULT_TIMEOUT,
    opener: Opener = open_serial,
    idle_flush: float = 0.3,
    reconnect: float = 0.0,
) -> int:
    """Monitor ``port`` until Ctrl-C (exit 0) or until the port fails or vanishes (exit 1).

    Board output is passed through line by line, escaped; recognised lines also print an
    event. With ``as_json`` only events are printed, one JSON object per line. With ``read``,
    after a reboot-after-fault banner the record is read through the REPL (this interrupts
    the program the board just started) and printed. With ``reconnect`` > 0, a port that
    vanishes (a USB board's serial goes away at every reset, e.g. a Pico's) is reopened as
    soon as it is back, for up to ``reconnect`` seconds, and watching goes on.
    """
    out = out or sys.stdout
    err = err or sys.stderr

    def emit_json(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, ensure_ascii=True) + "\n")
        out.flush()

    try:
        ser = opener(port, baud)
    except (serial.SerialException, OSError, ValueError) as exc:
        err.write(f"failstop watch: cannot open {escape(port)}: {escape(str(exc))}\n")
        return 1
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
                    return 1
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
                    return 1
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
            want_read = False
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
                want_read = want_read or bool(read and event and event.event == "reboot")
            if want_read:
                ser.close()
                _read_and_show(port, as_json, out, err, timeout)
                try:
                    ser = opener(port, baud)
                except (serial.SerialException, OSError, ValueError) as exc:
                    err.write(f"failstop watch: cannot reopen {escape(port)}: {escape(str(exc))}\n")
                    return 1
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


def _read_and_show(port: str, as_json: bool, out: TextIO, err: TextIO, timeout: float) -> None:
    try:
        region = read_region(port, timeout)
    except DeviceError as exc:
        err.write(f"failstop watch: could not read the record: {exc}\n")
        return
    rec = region.newest
    if rec is None:
        err.write("failstop watch: the board holds no valid record\n")
    elif as_json:
        out.write(json.dumps({"event": "record", **rec.to_json()}, ensure_ascii=True) + "\n")
    else:
        out.write(format_record(rec) + "\n")
    out.flush()
