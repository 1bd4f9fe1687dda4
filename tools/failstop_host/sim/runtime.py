"""One boot of the simulated board, inside its own (forked) process.

The board is a virtual clock (clock.py), a heap with its allocation points (heap.py)
and a ``sys.settrace`` tracer on the program's own frames (tracer.py); the runtime puts
them together and is the board's policy and fault path. The tracer sees every
instruction before it runs, every call before the callee's first instruction, and
every exception where it is raised, before any ``except`` clause of the program runs.
A fail-stop fault writes the record into the retained region, prints the firmware's
line, and ends the process with ``os._exit``: no handler, ``finally`` or ``__exit__``
of the program runs afterwards, as on the board. The host side (host.py) then "resets"
the board by starting the next boot.
"""

from __future__ import annotations

import contextlib
import dis
import json
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any, Callable, NoReturn, Optional, TextIO

from .. import codec
from ..codec import Action, Kind
from . import mpstyle as mp
from .clock import Clock
from .config import BootPlan
from .heap import Heap
from .procs import die_with_parent
from .retained import RC_WATCHDOG, Retained, clean_text
from .tracer import Tracer, stack_used

_RAISE_OPS = frozenset(
    op for op, name in enumerate(dis.opname) if name in ("RAISE_VARARGS", "RERAISE")
)

_traced_memory = tracemalloc.get_traced_memory


class Runtime:
    """The board during one boot: its clock, heap and tracer, its policies, the fault
    path, and the OOM sweep's runs."""

    # An OOM sweep takes a fail-stop OOM's run in the main line's process (False: forks
    # it, as under RAISE; firmware/bench_sim.py measures both, docs/bench-sim.md).
    sweep_in_process = True

    def __init__(self, plan: BootPlan, retained: Retained, status_fd: int) -> None:
        self.plan = plan
        self.res = plan.resources
        self.retained = retained
        self.status_fd = status_fd
        self.out: TextIO = sys.stdout  # the console (child.boot sets it)
        inj = plan.inject
        self.early_warning = inj.early_warning if inj else True
        self.device_files: set[str] = set(plan.programs)  # the program's (the tracer's too)
        self.clock = Clock(
            op_ns=self.res.op_ns,
            uptime_start_ms=self.res.uptime_start_ms,
            hang_at=inj.hang_at if inj and inj.hang_at else 0,
            max_ms=plan.max_ms,
            on_hang=self._hang,
            on_watchdog=self.watchdog_fault,
            on_time_limit=self._time_limit,
        )
        self.heap = Heap(
            size=self.res.heap_size,
            oom_at=inj.oom_at if inj and isinstance(inj.oom_at, int) else 0,
            oom_loc=inj.oom_location if inj else None,
            oom=self.oom,
            caller=self.caller,
        )
        self.tracer = Tracer(
            self.device_files,
            stack_limit=inj.stack_at if inj and inj.stack_at else self.res.stack_limit,
            clock=self.clock,
            heap=self.heap,
            on_stack=self.on_stack,
            on_exception=self.on_exception,
        )
        # OOM sweep: the main line carries out an injected run at every allocation point.
        self.sweep_dir = plan.sweep_dir
        if self.sweep_dir is not None:
            self.heap.sweep = self.sweep_point
        self.console_pos = -1
        self.in_process_run = False
        # Policy and fault state (RAM: lost at every reset).
        self.policies: dict[int, int] = {}
        self.in_fault = 0
        self.fault_owner = 0  # the thread that holds the fault path (failstop_hal_claim)
        self.claim_lock = threading.Lock()
        self.fault_slot: Optional[int] = None
        self.converting = False
        self.recoverable: dict[int, int] = {Kind.OOM: 0, Kind.STACK: 0}  # with-block depth
        self.raise_recorded = False  # one RAISE record per boot
        self.keeper_active = False  # records get IN_KEEPER
        self.inject_addr = 0  # _inject("DOUBLE", addr): the next fault path stores there
        self.inject_mark = False  # _inject("MARK"): the next mark() is interrupted half way
        self.main_active = False

    # --- console and the end of a boot ------------------------------------------------

    def write(self, text: str) -> None:
        self.out.write(text)

    def finish(
        self, end: str, code: Optional[int] = 0, kind: int = 0, hw_next: int = 0
    ) -> NoReturn:
        """End this boot: report to the host side and end the process at once.
        ``hw_next``: the hardware reset cause the next boot sees (0: none, the cause is
        what the firmware left in the region)."""
        if not self.in_process_run:
            self.tracer.stop()
        with contextlib.suppress(Exception):
            self.out.flush()
        status = {
            "end": end,
            "code": code,
            "kind": kind,
            "steps": self.clock.steps,
            "allocs": self.heap.allocs,
            "max_depth": self.tracer.max_depth,
            "uptime_ms": self.clock.uptime_ms(),
            "console_pos": self.console_pos,
            "hw_next": hw_next,
        }
        os.write(self.status_fd, json.dumps(status).encode() + b"\n")
        if self.in_process_run:
            raise _SweepRunDone
        os._exit(0)

    def _hang(self) -> NoReturn:
        self.finish("hang", None)

    def _time_limit(self) -> NoReturn:
        self.finish("time_limit", None)

    # --- the record ------------------------------------------------------------------

    def caller(self) -> Optional[FrameType]:
        """The program's frame that called into the simulator."""
        return self.tracer.device_frame(sys._getframe(1))

    def policy(self, kind: int) -> int:
        return self.policies.get(kind, Action.REBOOT)

    def stock(self, kind: int) -> bool:
        """OOM/STACK behave as stock MicroPython, with no record: panic() converting its
        reason, or inside ``with failstop.recoverable(kind)``."""
        return kind in (Kind.OOM, Kind.STACK) and (self.converting or self.recoverable[kind] > 0)

    def record(
        self,
        kind: int,
        *,
        frame: Optional[FrameType] = None,
        exc: Optional[BaseException] = None,
        line: Optional[int] = None,
        exc_type: str = "",
        message: str = "",
        flags: int = 0,
        alloc_size: int = 0,
        heap_free: Optional[int] = -1,
        asynchronous: bool = False,
    ) -> int:
        """failstop_record: write the record of a fault; returns the action (0: stock
        behaviour, nothing recorded). A REBOOT fault is counted as it enters the fault
        path; a RAISE record is best effort (see Retained.pick_slot, one per boot). A
        fault while another is handled is a double fault."""
        if self.stock(kind):
            return 0
        action = self.policy(kind)
        self.claim(0 if action == Action.RAISE else kind)
        if action == Action.RAISE:
            slot = None if self.raise_recorded else self.retained.pick_slot(action)
            if slot is None:
                return action  # best effort: the evidence of earlier faults stays
            self.raise_recorded = True
        else:
            self.in_fault = kind
            if action == Action.REBOOT:
                self.retained.enter_reboot(kind, self.clock.uptime_ms())
            slot = self.retained.pick_slot(action)
            assert slot is not None
        if self.keeper_active:
            flags |= codec.FLAG_IN_KEEPER
        frames, depth = self.tracer.capture(frame, exc, line)
        self.retained.write_record(
            slot=slot,
            kind=kind,
            action=action,
            flags=flags,
            uptime_ms=self.clock.uptime_ms(),
            heap_free=self.heap.free() if heap_free == -1 else heap_free,
            alloc_size=alloc_size,
            stack_used=0 if asynchronous else stack_used(depth),
            depth=depth,
            exc_type=exc_type,
            message=message,
            frames=frames,
        )
        self.fault_slot = slot
        if self.inject_addr:
            # The test hook's store to an address with no memory behind it, before the
            # record is committed: a CPU fault inside the fault path.
            self.inject_addr = 0
            self.in_fault = self.in_fault or kind
            self.double_fault()
        if action == Action.RAISE:
            self.fault_slot = None
        return action

    def claim(self, kind: int) -> None:
        """fs_claim: the owner's second fault is a double fault; another thread's fault
        waits for the owner's reset (as another core does, interrupts off). A fail-stop
        fault (kind != 0) keeps the fault path; a RAISE record only checks it."""
        me = threading.get_ident()
        with self.claim_lock:
            owner = self.fault_owner if self.in_fault else 0
            if owner == 0:
                if kind:
                    self.fault_owner = me
                    self.in_fault = kind
                return
        if owner == me:
            self.double_fault()
        while True:  # parked until the owner's reset ends the process
            time.sleep(1)

    def fault(self, kind: int, **kw: Any) -> int:
        """failstop_fault: record, then stop the board unless the action is RAISE (or
        the fault behaves as stock); returns only then."""
        action = self.record(kind, **kw)
        if action not in (0, Action.RAISE):
            self.stop(kind, action)
        return action

    def fault_stop(self, kind: int, **kw: Any) -> NoReturn:
        """A fault that is always fail-stop (PANIC, WATCHDOG, HARDFAULT, FATAL)."""
        self.fault(kind, **kw)
        raise AssertionError("a fail-stop fault returned")  # pragma: no cover

    def stop(self, kind: int, action: int) -> NoReturn:
        """failstop_stop: say what happens, then halt or reset the board (the reboot was
        counted, and the reset cause left, when the fault entered)."""
        self.write(f"failstop: {mp_kind(kind)} -> {mp_action(action)}\r\n")
        if action == Action.HALT:
            self.finish("halt", None, kind)
        self.finish("reset", None, kind)

    def double_fault(self) -> NoReturn:
        """A fault while a fault is handled: keep the first record, flag it, reset at once
        (it was counted when the first fault entered)."""
        if self.fault_slot is not None:
            self.retained.flag_double_fault(self.fault_slot)
        self.write("\r\nfailstop: double fault -> REBOOT\r\n")
        # As the firmware: the header is not written again here (a double fault of a
        # HALT or RAISE fault path leaves no pending cause: the next boot says "soft").
        self.finish("reset", None, self.in_fault)

    def print_record_traceback(self) -> None:
        """failstop_print_traceback: the UNHANDLED traceback from its record (printing the
        exception itself could run the program's code: an argument's ``__str__``)."""
        if self.fault_slot is None:
            return
        rec = codec.decode_slot(self.retained.slot_bytes(self.fault_slot))
        if not isinstance(rec, codec.Record):
            return
        out = ["Traceback (most recent call last):\r\n"]
        if rec.flags & codec.FLAG_TB_TRUNCATED:
            out.append("  ...\r\n")
        for f in reversed(rec.traceback):
            file, func = clean_text(f.file), clean_text(f.function)
            out.append(f'  File "{file}", line {f.line or 0}, in {func}\r\n')
        out.append(clean_text(rec.exc_type))
        if rec.message:
            out.append(": " + clean_text(rec.message))
        out.append("\r\n")
        self.write("".join(out))

    # --- faults the clock, the heap and the tracer find ---------------------------------

    def oom(
        self,
        frame: Optional[FrameType],
        *,
        size: int,
        free: Optional[int] = -1,
        locked: bool = False,
        injected: bool = False,
        line: Optional[int] = None,
        from_trace: bool = True,
    ) -> NoReturn:
        """An allocation failed (m_malloc_fail): OOM fault, or MemoryError with RAISE."""
        if locked:
            msg, flags = mp.OOM_LOCKED, codec.FLAG_HEAP_LOCKED  # the size is still recorded
        elif size > 0:
            msg, flags = mp.oom_message(size), 0
        else:
            msg, flags = mp.OOM_UNKNOWN_SIZE, 0
        self.fault(
            Kind.OOM,
            frame=frame,
            line=line,
            exc_type="MemoryError",
            message=msg,
            flags=flags,
            alloc_size=size,
            heap_free=free,
        )
        err = mp.MemoryError(msg)
        if from_trace:
            self.tracer.raise_from_trace(err)
        raise err

    def on_stack(self, frame: FrameType) -> NoReturn:
        """A call would put one frame more on the stack than fits."""
        caller = self.tracer.device_frame(frame.f_back)
        self.fault(Kind.STACK, frame=caller, exc_type="RuntimeError", message=mp.RECURSION)
        self.tracer.raise_from_trace(mp.RuntimeError(mp.RECURSION))

    def on_stack_here(self, frame: FrameType) -> None:
        self.fault(Kind.STACK, frame=frame, exc_type="RuntimeError", message=mp.RECURSION)
        self.tracer.raise_from_trace(mp.RuntimeError(mp.RECURSION))

    def on_exception(self, frame: FrameType, arg: tuple[type, BaseException, Any]) -> None:
        """An exception is raised in (or enters) a frame of the program."""
        exc = arg[1]
        tb = arg[2]
        files = self.device_files
        t = tb.tb_next if tb is not None else None
        while t is not None:
            if t.tb_frame.f_code.co_filename in files:
                return  # seen already, in the frame it came from
            t = t.tb_next
        if type(exc) in mp.SIM_ERRORS:
            return
        mp.rewrite_message(exc)
        if isinstance(exc, (MemoryError, RecursionError)) and not _raised_by_statement(tb):
            # CPython itself failed: an allocation (RLIMIT_AS backstop) or its own
            # recursion limit.
            if isinstance(exc, MemoryError):
                self.oom(frame, size=0)
            else:
                self.on_stack_here(frame)

    def watchdog_fault(self, frame: Optional[FrameType]) -> NoReturn:
        """The watchdog expired: its early warning records where the program was (without
        one, the board resets and the next boot records the bite post hoc)."""
        self.clock.to_watchdog_deadline()
        if not self.early_warning:
            self.finish("reset", None, Kind.WATCHDOG, hw_next=RC_WATCHDOG)
        self.fault_stop(Kind.WATCHDOG, frame=frame, message="watchdog timeout", asynchronous=True)

    def sleep_ns(self, ns: int) -> None:
        """Virtual sleep (time.sleep*): a watchdog that expires meanwhile fires where the
        program slept."""
        self.clock.sleep_ns(ns, self.caller)

    # --- the OOM sweep ----------------------------------------------------------------

    def sweep_point(self, frame: FrameType) -> None:
        """OOM sweep: carry out the run in which this allocation point fails, then go on
        as if nothing happened, to the next point. Each such run gets its own retained
        RAM, console and status files in the sweep folder. A fail-stop OOM ends its run
        at once, so it is taken right here (same fault path, nothing of the program runs
        after it); with the RAISE policy the program goes on after the error, so that
        run is forked."""
        assert self.sweep_dir is not None
        d, k = self.sweep_dir, self.heap.allocs
        before = _traced_memory()[0]
        self.out.flush()
        if (
            self.sweep_in_process
            and self.policy(Kind.OOM) != Action.RAISE
            and not self.stock(Kind.OOM)
            and not self.in_fault
        ):
            self._sweep_in_process(frame, d, k)
            self._sweep_leftover(before)
            return
        parent = os.getpid()
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)
            self._sweep_leftover(before)
            return
        die_with_parent(parent)
        self.sweep_dir = self.heap.sweep = None
        self.console_pos = os.fstat(1).st_size
        fd = os.open(d / f"{k}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self.status_fd = os.open(d / f"{k}.status", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.retained.rebind(d / f"{k}.ram")
        self.heap.base += _traced_memory()[0] - before  # the sweep's, not the program's
        self.heap.oom_at = k

    def _sweep_leftover(self, before: int) -> None:
        """What the sweep left allocated (caches warmed up by its file and record code)
        is not the program's: the main line's heap does not count it."""
        self.heap.discount(_traced_memory()[0] - before - sys.getsizeof(before))  # `before`: ours

    def _sweep_in_process(self, frame: FrameType, d: Path, k: int) -> None:
        before = _traced_memory()[0]
        saved = (self.retained, self.out, self.status_fd, self.in_fault, self.fault_slot)
        inject_addr = self.inject_addr
        pos, base = self.console_pos, self.heap.base
        ret = self.retained.copy_to(d / f"{k}.ram")
        out = open(  # noqa: SIM115 - closed below
            d / f"{k}.out", "w", encoding="utf-8", errors="backslashreplace", newline=""
        )
        status_fd = os.open(d / f"{k}.status", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.retained, self.out, self.status_fd = ret, out, status_fd
            self.console_pos = os.fstat(1).st_size
            self.in_process_run = True
            self.heap.base += _traced_memory()[0] - before  # the sweep's, not the program's
            self.oom(frame, size=0, injected=True)
        except _SweepRunDone:
            pass
        finally:
            self.in_process_run = False
            self.retained, self.out, self.status_fd, self.in_fault, self.fault_slot = saved
            self.inject_addr = inject_addr
            self.console_pos, self.heap.base = pos, base
            out.close()
            os.close(status_fd)
            ret.close()

    # --- running programs ---------------------------------------------------------------

    def code_for(self, name: str) -> Optional[CodeType]:
        code = self.plan.programs.get(name)
        if code is not None:
            return code
        path = self.plan.root / name
        if not path.is_file():
            return None
        code = compile(path.read_bytes(), name, "exec", dont_inherit=True)
        self.device_files.add(name)
        return code

    def exec_program(
        self, code: CodeType, builtins_dict: dict[str, Any]
    ) -> Optional[BaseException]:
        """Run a program at the top level; the exception that escaped it, if any."""
        g: dict[str, Any] = {
            "__name__": "__main__",
            "__file__": code.co_filename,
            "__builtins__": builtins_dict,
        }
        try:
            exec(code, g)
        except BaseException as e:
            return e
        return None

    def print_exception(self, exc: BaseException, write: Callable[[str], object]) -> None:
        mp.write_traceback(exc, write, self.tracer.is_device_file)

    def unhandled(self, exc: BaseException) -> NoReturn:
        """An exception escaped the main program (UNHANDLED), or the REPL's code."""
        if isinstance(exc, SystemExit):
            self.end_program(_exit_code(exc))
        action = 0
        if self.main_active and not isinstance(exc, KeyboardInterrupt):
            action = self.record(
                Kind.UNHANDLED,
                exc=exc,
                exc_type=mp.type_name(exc),
                message=mp.exc_message(exc, self.res.small_int_bits),
            )
        if action not in (0, Action.RAISE):
            # Recorded: the traceback from the record, then the board goes down.
            self.print_record_traceback()
            self.stop(Kind.UNHANDLED, action)
        try:
            self.print_exception(exc, self.write)
        except BaseException:
            # Printing ran the program's code (an argument's __str__) and that raised:
            # on the board the error has no handler left (nlr_jump_fail).
            if self.in_fault:
                self.double_fault()
            self.write("\n")
            self.fault(Kind.FATAL, frame=None, message="uncaught NLR")
            self.end_program(1)
        self.end_program(1)  # stock: the traceback, exit status 1

    def end_program(self, code: int) -> NoReturn:
        """The program ended (the unix port's process exits; a board waits at the REPL)."""
        if self.main_active:
            self.retained.healthy()
        self.finish("exit", code)

    def hard_fault(self, address: int, write: bool) -> NoReturn:
        """A CPU fault: an access to memory that is not there (uctypes)."""
        what = "write to" if write else "read from"
        self.fault_stop(
            Kind.HARDFAULT,
            frame=self.caller(),
            message=f"bus fault: {what} address 0x{address:x}",
            asynchronous=True,
        )


class _SweepRunDone(BaseException):
    """The in-process run of an OOM sweep point has ended (instead of os._exit)."""


def _raised_by_statement(tb: Optional[TracebackType]) -> bool:
    """True when the innermost traceback entry is a ``raise`` statement (the program
    raised MemoryError itself: not an allocation failure)."""
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code.co_code
    i = tb.tb_lasti
    return 0 <= i < len(code) and code[i] in _RAISE_OPS


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def mp_kind(kind: int) -> str:
    return codec.KINDS.get(kind, "?")


def mp_action(action: int) -> str:
    return codec.ACTIONS.get(action, "?")
