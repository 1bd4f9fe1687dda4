"""Emulated boards: what they share (``ConsoleBoard``) and the MPS2_AN385 firmware in QEMU
(``QemuBoard``), for tests, demos and users without hardware. The Pico is in ``pico``.

The board behaves like one on a desk: its UART is a pseudo-terminal that real mpremote and
``failstop log`` open (the same path across power cycles), its flash is a file on the host
(kept across resets and power cycles), its RAM starts zeroed at power-on and survives the
board's own resets (watchdog, SYSRESETREQ), and QEMU keeps running across those resets.

QEMU talks to this runner, not to the terminal: its console is a pipe that the runner copies
to the pseudo-terminal and to a log (so nothing the board prints is lost while no client is
connected), and QMP reports every guest reset and lets the runner read RAM the way a debug
probe would, or turn the next reset into a pause (the boot cap of a test).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
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

FLASH_SIZE = 16 * 1024 * 1024  # AN385's PSRAM at 0x21000000: the board's "flash"
RETAINED_SECTION = ".failstop_retained"
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


class _Qmp(JsonLines):
    """QEMU's QMP: {"execute": ...} commands, {"return": ...} or {"error": ...} answers."""

    def __init__(
        self,
        path: Path,
        timeout: float,
        alive: Callable[[], bool] = lambda: True,
        on_event: Optional[Callable[[dict[str, Any]], None]] = None,
    ) -> None:
        super().__init__(path, timeout, "QMP", alive=alive, greeting=True, on_event=on_event)
        self.command("qmp_capabilities")

    def command(self, name: str, timeout: float = 10.0, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        reply = self.request(msg, name, timeout)
        if "error" in reply:
            raise EmulatorError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")


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


class QemuBoard(ConsoleBoard):
    """The MPS2_AN385 firmware in ``qemu-system-arm``.

    ``start()`` powers the board on, ``power_cycle()`` turns it off and on again (RAM lost,
    flash kept), ``stop()`` turns it off. ``port`` is the pseudo-terminal of its UART.
    Everything the board printed since power-on is in ``output()``; ``resets`` counts the
    board's own resets since power-on.
    """

    machine = "mps2-an385"

    def __init__(
        self,
        firmware: Path,
        flash: Optional[Path] = None,
        echo: Optional[BinaryIO] = None,
        qemu: str = "qemu-system-arm",
    ) -> None:
        self.firmware = Path(firmware).resolve()
        if not self.firmware.exists():
            raise EmulatorError(f"firmware not found: {self.firmware}")
        self.retained_addr, self.retained_size = elf_section(self.firmware, RETAINED_SECTION)
        self.qemu = shutil.which(qemu)
        if self.qemu is None:
            raise EmulatorError(f"{qemu} not found (Debian: apt-get install qemu-system-arm)")
        super().__init__(flash, echo, "failstop-qemu-")
        self._qmp: Optional[_Qmp] = None
        self._max_boots = 0
        self._stderr = bytearray()
        self._stderr_thread: Optional[threading.Thread] = None

    # --- power ------------------------------------------------------------------------

    def start(self, max_boots: int = 0, timeout: float = 10.0) -> None:
        """Power on. With ``max_boots`` > 0 the board's reset after that many boots pauses
        it instead (``capped`` then says so), so a boot loop cannot run forever."""
        if self._proc is not None:
            raise EmulatorError("the board is already on")
        if not self.flash.exists() or self.flash.stat().st_size != FLASH_SIZE:
            with open(self.flash, "wb") as f:
                f.truncate(FLASH_SIZE)  # erased flash: the firmware formats it
        qmp_path = Path(self._tmp.name) / "qmp.sock"
        if qmp_path.exists():
            qmp_path.unlink()
        cmd = [
            str(self.qemu),
            "-machine", f"{self.machine},memory-backend=flash",
            "-m", f"{FLASH_SIZE // (1024 * 1024)}M",
            "-object",
            f"memory-backend-file,id=flash,size={FLASH_SIZE},mem-path={self.flash},share=on",
            "-display", "none",
            "-monitor", "none",
            "-semihosting",
            "-chardev", "stdio,id=uart0,signal=off",
            "-serial", "chardev:uart0",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-S",
            "-kernel", str(self.firmware),
        ]  # fmt: skip
        self._clear_output()
        self._proc = spawn(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        proc = self._proc
        self._stderr = bytearray()
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(proc,), daemon=True, name="qemu-stderr"
        )
        self._stderr_thread.start()
        try:
            self._qmp = _Qmp(
                qmp_path, timeout, alive=lambda: proc.poll() is None, on_event=self._on_qmp_event
            )
        except EmulatorError:
            err = self._stop_process()
            raise EmulatorError(f"QEMU did not start: {err.strip() or 'no QMP socket'}") from None
        self._start_pump()
        self._max_boots = max_boots
        self._arm_cap(wait=True)
        self._command("cont")

    def stop(self) -> None:
        """Power off (QEMU ends; RAM is lost, the flash file stays)."""
        self._stop_process()

    def pause(self) -> None:
        """Stop the CPU (as a debugger halts it); the board stays powered."""
        self._command("stop")

    def resume(self) -> None:
        self._command("cont")

    def _command(self, name: str, **arguments: Any) -> Any:
        """A QMP command, and its answer; never from the console pump."""
        self._not_from_pump(f"QMP {name}")
        if self._qmp is None:
            raise EmulatorError("the board is off")
        return self._qmp.command(name, **arguments)

    def _stop_process(self) -> str:
        proc, self._proc = self._proc, None
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(5)
            self._stderr_thread = None
        self._stop_pump_thread()
        return self.stderr()

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        """QEMU's own messages, read as they come (a full pipe would stop QEMU), the
        newest STDERR_LIMIT bytes kept."""
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            self._stderr += data
            if len(self._stderr) > STDERR_LIMIT:
                del self._stderr[: len(self._stderr) - STDERR_LIMIT]

    def stderr(self) -> str:
        """What QEMU itself printed (warnings, errors) in this power-on."""
        return bytes(self._stderr).decode(errors="replace")

    # --- state ------------------------------------------------------------------------

    @property
    def resets(self) -> int:
        """The board's own resets since power-on (watchdog, SYSRESETREQ)."""
        return 0 if self._qmp is None else len(self._qmp.named("RESET"))

    def events(self, name: str) -> list[dict[str, Any]]:
        """QMP events of this power-on, e.g. "WATCHDOG" (the hardware watchdog reset the
        board) or "RESET"."""
        if self._qmp is None:
            return []
        return self._qmp.named(name)

    def watchdog_resets(self) -> int:
        """QEMU's WATCHDOG events (QMP sends at most one a second: a lower bound)."""
        return len(self.events("WATCHDOG"))

    @property
    def capped(self) -> bool:
        """The boot cap turned a reset into a pause."""
        return self._qmp is not None and bool(self._qmp.named("SHUTDOWN"))

    def _arm_cap(self, wait: bool) -> None:
        # A reset that would start boot max_boots + 1 pauses the board instead.
        qmp = self._qmp
        if qmp is not None and self._max_boots > 0 and self.resets + 1 >= self._max_boots:
            msg = {
                "execute": "set-action",
                "arguments": {"reboot": "shutdown", "shutdown": "pause"},
            }
            if wait:
                self._command("set-action", reboot="shutdown", shutdown="pause")
            else:
                with contextlib.suppress(EmulatorError):
                    qmp.send(msg)

    def _on_qmp_event(self, event: dict[str, Any]) -> None:
        # In QMP's reader thread, as the event arrives: the command goes out without
        # waiting for its answer (the console pump sends no commands).
        if event.get("event") == "RESET":
            self._arm_cap(wait=False)

    def read_memory(self, addr: int, size: int) -> bytes:
        """Read the board's memory through QEMU, as a debug probe would (no firmware code)."""
        fd, path = tempfile.mkstemp(dir=self._tmp.name, suffix=".mem")
        os.close(fd)
        try:
            self._command("pmemsave", val=addr, size=size, filename=path)
            return Path(path).read_bytes()
        finally:
            os.unlink(path)

    def _resets_changed(self) -> None:
        pass  # the boot cap is armed from QMP's RESET event (_on_qmp_event)
