"""The simulated board's virtual clock: instructions and sleeps, uptime, the watchdog's
deadline, an injected hang and the run's time budget.

Time is ``steps * op_ns + slept_ns``: it never depends on how fast the host is. The
tracer counts instructions down in chunks of at most 255 (CPython's cached small ints:
the hot path allocates nothing), so ``steps = base_steps + chunk - left``; a chunk ends
no later than the next step at which something may be due (``trip``). What happens when
something is due (a hang with no watchdog, the watchdog's deadline, the budget) is the
board's business: the clock calls back.
"""

from __future__ import annotations

from types import FrameType
from typing import Callable, NoReturn, Optional

from .retained import UPTIME_MAX

NEVER = 1 << 62

FrameFn = Callable[[], Optional[FrameType]]


class Clock:
    """The virtual clock of one boot, with the watchdog's deadline and the budget."""

    def __init__(
        self,
        *,
        op_ns: int,
        uptime_start_ms: int,
        hang_at: int,
        max_ms: Optional[int],
        on_hang: Callable[[], NoReturn],
        on_watchdog: Callable[[Optional[FrameType]], NoReturn],
        on_time_limit: Callable[[], NoReturn],
    ) -> None:
        self.op_ns = op_ns
        self.uptime_start_ms = uptime_start_ms
        # steps = base_steps + chunk - left (see the module's docstring)
        self.base_steps = 0
        self.chunk = 1
        self.left = 1
        self.slept_ns = 0
        self.trip = NEVER  # the step at which a deadline or an injected hang is due
        self.hang_at = hang_at
        self.budget_ns: Optional[int] = None if max_ms is None else max_ms * 1_000_000
        self.wdt_ms = 0
        self.wdt_deadline: Optional[int] = None  # ns
        self.on_hang = on_hang  # hung with no watchdog armed: the run ends
        self.on_watchdog = on_watchdog  # the deadline passed (the clock is at it)
        self.on_time_limit = on_time_limit  # the budget is used up

    @property
    def steps(self) -> int:
        return self.base_steps + self.chunk - self.left

    def now_ns(self) -> int:
        return self.steps * self.op_ns + self.slept_ns

    def uptime_ms(self) -> int:
        """failstop_hal_uptime_ms: saturates at 0xFFFFFFFF (49.7 days), never wraps."""
        return min(self.uptime_start_ms + self.now_ns() // 1_000_000, UPTIME_MAX)

    # --- instructions -------------------------------------------------------------------

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
                self.on_hang()
            self.slept_ns += max(0, self.wdt_deadline - self.now_ns())
        clock = self.now_ns()
        if self.wdt_deadline is not None and clock >= self.wdt_deadline:
            self.on_watchdog(frame)
        if self.budget_ns is not None and clock >= self.budget_ns:
            self.on_time_limit()
        self.retrip()

    def retrip(self) -> None:
        """The next step at which on_trip must look."""
        trip = self.hang_at or NEVER
        op = self.op_ns
        for deadline in (self.wdt_deadline, self.budget_ns):
            if deadline is not None:
                need = -(-(deadline - self.slept_ns) // op)
                trip = min(trip, max(need, self.steps + 1))
        self.trip = trip
        self.rechunk()

    # --- sleeps and the watchdog --------------------------------------------------------

    def sleep_ns(self, ns: int, caller: FrameFn) -> None:
        """Virtual sleep: the clock jumps; a watchdog that expires meanwhile fires (at
        the program's frame that slept: ``caller()``)."""
        if ns <= 0:
            return
        target = self.now_ns() + ns
        if self.wdt_deadline is not None and self.wdt_deadline <= target:
            self.on_watchdog(caller())
        if self.budget_ns is not None and self.budget_ns <= target:
            self.slept_ns += self.budget_ns - self.now_ns()
            self.on_time_limit()
        self.slept_ns += ns
        self.retrip()

    def to_watchdog_deadline(self) -> None:
        """The watchdog expired: the clock stands at its deadline."""
        assert self.wdt_deadline is not None
        self.slept_ns += max(0, self.wdt_deadline - self.now_ns())

    def wdt_arm(self, ms: int) -> None:
        self.wdt_ms = ms
        self.wdt_feed()

    def wdt_feed(self) -> None:
        if self.wdt_ms:
            self.wdt_deadline = self.now_ns() + self.wdt_ms * 1_000_000
            self.retrip()
