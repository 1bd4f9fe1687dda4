"""The simulated board's heap: its size and use (CPython's objects, measured with
``tracemalloc`` from the start of the boot), the allocation points the tracer reports,
and OOM injection (``oom_at=k``, ``oom_at=(file, line, n)``, a locked heap, a heap past
its size). The OOM itself (the record, or the ``MemoryError`` of the RAISE policy) is
the board's fault path: the heap calls back.
"""

from __future__ import annotations

import gc
import tracemalloc
from types import CodeType, FrameType
from typing import Callable, NoReturn, Optional, Protocol

from . import allocpoints

_traced_memory = tracemalloc.get_traced_memory


class OomFn(Protocol):
    """The board's OOM (Runtime.oom): an OOM fault, or MemoryError with RAISE."""

    def __call__(
        self,
        frame: Optional[FrameType],
        *,
        size: int,
        free: Optional[int] = -1,
        locked: bool = False,
        injected: bool = False,
        line: Optional[int] = None,
        from_trace: bool = True,
    ) -> NoReturn: ...


class Heap:
    """The heap of one boot, its allocation points and the OOM to inject."""

    def __init__(
        self,
        *,
        size: Optional[int],
        oom_at: int,
        oom_loc: Optional[tuple[str, int, int]],
        oom: OomFn,
        caller: Callable[[], Optional[FrameType]],
    ) -> None:
        self.size = size  # None: no limit
        self.base = 0  # traced bytes that are not the program's
        self.last = 0  # traced bytes at the last heap check
        self.locked = 0  # micropython.heap_lock() depth
        self.pending = False  # an allocation point ran: check the heap at the next step
        self.pend_frame: Optional[FrameType] = None
        self.pend_lasti = 0
        self.allocs = 0  # allocation points reached
        self.oom_at = oom_at  # the k-th point fails (0: none)
        # oom_at as a source location: (file, line, n), and per code object the offsets
        # of its allocation points on that line.
        self.oom_loc = oom_loc
        self.oom_offsets: dict[int, tuple[CodeType, frozenset[int]]] = {}
        # OOM sweep: called at every allocation point, before it may fail (Runtime).
        self.sweep: Optional[Callable[[FrameType], None]] = None
        self.oom = oom
        self.caller = caller  # the program's frame that called into the simulator

    def used(self) -> int:
        return _traced_memory()[0] - self.base

    def free(self) -> Optional[int]:
        if self.size is None:
            return None
        return max(0, self.size - self.used())

    def discount(self, nbytes: int) -> None:
        """``nbytes`` allocated since the last check are not the program's."""
        self.base += nbytes
        self.last += nbytes

    def on_alloc(self, frame: FrameType, k: int) -> None:
        """An allocation point is about to run."""
        self.allocs += 1
        if self.sweep is not None:
            self.sweep(frame)
        if self.allocs == self.oom_at or (self.oom_loc is not None and self.at_oom_loc(frame)):
            self.oom_at = 0
            self.oom_loc = None
            self.oom(frame, size=0, injected=True)
        elif k == allocpoints.ALWAYS and self.locked:
            self.oom(frame, size=0, locked=True)
        if self.size is not None:
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

    def check(self) -> None:
        """The instruction after an allocation point: did the heap grow past its size?
        (One measurement per allocation point; what other instructions allocated in
        between counts towards the next one.)"""
        frame = self.pend_frame
        self.pending = False
        self.pend_frame = None
        before = self.last
        now = self.last = _traced_memory()[0]
        assert self.size is not None
        if now - self.base > self.size:
            now = self.last = self.collect()
        if now - self.base > self.size and frame is not None:
            self.oom(
                frame,
                size=now - before,
                free=max(0, self.size - (before - self.base)),
                line=allocpoints.line_at(frame.f_code, self.pend_lasti),
            )

    def collect(self) -> int:
        """The heap is full: collect garbage first, as MicroPython's gc_alloc does before
        it gives up (automatic collection is off: it happens only here and at
        ``gc.collect()``, so where it happens does not depend on CPython's thresholds).
        Returns the traced bytes after it."""
        gc.collect()
        return _traced_memory()[0]

    def sized_alloc(self, size: int) -> None:
        """A request for ``size`` bytes the simulator sees before CPython allocates them
        (``bytearray(n)``): fails when the heap is locked or has less than that free."""
        if size < 0:
            return
        if self.locked:
            self.oom(self.caller(), size=size, locked=True, from_trace=False)
        free = self.free()
        if free is not None and size > free:
            self.last = self.collect()
            free = self.free()
        if free is not None and size > free:
            self.oom(self.caller(), size=size, free=free, from_trace=False)
