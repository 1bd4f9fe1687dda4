"""What every emulated board shares (``ConsoleBoard``): the emulator process and its
console on a pseudo-terminal, the board's output, its flash file, power cycles, and the
JSON-lines control channels (QEMU's QMP, the rp2040js runner's socket). The boards are in
``emulator`` (MPS2_AN385 in QEMU) and ``pico`` (the Raspberry Pi Pico in rp2040js).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, TypeVar

PROMPT = b'Type "help()" for more information.\r\n>>> '
PTY_BACKLOG = 16 * 1024  # board output kept for a slow or absent terminal client


_B = TypeVar("_B", bound="ConsoleBoard")
_PR_SET_PDEATHSIG = 1
OUTPUT_LIMIT = 32 * 1024 * 1024  # board output kept in output(); the oldest goes first
STDERR_LIMIT = 64 * 1024  # the emulator's own messages kept (the newest)

# Started in a fresh interpreter (no threads, nothing imported but these): ask Linux for
# SIGTERM when the parent ends, check that it has not ended already, then become the
# emulator. No preexec_fn: code between fork and exec in a process with live threads may
# deadlock (an import takes the import lock another thread may hold).
_EXEC_WITH_PDEATHSIG = (
    "import ctypes,os,signal,sys\n"
    "ppid=int(sys.argv[1])\n"
    "try: ctypes.CDLL(None,use_errno=True).prctl(1,signal.SIGTERM)\n"
    "except Exception: pass\n"
    "if os.getppid()!=ppid: sys.exit(0)\n"
    "os.execvp(sys.argv[2],sys.argv[2:])\n"
)


class _Spawner:
    """Starts emulator processes from one thread that lives as long as this process.
    Linux sends the parent-death signal when the *thread* that forked the child ends: an
    emulator started by a worker thread (a test's helper, a thread pool) must outlive that
    thread, and end with the process that owns it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: Any = None

    def _serve(self, jobs: Any) -> None:
        while True:
            args, kwargs, done = jobs.get()
            try:
                done.append(subprocess.Popen(args, **kwargs))
            except BaseException as exc:  # handed to the caller
                done.append(exc)
            done_event = done[0]
            done_event.set()

    def popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        import queue
        import sys

        with self._lock:
            if self._jobs is None:
                self._jobs = queue.Queue()
                threading.Thread(
                    target=self._serve, args=(self._jobs,), daemon=True, name="failstop-spawner"
                ).start()
        done: list[Any] = [threading.Event()]
        args = [sys.executable, "-c", _EXEC_WITH_PDEATHSIG, str(os.getpid()), *cmd]
        self._jobs.put((args, kwargs, done))
        done[0].wait()
        result = done[1]
        if isinstance(result, BaseException):
            raise result
        proc: subprocess.Popen[bytes] = result
        return proc


_SPAWNER = _Spawner()


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start an emulator process that ends with this process (SIGTERM when it ends, however
    it ends) but not with the thread that asked for it."""
    return _SPAWNER.popen(cmd, **kwargs)


class EmulatorError(Exception):
    """The emulator could not be started or did not answer."""


def elf_section(path: Path, name: str) -> tuple[int, int]:
    """Address and size of section ``name`` in a 32-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise EmulatorError(f"{path}: not a 32-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)

    def section(i: int) -> tuple[int, int, int, int]:
        sh_name, _t, _f, addr, off, size = struct.unpack_from(
            "<IIIIII", data, shoff + i * shentsize
        )
        return sh_name, addr, off, size

    _, _, str_off, _ = section(shstrndx)
    for i in range(shnum):
        sh_name, addr, _off, size = section(i)
        end = data.index(b"\0", str_off + sh_name)
        if data[str_off + sh_name : end].decode("ascii", "replace") == name:
            return addr, size
    raise EmulatorError(f"{path}: no section {name} (not a failstop firmware?)")


def elf_symbol(path: Path, name: str) -> tuple[int, int]:
    """Address and size of symbol ``name`` (local symbols too) in a 32-bit little-endian
    ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise EmulatorError(f"{path}: not a 32-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    want = name.encode()
    for _n, sh_type, _f, _a, off, size, link, _i, _al, entsize in headers:
        if sh_type != 2 or entsize != 16:  # SHT_SYMTAB
            continue
        str_off = headers[link][4]
        for p in range(off, off + size, 16):
            st_name, value, st_size = struct.unpack_from("<III", data, p)
            end = data.index(b"\0", str_off + st_name)
            if data[str_off + st_name : end] == want:
                return value, st_size
    raise EmulatorError(f"{path}: no symbol {name} (not a failstop firmware, or stripped?)")


class JsonLines:
    """A client of a JSON-lines Unix socket, as QEMU's QMP and the Pico runner's control
    socket both are: a command, then its answer; objects with an "event" key are events,
    collected by a reader thread (and handed to ``on_event``, in that thread: it may
    ``send`` but not ``request``, which would wait for its own thread). Every command
    carries an "id" that its answer echoes, so an answer is never taken for another's,
    whichever thread asked and in whatever order the answers come; ``send`` goes without
    waiting. Commands go out under one lock, held only while a line is written (never
    while an answer is awaited), from any thread but the reader.

    ``greeting``: the server speaks first (QMP's greeting, the runner's "boots" event); it
    must come within ``timeout`` (an event greeting is kept as an event). ``alive`` says
    whether the emulator process still runs: a dead one fails a connection or a request at
    once instead of at its timeout."""

    def __init__(
        self,
        path: Path,
        timeout: float,
        what: str,
        alive: Callable[[], bool] = lambda: True,
        greeting: bool = False,
        on_event: Optional[Callable[[dict[str, Any]], None]] = None,
    ) -> None:
        self.what = what
        self.alive = alive
        self.on_event = on_event
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError as exc:
                self.sock.close()
                if not alive():
                    raise EmulatorError(f"{what}: the emulator ended early") from exc
                if time.monotonic() > deadline:
                    raise EmulatorError(f"{what}: the socket did not open: {exc}") from exc
                time.sleep(0.02)
        self.file = self.sock.makefile("rb")
        self.cond = threading.Condition()
        self.send_lock = threading.Lock()
        self.by_id: dict[int, dict[str, Any]] = {}
        self.discard: set[int] = set()
        self.next_id = 1
        self.events: list[dict[str, Any]] = []
        self.closed = False
        if greeting:
            # A socket that accepts but never greets must not hang us.
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                hello = self.file.readline()
            except OSError:
                hello = b""
            if not hello:
                self.close()
                if not alive():
                    raise EmulatorError(f"{what}: the emulator ended early")
                raise EmulatorError(f"{what}: no greeting within {timeout} s")
            self.sock.settimeout(None)
            try:
                msg = json.loads(hello)
            except ValueError:
                self.close()
                raise EmulatorError(f"{what}: not a JSON greeting: {hello[:80]!r}") from None
            if isinstance(msg, dict) and "event" in msg:
                self.events.append(msg)
        self.thread = threading.Thread(target=self._read, daemon=True, name=what)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.file:
                msg = json.loads(line)
                if "event" in msg:
                    with self.cond:
                        self.events.append(msg)
                        self.cond.notify_all()
                    if self.on_event is not None:
                        self.on_event(msg)
                    continue
                with self.cond:
                    rid = msg.get("id")
                    if isinstance(rid, int):
                        if rid in self.discard:
                            self.discard.discard(rid)
                        else:
                            self.by_id[rid] = msg
                    # An answer without an id (to a line the server could not parse)
                    # belongs to no request: the request's timeout reports it.
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _send(self, msg: dict[str, Any], wait: bool) -> int:
        with self.send_lock:
            rid = self.next_id
            self.next_id += 1
            if not wait:
                with self.cond:
                    self.discard.add(rid)
            try:
                self.sock.sendall(json.dumps({**msg, "id": rid}).encode() + b"\n")
            except OSError as exc:
                raise EmulatorError(f"{self.what}: the emulator went away ({exc})") from None
            return rid

    def send(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` and do not wait for its answer (from any thread, the reader's own
        included)."""
        self._send(msg, wait=False)

    def request(self, msg: dict[str, Any], name: str, timeout: float) -> dict[str, Any]:
        """Send ``msg``, return its answer (EmulatorError if none comes within ``timeout``,
        at once if the emulator ends)."""
        if threading.current_thread() is self.thread:
            raise EmulatorError(f"{self.what} {name}: the reader thread cannot wait for an answer")
        rid = self._send(msg, wait=True)
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.by_id and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.discard.add(rid)
                    raise EmulatorError(f"{self.what} {name}: no answer within {timeout} s")
                if not self.alive():
                    self.discard.add(rid)
                    raise EmulatorError(f"{self.what} {name}: the emulator ended")
                self.cond.wait(min(left, 0.1))
            if rid not in self.by_id:
                raise EmulatorError(f"{self.what} {name}: the emulator went away")
            return self.by_id.pop(rid)

    def named(self, event: str) -> list[dict[str, Any]]:
        """The events called ``event`` so far."""
        with self.cond:
            return [e for e in self.events if e["event"] == event]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class ConsoleBoard(ABC):
    """What every emulated board shares: an emulator process whose stdin/stdout is the
    board's serial console, copied to a pseudo-terminal of the runner's own (``port``: one
    path for the board's whole life; the runner keeps the slave side open, so a client may
    come and go) and to ``output()``, everything the board printed since power-on. The
    flash is a file on the host. Subclasses start and stop the process (``_proc``) and
    count the board's own resets (``resets``)."""

    def __init__(self, flash: Optional[Path], echo: Optional[BinaryIO], prefix: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.flash = Path(flash) if flash is not None else Path(self._tmp.name) / "flash.img"
        self.echo = echo
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._out = bytearray()
        self._base = 0  # output offset of self._out[0] (the oldest output beyond the limit goes)
        self._out_lock = threading.Condition()
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._pump: Optional[threading.Thread] = None
        self._stop_pump = threading.Event()
        self._idle = 0  # pump rounds that found the console pipe empty
        self._stamps: list[tuple[int, float]] = []  # (output length, monotonic time) per chunk

    # --- what each board provides ------------------------------------------------------

    retained_addr: int  # the failstop region in the board's memory
    retained_size: int

    @abstractmethod
    def start(self, max_boots: int = 0, timeout: float = 10.0) -> None:
        """Power on; with ``max_boots`` > 0 a reset after that many boots stops the board."""

    @abstractmethod
    def stop(self) -> None:
        """Power off (RAM lost, the flash file stays)."""

    def power_cycle(self, max_boots: int = 0) -> None:
        self.stop()
        self.start(max_boots=max_boots)

    @property
    @abstractmethod
    def resets(self) -> int:
        """The board's own resets since power-on."""

    @property
    @abstractmethod
    def capped(self) -> bool:
        """The boot cap stopped the board at a reset."""

    @abstractmethod
    def read_memory(self, addr: int, size: int) -> bytes:
        """Read the board's memory, as a debug probe would (no firmware code runs)."""

    def retained(self) -> bytes:
        """The failstop region, read from RAM."""
        return self.read_memory(self.retained_addr, self.retained_size)

    @abstractmethod
    def pause(self) -> None:
        """Stop the CPU (as a debugger halts it); the board stays powered."""

    @abstractmethod
    def resume(self) -> None:
        """Let a paused CPU run on."""

    @abstractmethod
    def watchdog_resets(self) -> int:
        """The board's resets through its hardware watchdog since power-on."""

    def _resets_changed(self) -> None:  # noqa: B027 (a hook: a board may need nothing)
        """Called by the console pump when ``resets`` changed. It must not command the
        emulator (see ``_not_from_pump``)."""

    def _not_from_pump(self, what: str) -> None:
        """Refuse a command to the emulator from the console pump: an emulator that waits
        to write console output (a full pipe; the Pico runner is one Node.js thread) answers
        nothing until the pump reads, so a pump waiting for an answer would wait forever."""
        if self._pump is not None and threading.current_thread() is self._pump:
            raise EmulatorError(f"{what}: the console pump sends no commands to the emulator")

    def close(self) -> None:
        self.stop()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._tmp.cleanup()

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _clear_output(self) -> None:
        with self._out_lock:
            self._out.clear()
            self._base = 0
            self._stamps.clear()

    def _start_pump(self) -> None:
        self._stop_pump.clear()
        self._pump = threading.Thread(target=self._run_pump, daemon=True, name="console")
        self._pump.start()

    def _stop_pump_thread(self) -> None:
        self._stop_pump.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None

    # --- console ----------------------------------------------------------------------

    def output(self, start: int = 0) -> bytes:
        """What the board printed since power-on, from offset ``start``. At most
        OUTPUT_LIMIT bytes are kept: beyond that the oldest output is dropped (offsets stay
        those of the whole output; ``output_end()`` is where the next byte goes)."""
        with self._out_lock:
            return bytes(self._out[max(0, start - self._base) :])

    def output_end(self) -> int:
        """The offset of the next byte the board prints."""
        with self._out_lock:
            return self._base + len(self._out)

    def wait_for(self, pattern: bytes, timeout: float, start: int = 0) -> Optional[re.Match[bytes]]:
        """Wait until ``pattern`` (a regex) appears in the output after ``start``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._out_lock:
            while True:
                m = rx.search(self._out, max(0, start - self._base))
                if m is not None:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return None
                self._out_lock.wait(min(left, 0.1))

    def arrival(self, offset: int) -> Optional[float]:
        """When (time.monotonic()) the output byte at ``offset`` arrived from the board."""
        with self._out_lock:
            for end, t in self._stamps:
                if end > offset:
                    return t
        return None

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until everything the emulator has written to the console is in ``output()``:
        its events (QMP, the Pico runner's control socket) and console bytes travel on
        different channels, so after an event (a reset, the boot cap's pause) the bytes
        printed before it may still be in transit."""
        with self._out_lock:
            target = self._idle + 2
            self._out_lock.wait_for(lambda: self._idle >= target or self._pump is None, timeout)

    def write(self, data: bytes) -> None:
        """Type into the board's console (as a client of the pseudo-terminal would)."""
        if self._proc is None or self._proc.stdin is None:
            raise EmulatorError("the board is off")
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def _run_pump(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stdin is not None
        uart_out, uart_in = proc.stdout.fileno(), proc.stdin.fileno()
        resets_seen = 0
        pending = bytearray()  # board output the terminal has not taken yet
        while not self._stop_pump.is_set():
            wlist = [self._master] if pending else []
            ready, writable, _ = select.select([uart_out, self._master], wlist, [], 0.05)
            if uart_out not in ready:
                with self._out_lock:
                    self._idle += 1
                    self._out_lock.notify_all()
            else:
                try:
                    data = os.read(uart_out, 4096)
                except OSError:
                    data = b""
                if not data:
                    with self._out_lock:
                        self._out_lock.notify_all()
                    break
                with self._out_lock:
                    self._out += data
                    self._stamps.append((self._base + len(self._out), time.monotonic()))
                    if len(self._out) > OUTPUT_LIMIT:
                        drop = len(self._out) - OUTPUT_LIMIT // 2
                        del self._out[:drop]
                        self._base += drop
                        self._stamps = [st for st in self._stamps if st[0] > self._base]
                    self._out_lock.notify_all()
                if self.echo is not None:
                    self.echo.write(data)
                    self.echo.flush()
                pending += data
                if len(pending) > PTY_BACKLOG:
                    # Nobody reads the terminal: like a UART with nobody listening, the
                    # oldest output is lost (the log above keeps it all).
                    del pending[: len(pending) - PTY_BACKLOG]
            if pending and (writable or uart_out in ready):
                # A slow client: what does not fit now waits, in order.
                with contextlib.suppress(BlockingIOError):
                    del pending[: os.write(self._master, pending)]
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    data = b""
                if data:
                    try:
                        os.write(uart_in, data)
                    except OSError:
                        break
            if self.resets != resets_seen:
                resets_seen = self.resets
                try:
                    self._resets_changed()
                except EmulatorError:
                    break
