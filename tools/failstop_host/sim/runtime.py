"""One boot of the simulated board, inside its own (forked) process.

The boot runs the program with a ``sys.settrace`` tracer on the program's own frames.
The tracer sees every instruction before it runs (opcode events), every call before
the callee's first instruction, and every exception where it is raised, before any
``except`` clause of the program runs. A fail-stop fault writes the record into the
retained region, prints the firmware's line, and ends the process with ``os._exit``:
no handler, ``finally`` or ``__exit__`` of the program runs afterwards, as on the
board. The host side (host.py) then "resets" the board by starting the next boot.
"""

from __future__ import annotations

import contextlib
import dis
import gc
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
from . import allocpoints
from . import mpstyle as mp
from .config import BootPlan
from .procs import die_with_parent
from .retained import ACTION, KIND, RC_WATCHDOG, UPTIME_MAX, Retained, clean_text

TraceFn = Callable[[FrameType, str, Any], Any]

NEVER = 1 << 62
STACK_BASE = 512  # modelled C stack below the first Python frame (bytes)
STACK_PER_FRAME = 448  # modelled C stack per Python call (the unix port needs ~450 B)

K_PANIC, K_OOM, K_STACK, K_UNHANDLED, K_WATCHDOG, K_HARDFAULT, K_FATAL = (
    KIND[k] for k in ("PANIC", "OOM", "STACK", "UNHANDLED", "WATCHDOG", "HARDFAULT", "FATAL")
)
A_REBOOT, A_HALT, A_RAISE = ACTION["REBOOT"], ACTION["HALT"], ACTION["RAISE"]
_RAISE_OPS = frozenset(
    op for op, name in enumerate(dis.opname) if name in ("RAISE_VARARGS", "RERAISE")
)

_traced_memory = tracemalloc.get_traced_memory


class Runtime:
    """The board during one boot: resources, virtual clock, policies, the fault path."""

    def __init__(self, plan: BootPlan, retained: Retained, status_fd: int) -> None:
        self.plan = plan
        self.res = plan.resources
        self.retained = retained
        self.status_fd = status_fd
        self.out: TextIO = sys.stdout  # the console (child.boot sets it)
        inj = plan.inject
        # Virtual clock: steps (instructions) * op_ns + slept_ns. Steps are counted down in
        # chunks of at most 255 (CPython's cached small ints: the hot path allocates
        # nothing): steps = base_steps + chunk - left.
        self.base_steps = 0
        self.chunk = 1
        self.left = 1
        self.slept_ns = 0
        self.trip = NEVER  # the step at which a deadline or an injected hang is due
        self.hang_at = inj.hang_at if inj and inj.hang_at else 0
        self.early_warning = inj.early_warning if inj else True
        self.budget_ns: Optional[int] = None if plan.max_ms is None else plan.max_ms * 1_000_000
        self.wdt_ms = 0
        self.wdt_deadline: Optional[int] = None  # ns
        # Allocation points and the heap.
        self.allocs = 0
        self.oom_at = inj.oom_at if inj and isinstance(inj.oom_at, int) else 0
        # oom_at as a source location: (file, line, n), and per code object the offsets
        # of its allocation points on that line.
        self.oom_loc = inj.oom_location if inj else None
        self.oom_offsets: dict[int, tuple[CodeType, frozenset[int]]] = {}
        self.heap_size = self.res.heap_size
        self.heap_base = 0
        self.heap_last = 0  # traced bytes at the last heap check
        self.heap_locked = 0
        self.pending = False  # an allocation point ran: check the heap at the next step
        self.pend_frame: Optional[FrameType] = None
        self.pend_lasti = 0
        # OOM sweep: the main line forks an injected run at every allocation point.
        self.sweep_dir = plan.sweep_dir
        self.console_pos = -1
        self.in_process_run = False
        # Stack.
        self.depth = 0
        self.max_depth = 0
        self.stack_limit = inj.stack_at if inj and inj.stack_at else self.res.stack_limit
        # Policy and fault state (RAM: lost at every reset).
        self.policies: dict[int, int] = {}
        self.in_fault = 0
        self.fault_owner = 0  # the thread that holds the fault path (failstop_hal_claim)
        self.claim_lock = threading.Lock()
        self.fault_slot: Optional[int] = None
        self.converting = False
        self.recoverable: dict[int, int] = {K_OOM: 0, K_STACK: 0}  # with-block depth
        self.raise_recorded = False  # one RAISE record per boot
        self.keeper_active = False  # records get IN_KEEPER
        self.inject_addr = 0  # _inject("DOUBLE", addr): the next fault path stores there
        self.main_active = False
        self.device_files: set[str] = set(plan.programs)
        self._locals: dict[int, tuple[CodeType, TraceFn]] = {}
        self._trace_call: TraceFn = self._make_global()

    # --- console and the end of a boot ------------------------------------------------

    def write(self, text: str) -> None:
        self.out.write(text)

    def uptime_ms(self) -> int:
        """failstop_hal_uptime_ms: saturates at 0xFFFFFFFF (49.7 days), never wraps."""
        return min(self.res.uptime_start_ms + self.clock_ns() // 1_000_000, UPTIME_MAX)

    @property
    def steps(self) -> int:
        return self.base_steps + self.chunk - self.left

    def clock_ns(self) -> int:
        return self.steps * self.res.op_ns + self.slept_ns

    def finish(
        self, end: str, code: Optional[int] = 0, kind: int = 0, hw_next: int = 0
    ) -> NoReturn:
        """End this boot: report to the host side and end the process at once.
        ``hw_next``: the hardware reset cause the next boot sees (0: none, the cause is
        what the firmware left in the region)."""
        if not self.in_process_run:
            sys.settrace(None)
            sys.setprofile(None)
        with contextlib.suppress(Exception):
            self.out.flush()
        status = {
            "end": end,
            "code": code,
            "kind": kind,
            "steps": self.steps,
            "allocs": self.allocs,
            "max_depth": self.max_depth,
            "uptime_ms": self.uptime_ms(),
            "console_pos": self.console_pos,
            "hw_next": hw_next,
        }
        os.write(self.status_fd, json.dumps(status).encode() + b"\n")
        if self.in_process_run:
            raise _SweepRunDone
        os._exit(0)

    # --- device frames and the record -------------------------------------------------

    def is_device_file(self, filename: str) -> bool:
        return filename in self.device_files

    def device_frame(self, frame: Optional[FrameType]) -> Optional[FrameType]:
        """The innermost frame of the program at or outside ``frame``."""
        files = self.device_files
        while frame is not None and frame.f_code.co_filename not in files:
            frame = frame.f_back
        return frame

    def caller(self) -> Optional[FrameType]:
        """The program's frame that called into the simulator."""
        return self.device_frame(sys._getframe(1))

    def capture(
        self,
        frame: Optional[FrameType],
        exc: Optional[BaseException] = None,
        line: Optional[int] = None,
    ) -> tuple[list[tuple[str, int, str]], int]:
        """Frames of a fault, innermost first, and the number of active Python frames:
        an exception's own traceback first, then the active frames outside it (as
        fs_capture_frames does)."""
        files = self.device_files
        frames: list[tuple[str, int, str]] = []
        start = frame
        tb: Optional[TracebackType] = exc.__traceback__ if exc is not None else None
        if tb is not None:
            outer: Optional[FrameType] = None
            inner: list[tuple[str, int, str]] = []
            while tb is not None:
                code = tb.tb_frame.f_code
                if code.co_filename in files:
                    inner.append((code.co_filename, tb.tb_lineno or 0, code.co_name))
                    if outer is None:
                        outer = tb.tb_frame
                tb = tb.tb_next
            frames.extend(reversed(inner))
            if outer is not None:
                start = outer.f_back
        f = self.device_frame(start)
        while f is not None:
            code = f.f_code
            if code.co_filename in files:
                ln = line if (line is not None and not frames) else (f.f_lineno or 0)
                frames.append((code.co_filename, ln, code.co_name))
            f = f.f_back
        return frames, len(frames)

    def heap_used(self) -> int:
        return _traced_memory()[0] - self.heap_base

    def heap_free(self) -> Optional[int]:
        if self.heap_size is None:
            return None
        return max(0, self.heap_size - self.heap_used())

    def policy(self, kind: int) -> int:
        return self.policies.get(kind, A_REBOOT)

    def stock(self, kind: int) -> bool:
        """OOM/STACK behave as stock MicroPython, with no record: panic() converting its
        reason, or inside ``with failstop.recoverable(kind)``."""
        return kind in (K_OOM, K_STACK) and (self.converting or self.recoverable[kind] > 0)

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
        self.claim(0 if action == A_RAISE else kind)
        if action == A_RAISE:
            slot = None if self.raise_recorded else self.retained.pick_slot(action)
            if slot is None:
                return action  # best effort: the evidence of earlier faults stays
            self.raise_recorded = True
        else:
            self.in_fault = kind
            if action == A_REBOOT:
                self.retained.enter_reboot(kind, self.uptime_ms())
            slot = self.retained.pick_slot(action)
            assert slot is not None
        if self.keeper_active:
            flags |= codec.FLAG_IN_KEEPER
        frames, depth = self.capture(frame, exc, line)
        self.retained.write_record(
            slot=slot,
            kind=kind,
            action=action,
            flags=flags,
            uptime_ms=self.uptime_ms(),
            heap_free=self.heap_free() if heap_free == -1 else heap_free,
            alloc_size=alloc_size,
            stack_used=0 if asynchronous else STACK_BASE + STACK_PER_FRAME * depth,
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
        if action == A_RAISE:
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
        if action not in (0, A_RAISE):
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
        if action == A_HALT:
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

    # --- the tracer -------------------------------------------------------------------

    def _make_global(self) -> TraceFn:
        rt = self
        files = self.device_files
        cache = self._locals

        def trace_call(frame: FrameType, event: str, arg: Any) -> Optional[TraceFn]:
            code = frame.f_code
            entry = cache.get(id(code))
            if entry is None:
                if code.co_filename not in files:
                    return None
                entry = rt._local_for(code)
            d = rt.depth + 1
            rt.depth = d
            if d > rt.max_depth:
                if d > rt.stack_limit:
                    rt.on_stack(frame)  # does not return
                rt.max_depth = d
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            return entry[1]

        return trace_call

    def _local_for(self, code: CodeType) -> tuple[CodeType, TraceFn]:
        rt = self
        table = allocpoints.table(code)

        def local(frame: FrameType, event: str, arg: Any) -> TraceFn:
            if event == "opcode":
                rt.left -= 1
                if not rt.left:
                    rt.tick(frame)
                if rt.pending:
                    rt.heap_check()
                k = table[frame.f_lasti]
                if k:
                    rt.on_alloc(frame, k)
            elif event == "return":
                rt.depth -= 1
            elif event == "exception":
                rt.on_exception(frame, arg)
            return local

        entry = (code, local)  # the code object is kept alive: its id stays unique
        self._locals[id(code)] = entry
        return entry

    def start_tracing(self) -> None:
        sys.settrace(self._trace_call)

    def raise_from_trace(self, exc: BaseException) -> NoReturn:
        """Raise ``exc`` at the current instruction from inside the tracer. CPython turns
        tracing off when a trace function raises: a one-shot profile hook turns it back
        on at the next call or return."""
        sys.setprofile(self._retrace_hook)
        raise exc

    def _retrace_hook(self, frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        self.retrace(frame, skip=frame if event == "return" else None)

    def retrace(self, frame: Optional[FrameType], skip: Optional[FrameType] = None) -> None:
        """Trace again after CPython turned tracing off: every active frame of the program
        gets its tracer back, and the depth is counted again."""
        sys.settrace(self._trace_call)
        depth = 0
        f = frame
        while f is not None:
            code = f.f_code
            if code.co_filename in self.device_files and f is not skip:
                entry = self._locals.get(id(code)) or self._local_for(code)
                f.f_trace = entry[1]
                f.f_trace_opcodes = True
                f.f_trace_lines = False
                depth += 1
            f = f.f_back
        self.depth = depth
        self.max_depth = max(self.max_depth, depth)

    # --- tracer events ----------------------------------------------------------------

    def on_alloc(self, frame: FrameType, k: int) -> None:
        """An allocation point is about to run."""
        self.allocs += 1
        if self.sweep_dir is not None:
            self.sweep_point(frame)
        if self.allocs == self.oom_at or (self.oom_loc is not None and self.at_oom_loc(frame)):
            self.oom_at = 0
            self.oom_loc = None
            self.oom(frame, size=0, injected=True)
        elif k == allocpoints.ALWAYS and self.heap_locked:
            self.oom(frame, size=0, locked=True)
        if self.heap_size is not None:
            self.pending = True
            self.pend_frame = frame
            self.pend_lasti = frame.f_lasti

    def at_oom_loc(self, frame: FrameType) -> bool:
        """The allocation point about to run is the one ``oom_at=(file, line, n)`` names."""
        assert self.oom_loc is not None
        file, line, nth = self.oom_loc
        code = frame.f_code
        if code.co_filename != file:
            return False
        hit = self.oom_offsets.get(id(code))
        if hit is None:
            hit = self.oom_offsets[id(code)] = (code, allocpoints.offsets_on_line(code, line))
        if frame.f_lasti not in hit[1]:
            return False
        self.oom_loc = (file, line, nth - 1)
        return nth == 1

    def heap_check(self) -> None:
        """The instruction after an allocation point: did the heap grow past its size?
        (One measurement per allocation point; what other instructions allocated in
        between counts towards the next one.)"""
        frame = self.pend_frame
        self.pending = False
        self.pend_frame = None
        before = self.heap_last
        now = self.heap_last = _traced_memory()[0]
        assert self.heap_size is not None
        if now - self.heap_base > self.heap_size:
            now = self.heap_last = self.collect()
        if now - self.heap_base > self.heap_size and frame is not None:
            self.oom(
                frame,
                size=now - before,
                free=max(0, self.heap_size - (before - self.heap_base)),
                line=allocpoints.line_at(frame.f_code, self.pend_lasti),
            )

    def collect(self) -> int:
        """The heap is full: collect garbage first, as MicroPython's gc_alloc does before
        it gives up (automatic collection is off: it happens only here and at
        ``gc.collect()``, so where it happens does not depend on CPython's thresholds).
        Returns the traced bytes after it."""
        gc.collect()
        return _traced_memory()[0]

    def sweep_point(self, frame: FrameType) -> None:
        """OOM sweep: carry out the run in which this allocation point fails, then go on
        as if nothing happened, to the next point. Each such run gets its own retained
        RAM, console and status files in the sweep folder. A fail-stop OOM ends its run
        at once, so it is taken right here (same fault path, nothing of the program runs
        after it); with the RAISE policy the program goes on after the error, so that
        run is forked."""
        assert self.sweep_dir is not None
        d, k = self.sweep_dir, self.allocs
        before = _traced_memory()[0]
        self.out.flush()
        if self.policy(K_OOM) != A_RAISE and not self.stock(K_OOM) and not self.in_fault:
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
        self.sweep_dir = None
        self.console_pos = os.fstat(1).st_size
        fd = os.open(d / f"{k}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self.status_fd = os.open(d / f"{k}.status", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.retained.rebind(d / f"{k}.ram")
        self.heap_base += _traced_memory()[0] - before  # the sweep's, not the program's
        self.oom_at = k

    def _sweep_leftover(self, before: int) -> None:
        """What the sweep left allocated (caches warmed up by its file and record code)
        is not the program's: the main line's heap does not count it."""
        left = _traced_memory()[0] - before - sys.getsizeof(before)  # `before` is ours too
        self.heap_base += left
        self.heap_last += left

    def _sweep_in_process(self, frame: FrameType, d: Path, k: int) -> None:
        before = _traced_memory()[0]
        saved = (self.retained, self.out, self.status_fd, self.in_fault, self.fault_slot)
        inject_addr = self.inject_addr
        pos, base = self.console_pos, self.heap_base
        ret = self.retained.copy_to(d / f"{k}.ram")
        out = open(  # noqa: SIM115 - closed below
            d / f"{k}.out", "w", encoding="utf-8", errors="backslashreplace", newline=""
        )
        status_fd = os.open(d / f"{k}.status", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.retained, self.out, self.status_fd = ret, out, status_fd
            self.console_pos = os.fstat(1).st_size
            self.in_process_run = True
            self.heap_base += _traced_memory()[0] - before  # the sweep's, not the program's
            self.oom(frame, size=0, injected=True)
        except _SweepRunDone:
            pass
        finally:
            self.in_process_run = False
            self.retained, self.out, self.status_fd, self.in_fault, self.fault_slot = saved
            self.inject_addr = inject_addr
            self.console_pos, self.heap_base = pos, base
            out.close()
            os.close(status_fd)
            ret.close()

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
    ) -> None:
        """An allocation failed (m_malloc_fail): OOM fault, or MemoryError with RAISE."""
        if locked:
            msg, flags = mp.OOM_LOCKED, codec.FLAG_HEAP_LOCKED  # the size is still recorded
        elif size > 0:
            msg, flags = mp.oom_message(size), 0
        else:
            msg, flags = mp.OOM_UNKNOWN_SIZE, 0
        self.fault(
            K_OOM,
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
            self.raise_from_trace(err)
        raise err

    def sized_alloc(self, size: int) -> None:
        """A request for ``size`` bytes the simulator sees before CPython allocates them
        (``bytearray(n)``): fails when the heap is locked or has less than that free."""
        if size < 0:
            return
        if self.heap_locked:
            self.oom(self.caller(), size=size, locked=True, from_trace=False)
        free = self.heap_free()
        if free is not None and size > free:
            self.heap_last = self.collect()
            free = self.heap_free()
        if free is not None and size > free:
            self.oom(self.caller(), size=size, free=free, from_trace=False)

    def on_stack(self, frame: FrameType) -> None:
        """A call would put one frame more on the stack than fits."""
        caller = self.device_frame(frame.f_back)
        self.fault(K_STACK, frame=caller, exc_type="RuntimeError", message=mp.RECURSION)
        self.raise_from_trace(mp.RuntimeError(mp.RECURSION))

    def tick(self, frame: FrameType) -> None:
        """The countdown ran out: account the chunk; a deadline or a hang may be due."""
        self.base_steps += self.chunk
        self.left = self.chunk = 1
        if self.base_steps >= self.trip:
            self.on_trip(frame)
        self.rechunk()

    def rechunk(self) -> None:
        """Start a new countdown that ends at the trip step at the latest."""
        self.base_steps = self.steps
        self.chunk = self.left = max(1, min(255, self.trip - self.base_steps))

    def on_trip(self, frame: FrameType) -> None:
        """A deadline or an injected hang is due at this instruction."""
        if self.hang_at and self.steps >= self.hang_at:
            self.hang_at = 0
            if self.wdt_deadline is None:
                self.finish("hang", None)
            self.slept_ns += max(0, self.wdt_deadline - self.clock_ns())
        clock = self.clock_ns()
        if self.wdt_deadline is not None and clock >= self.wdt_deadline:
            self.watchdog_fault(frame)
        if self.budget_ns is not None and clock >= self.budget_ns:
            self.finish("time_limit", None)
        self.retrip()

    def retrip(self) -> None:
        """The next step at which on_trip must look."""
        trip = self.hang_at or NEVER
        op = self.res.op_ns
        for deadline in (self.wdt_deadline, self.budget_ns):
            if deadline is not None:
                need = -(-(deadline - self.slept_ns) // op)
                trip = min(trip, max(need, self.steps + 1))
        self.trip = trip
        self.rechunk()

    def watchdog_fault(self, frame: Optional[FrameType]) -> NoReturn:
        """The watchdog expired: its early warning records where the program was (without
        one, the board resets and the next boot records the bite post hoc)."""
        assert self.wdt_deadline is not None
        self.slept_ns += max(0, self.wdt_deadline - self.clock_ns())
        if not self.early_warning:
            self.finish("reset", None, K_WATCHDOG, hw_next=RC_WATCHDOG)
        self.fault_stop(K_WATCHDOG, frame=frame, message="watchdog timeout", asynchronous=True)

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

    def on_stack_here(self, frame: FrameType) -> None:
        self.fault(K_STACK, frame=frame, exc_type="RuntimeError", message=mp.RECURSION)
        self.raise_from_trace(mp.RuntimeError(mp.RECURSION))

    # --- time and the watchdog ----------------------------------------------------------

    def sleep_ns(self, ns: int) -> None:
        """Virtual sleep: the clock jumps; a watchdog that expires meanwhile fires."""
        if ns <= 0:
            return
        target = self.clock_ns() + ns
        if self.wdt_deadline is not None and self.wdt_deadline <= target:
            self.watchdog_fault(self.caller())
        if self.budget_ns is not None and self.budget_ns <= target:
            self.slept_ns += self.budget_ns - self.clock_ns()
            self.finish("time_limit", None)
        self.slept_ns += ns
        self.retrip()

    def wdt_arm(self, ms: int) -> None:
        self.wdt_ms = ms
        self.wdt_feed()

    def wdt_feed(self) -> None:
        if self.wdt_ms:
            self.wdt_deadline = self.clock_ns() + self.wdt_ms * 1_000_000
            self.retrip()

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
        mp.write_traceback(exc, write, self.is_device_file)

    def unhandled(self, exc: BaseException) -> NoReturn:
        """An exception escaped the main program (UNHANDLED), or the REPL's code."""
        if isinstance(exc, SystemExit):
            self.end_program(_exit_code(exc))
        action = 0
        if self.main_active and not isinstance(exc, KeyboardInterrupt):
            action = self.record(
                K_UNHANDLED,
                exc=exc,
                exc_type=mp.type_name(exc),
                message=mp.exc_message(exc, self.res.small_int_bits),
            )
        if action not in (0, A_RAISE):
            # Recorded: the traceback from the record, then the board goes down.
            self.print_record_traceback()
            self.stop(K_UNHANDLED, action)
        try:
            self.print_exception(exc, self.write)
        except BaseException:
            # Printing ran the program's code (an argument's __str__) and that raised:
            # on the board the error has no handler left (nlr_jump_fail).
            if self.in_fault:
                self.double_fault()
            self.write("\n")
            self.fault(K_FATAL, frame=None, message="uncaught NLR")
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
            K_HARDFAULT,
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
