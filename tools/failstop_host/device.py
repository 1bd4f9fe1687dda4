"""Read the retained region from a board through mpremote's serial transport.

The board runs a one-line snippet in its raw REPL that prints the region as hex; the host
decodes it. Every step is bounded in time: mpremote's transport waits forever in a few places
(a serial read with no timeout, a flush loop that runs while the board keeps talking), so the
transport's serial object is wrapped in a guard that enforces one deadline for the whole
operation and turns a vanished port into an error. Whatever happens, the caller gets a
:class:`DeviceError` with a clear message, never a hang.
"""

from __future__ import annotations

import binascii
import contextlib
import io
import itertools
import os
import time
from types import TracebackType
from typing import Any, Optional

import serial

from .codec import Region, decode_region
from .ports import ENV, PortError, port_name, usb_ports
from .textsafe import escape

# The oldest mpremote whose serial transport this module works with (pyproject.toml's
# floor; host_tests/test_mpremote_range.py runs `failstop log` with it and with the pin):
# 1.24 has no TransportExecError and no SerialTransport(timeout=).
MPREMOTE_FLOOR = "1.25"
DEFAULT_TIMEOUT = 10.0
DEFAULT_BAUD = 115200
# Bounds of the single blocking calls; the deadline is checked between them.
_READ_SLICE = 0.1
_WRITE_TIMEOUT = 2.0

# Each snippet first feeds the board's watchdog (harmless when none is armed): a program
# the host interrupted to read it must not be reset by its own watchdog meanwhile.
DUMP_SNIPPET = (
    "import failstop,binascii;failstop.feed();print(binascii.hexlify(failstop.dump()).decode())"
)
CLEAR_SNIPPET = "import failstop;failstop.feed();failstop.clear()"
FEED_SNIPPET = "import failstop;failstop.feed()"
# How long the board may take to stop its program and show a prompt after Ctrl-C.
_INTERRUPT_WAIT = 4.0
_INTERRUPT_QUIET = 0.3


class DeviceError(Exception):
    """The board could not be read (no port, no answer, reset, garbage, no failstop)."""


class _Timeout(Exception):
    """Raised inside mpremote's transport when the deadline has passed."""


class _PortLost(Exception):
    """Raised inside mpremote's transport when the serial port fails."""


class _GuardedSerial:
    """Wraps a pyserial port for mpremote: reads behave as blocking reads (what mpremote
    expects) but every call checks one deadline; port errors surface as _PortLost."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.deadline = time.monotonic() + DEFAULT_TIMEOUT
        self.received = 0  # bytes read since the deadline was set
        self.tail = b""  # the last of them, for error messages

    def arm(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.received = 0
        self.tail = b""

    def _check(self) -> None:
        if time.monotonic() >= self.deadline:
            raise _Timeout()

    def read(self, size: int = 1) -> bytes:
        buf = b""
        while len(buf) < size:
            self._check()
            try:
                chunk = self._inner.read(size - len(buf))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                raise _PortLost(str(exc)) from exc
            buf += chunk
        if buf:
            self.received += len(buf)
            self.tail = (self.tail + buf)[-60:]
        return buf

    def write(self, data: bytes) -> int:
        self._check()
        try:
            return int(self._inner.write(data))
        except serial.SerialTimeoutException as exc:
            raise _Timeout() from exc
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise _PortLost(str(exc)) from exc

    def inWaiting(self) -> int:  # mpremote's (pyserial 2) name
        self._check()
        try:
            return int(self._inner.in_waiting)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise _PortLost(str(exc)) from exc

    @property
    def in_waiting(self) -> int:
        return self.inWaiting()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _mpremote() -> tuple[Any, Any, Any]:
    """mpremote's serial transport, imported only by the commands that talk to a board
    (decode, watch without --read, the simulator work without it)."""
    need = f"reading a board needs mpremote {MPREMOTE_FLOOR} or newer"
    try:
        from importlib.metadata import PackageNotFoundError, version

        have = version("mpremote")
    except (ImportError, PackageNotFoundError):
        have = None  # not installed, or not by pip: the import below tells
    if have is not None and _version(have) < _version(MPREMOTE_FLOOR):
        raise DeviceError(f"{need}, not {have} (pip install 'mpremote>={MPREMOTE_FLOOR}')")
    try:
        from mpremote.transport import TransportError, TransportExecError
        from mpremote.transport_serial import SerialTransport
    except ImportError as exc:
        raise DeviceError(f"{need} (pip install 'mpremote>={MPREMOTE_FLOOR}'): {exc}") from None
    return SerialTransport, TransportError, TransportExecError


def _version(text: str) -> tuple[int, ...]:
    """The release numbers of a version string ("1.25.0", "1.30.0rc0.post101")."""
    out: list[int] = []
    for part in text.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        out.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(out)


def _describe(output: str) -> str:
    text = " ".join(output.split())
    if len(text) > 200:
        text = text[:200] + "..."
    return escape(text)


class Board:
    """A connection to a board running failstop firmware.

    ``port`` is a name as mpremote takes it (see :mod:`failstop_host.ports`; None:
    ``$FAILSTOP_PORT``, else ``auto``): ``auto`` picks the first USB serial device that can
    be opened. Every public call
    (connecting included) finishes within ``timeout`` seconds or raises DeviceError. Use as a
    context manager; the board's raw REPL is left and the port closed on exit.

    Reading is non-destructive: a running program is stopped with Ctrl-C (a
    KeyboardInterrupt, never a fault: no record), every command feeds the watchdog, and on
    close a program that was running starts again with a soft reset (``resume``, the
    default); ``resume=False`` leaves the board at its REPL. A board that was already idle
    at its REPL is left there. ``interrupted`` says whether a program was stopped,
    ``resumed`` whether it was started again.
    """

    def __init__(
        self,
        port: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        baud: int = DEFAULT_BAUD,
        resume: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.port = ""
        self.resume = resume
        self.interrupted = False
        self.resumed = False
        self._transport: Any = None
        self._guard: Optional[_GuardedSerial] = None
        self._raw = False
        try:
            named = port_name(port)
        except PortError as exc:
            raise DeviceError(str(exc)) from None
        candidates = [named] if named else usb_ports()
        if not candidates:
            raise DeviceError(f"no USB serial device found; name the port (--port, or {ENV})")
        errors = []
        for cand in candidates:
            try:
                self._open(cand, baud)
                self.port = cand
                break
            except DeviceError as exc:
                errors.append(str(exc))
        else:
            raise DeviceError("; ".join(errors))

    def _open(self, port: str, baud: int) -> None:
        SerialTransport, TransportError, _ = _mpremote()
        if not port.startswith(("socket://", "rfc2217://", "loop://")) and not os.path.exists(port):
            raise DeviceError(f"{escape(port)}: no such serial port")
        try:
            # A finite read timeout: with mpremote's default (None) a silent board blocks
            # a read forever.
            transport = SerialTransport(port, baudrate=baud, timeout=_READ_SLICE)
        except (TransportError, serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(
                f"{escape(port)}: cannot open the port (busy, unplugged or no permission): "
                f"{_describe(str(exc))}"
            ) from exc
        try:
            transport.serial.write_timeout = _WRITE_TIMEOUT
        except (serial.SerialException, OSError, ValueError) as exc:
            transport.serial.close()
            raise DeviceError(f"{escape(port)}: cannot configure the port: {exc}") from exc
        self._guard = _GuardedSerial(transport.serial)
        transport.serial = self._guard
        self._transport = transport

    def __enter__(self) -> Board:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def _run(self, what: str, code: str) -> bytes:
        """Run ``code`` in the raw REPL; return its output. Bounded by the timeout."""
        _, TransportError, TransportExecError = _mpremote()
        assert self._guard is not None and self._transport is not None
        self._guard.arm(self.timeout)
        chatter = io.StringIO()
        try:
            # mpremote prints what it received when the raw REPL cannot be entered; keep
            # that off our stdout (it may be JSON) and put it into the error instead.
            with contextlib.redirect_stdout(chatter):
                if not self._raw:
                    self._interrupt()
                    self._transport.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
                    self._raw = True
                return bytes(self._transport.exec(code))
        except _Timeout:
            guard = self._guard
            if guard.received:
                tail = guard.tail.decode("utf-8", "replace")
                raise DeviceError(
                    f"{escape(self.port)}: no usable answer from the board within "
                    f"{self.timeout:g} s while trying to {what}: it sent {guard.received} bytes "
                    f"that do not complete a MicroPython raw REPL exchange (last: "
                    f"'{_describe(tail)}'); is it a MicroPython board, or did it reset?"
                ) from None
            raise DeviceError(
                f"{escape(self.port)}: no answer from the board within {self.timeout:g} s "
                f"while trying to {what}; is it a MicroPython board, busy, or resetting?"
            ) from None
        except _PortLost as exc:
            raise DeviceError(
                f"{escape(self.port)}: the serial port failed while trying to {what} "
                f"(board reset or unplugged?): {_describe(str(exc))}"
            ) from None
        except TransportExecError as exc:
            err = exc.error_output if isinstance(exc.error_output, str) else str(exc)
            if "ImportError" in err and "failstop" in err:
                raise DeviceError(
                    f"{escape(self.port)}: the board's firmware has no failstop module"
                ) from None
            raise DeviceError(
                f"{escape(self.port)}: the board raised an error while trying to {what}: "
                f"{_describe(err)}"
            ) from None
        except TransportError as exc:
            seen = chatter.getvalue() or str(exc)
            raise DeviceError(
                f"{escape(self.port)}: the board did not answer like a MicroPython raw REPL "
                f"while trying to {what}: {_describe(seen)}"
            ) from None
        except Exception as exc:  # mpremote parsing odd answers (struct, decode errors)
            raise DeviceError(
                f"{escape(self.port)}: unexpected answer from the board while trying to "
                f"{what}: {type(exc).__name__}: {_describe(str(exc))}"
            ) from None

    def _interrupt(self) -> None:
        """Ctrl-C until the board shows a prompt (a Ctrl-C that arrives while the board is
        still booting, between its scripts, is lost, as on any board); a traceback ending in
        KeyboardInterrupt means a program was running (it is resumed on close)."""
        assert self._guard is not None
        guard = self._guard
        seen = b""
        start = time.monotonic()
        while time.monotonic() - start < _INTERRUPT_WAIT:
            guard.write(b"\r\x03")
            sent = last = time.monotonic()
            while True:
                now = time.monotonic()
                if now - start > _INTERRUPT_WAIT:
                    break
                if now - last > _INTERRUPT_QUIET or now - sent > 1.0:
                    break
                n = guard.in_waiting
                if n:
                    seen = (seen + guard.read(n))[-4096:]
                    last = time.monotonic()
                else:
                    time.sleep(0.02)
            if not seen or seen.endswith((b">>> ", b">")):
                break  # at a prompt; or no answer at all: mpremote's own steps will tell
        self.interrupted = b"KeyboardInterrupt" in seen

    def dump(self) -> bytes:
        """The raw bytes of the board's retained region (``failstop.dump()``)."""
        out = self._run("read the fault region", DUMP_SNIPPET)
        lines = [ln.strip() for ln in out.decode("ascii", "replace").splitlines() if ln.strip()]
        text = lines[-1] if lines else ""
        try:
            if not text or len(text) % 2:
                raise ValueError("odd length")
            return binascii.unhexlify(text)
        except (ValueError, binascii.Error):
            raise DeviceError(
                f"{escape(self.port)}: the board's answer is not a hex dump of the region "
                f"(reset during the read?): {_describe(out.decode('utf-8', 'replace'))}"
            ) from None

    def read_region(self) -> Region:
        """Read and decode the region. DeviceError when the bytes are not a region."""
        data = self.dump()
        try:
            return decode_region(data)
        except ValueError as exc:
            raise DeviceError(f"{escape(self.port)}: the board sent a bad region: {exc}") from None

    def clear(self) -> None:
        """Erase all records on the board (``failstop.clear()``)."""
        self._run("clear the fault records", CLEAR_SNIPPET)

    def feed(self) -> None:
        """Feed the board's watchdog (``failstop.feed()``)."""
        self._run("feed the watchdog", FEED_SNIPPET)

    def close(self) -> None:
        """Leave the raw REPL (best effort, bounded), start an interrupted program again
        with a soft reset (``resume``), and close the port."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        guard = self._guard
        try:
            if self._raw and guard is not None:
                guard.arm(1.0)
                transport.exit_raw_repl()
                if self.resume and self.interrupted:
                    # Ctrl-D at the friendly REPL: a soft reset runs boot.py and main.py.
                    guard.arm(3.0)
                    transport.read_until(1, b">>> ", timeout=2)
                    guard.write(b"\x04")
                    data = transport.read_until(1, b"soft reboot", timeout=2)
                    self.resumed = data.endswith(b"soft reboot")
        except (_Timeout, _PortLost):
            pass
        finally:
            self._raw = False
            if guard is not None:
                transport.serial = guard._inner
            with contextlib.suppress(Exception):
                transport.close()


def read_region(
    port: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    clear: bool = False,
    resume: bool = True,
) -> Region:
    """Read and decode a board's region; with ``clear``, erase it after a good read. A
    running program is interrupted and, with ``resume``, started again (soft reset)."""
    with Board(port, timeout, resume=resume) as board:
        region = board.read_region()
        if clear:
            board.clear()
        return region
