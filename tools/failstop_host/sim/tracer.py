"""The tracer: ``sys.settrace`` on the program's own frames, the program's view of the
stack (its frames among the simulator's), and the modelled stack.

The tracer sees every instruction of the program before it runs (opcode events: the
clock counts it, the heap checks the allocation point before it and notes this one),
every call before the callee's first instruction (the stack depth; one frame too many
is a STACK fault) and every exception where it is raised, before any ``except`` clause
of the program runs. Faults are the board's: the tracer calls back.
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType, TracebackType
from typing import Any, Callable, NoReturn, Optional

from . import allocpoints
from .clock import Clock
from .heap import Heap

TraceFn = Callable[[FrameType, str, Any], Any]
Frames = list[tuple[str, int, str]]  # (file, line, function), innermost first

STACK_BASE = 512  # modelled C stack below the first Python frame (bytes)
STACK_PER_FRAME = 448  # modelled C stack per Python call (the unix port needs ~450 B)


def stack_used(depth: int) -> int:
    """The modelled C stack of ``depth`` active Python frames (bytes)."""
    return STACK_BASE + STACK_PER_FRAME * depth


class Tracer:
    """Traces the frames of the program's files (``files``: the set grows as the program
    imports its own modules) and counts their depth."""

    def __init__(
        self,
        files: set[str],
        *,
        stack_limit: int,
        clock: Clock,
        heap: Heap,
        on_stack: Callable[[FrameType], NoReturn],
        on_exception: Callable[[FrameType, Any], None],
    ) -> None:
        self.files = files
        self.depth = 0
        self.max_depth = 0
        self.stack_limit = stack_limit
        self.clock = clock
        self.heap = heap
        self.on_stack = on_stack  # a call would put one frame too many on the stack
        self.on_exception = on_exception  # an exception is raised in (or enters) a frame
        self._locals: dict[int, tuple[CodeType, TraceFn]] = {}
        self._local_for: Callable[[CodeType], tuple[CodeType, TraceFn]]
        self._trace_call: TraceFn = self._make_global()

    # --- the program's frames -------------------------------------------------------------

    def is_device_file(self, filename: str) -> bool:
        return filename in self.files

    def device_frame(self, frame: Optional[FrameType]) -> Optional[FrameType]:
        """The innermost frame of the program at or outside ``frame``."""
        files = self.files
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
    ) -> tuple[Frames, int]:
        """Frames of a fault, innermost first, and the number of active Python frames:
        an exception's own traceback first, then the active frames outside it (as
        fs_capture_frames does)."""
        files = self.files
        frames: Frames = []
        start = frame
        tb: Optional[TracebackType] = exc.__traceback__ if exc is not None else None
        if tb is not None:
            outer: Optional[FrameType] = None
            inner: Frames = []
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

    # --- the trace functions ----------------------------------------------------------

    def _make_global(self) -> TraceFn:
        """The global trace function (calls) and the factory of the local ones (one a
        code object). Their shared cells are made here, once, before the program runs:
        a code object's tracer adds only its own to the program's heap."""
        tr = self
        clock = self.clock
        heap = self.heap
        files = self.files
        cache = self._locals

        def local_for(code: CodeType) -> tuple[CodeType, TraceFn]:
            table = allocpoints.table(code)

            def local(frame: FrameType, event: str, arg: Any) -> TraceFn:
                if event == "opcode":
                    clock.left -= 1
                    if not clock.left:
                        clock.tick(frame)
                    if heap.pending:
                        heap.check()
                    k = table[frame.f_lasti]
                    if k:
                        heap.on_alloc(frame, k)
                elif event == "return":
                    tr.depth -= 1
                elif event == "exception":
                    tr.on_exception(frame, arg)
                return local

            entry = (code, local)  # the code object is kept alive: its id stays unique
            cache[id(code)] = entry
            return entry

        def trace_call(frame: FrameType, event: str, arg: Any) -> Optional[TraceFn]:
            code = frame.f_code
            entry = cache.get(id(code))
            if entry is None:
                if code.co_filename not in files:
                    return None
                entry = local_for(code)
            d = tr.depth + 1
            tr.depth = d
            if d > tr.max_depth:
                if d > tr.stack_limit:
                    tr.on_stack(frame)  # does not return
                tr.max_depth = d
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            return entry[1]

        self._local_for = local_for
        return trace_call

    def start(self) -> None:
        sys.settrace(self._trace_call)

    def stop(self) -> None:
        sys.settrace(None)
        sys.setprofile(None)

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
            if code.co_filename in self.files and f is not skip:
                entry = self._locals.get(id(code)) or self._local_for(code)
                f.f_trace = entry[1]
                f.f_trace_opcodes = True
                f.f_trace_lines = False
                depth += 1
            f = f.f_back
        self.depth = depth
        self.max_depth = max(self.max_depth, depth)
