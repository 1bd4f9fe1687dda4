"""What a simulated board is made of (its resources) and what a run injects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any, Optional, Union

KIB = 1024
MIB = 1024 * KIB


# MicroPython's heap on each board (gc.mem_free() + gc.mem_alloc() after boot, measured on
# the failstop firmware 1.25.0), the hardware watchdog's maximum timeout (the HALs') and the
# width of a small int (a machine word less one tag bit: 63 on the 64-bit unix port, 31 on
# the 32-bit Cortex-M boards).
_UNIX_HEAP = 2072832
_BOARD_FACTS = {
    "unix": (2072832, 3600000, 63),
    "MPS2_AN385": (140032, 0xFFFFFFFF // 25000, 31),  # CMSDK watchdog at 25 MHz
    "RPI_PICO": (244032, 8388, 31),  # RP2040: 24-bit microsecond counter
}
BOARDS: dict[str, dict[str, Any]] = {
    name: {
        "heap_size": 2 * 1024 * 1024 * heap // _UNIX_HEAP,
        "wdt_max_ms": wdt,
        "small_int_bits": bits,
    }
    for name, (heap, wdt, bits) in _BOARD_FACTS.items()
}
SMALL_INT_BITS = (31, 63)


@dataclass(frozen=True)
class Resources:
    """The simulated board.

    heap_size: bytes of heap the program may hold (CPython's sizes, measured with
        tracemalloc); None: no heap limit (records then say heap_free unknown).
    stack_limit: Python frames that fit on the stack; the call that would make one
        more is a STACK fault ("maximum recursion depth exceeded").
    op_ns: virtual nanoseconds one bytecode instruction takes (the virtual clock behind
        ``time.ticks_ms``, the watchdog and ``uptime_ms``; sleeps add their time).
    wdt_max_ms: the largest watchdog timeout the board accepts.
    uptime_start_ms: the uptime every boot starts at (as the unix port's
        $FAILSTOP_UPTIME_MS: months of uptime without waiting for them); the records'
        uptime saturates at 0xFFFFFFFF ms.
    missing_modules: modules the firmware is built without (e.g. ``("asyncio",)``):
        importing them fails as on the board (ImportError "no module named ...").
    small_int_bits: the width of MicroPython's small ints, 63 (a 64-bit port: unix) or
        31 (a 32-bit board). ``time.ticks_*`` wrap at ``2**(small_int_bits - 1)`` (their
        period is the largest positive small int plus one), and an exception whose
        argument is an int outside the small-int range (a long int on the board) gives an
        empty record message, as the firmware reads only str and small-int arguments.
    """

    heap_size: Optional[int] = 2 * MIB
    stack_limit: int = 100
    op_ns: int = 1000
    wdt_max_ms: int = 3600000
    uptime_start_ms: int = 0
    missing_modules: tuple[str, ...] = ()
    small_int_bits: int = 63

    def __post_init__(self) -> None:
        if self.heap_size is not None and self.heap_size <= 0:
            raise ValueError("heap_size must be positive (or None for no limit)")
        if not 1 <= self.stack_limit <= 10000:
            raise ValueError("stack_limit must be 1..10000 frames")
        if self.op_ns < 1:
            raise ValueError("op_ns must be at least 1")
        if not 1 <= self.wdt_max_ms <= 0x7FFFFFFF:
            raise ValueError("wdt_max_ms must be 1..2147483647")
        if self.uptime_start_ms < 0:
            raise ValueError("uptime_start_ms must be 0 or more")
        if self.small_int_bits not in SMALL_INT_BITS:
            raise ValueError("small_int_bits must be 31 (a 32-bit board) or 63 (64-bit)")
        if isinstance(self.missing_modules, str):
            raise TypeError("missing_modules must be a sequence of module names, not a str")
        object.__setattr__(self, "missing_modules", tuple(self.missing_modules))

    @classmethod
    def board(cls, name: str, **overrides: Any) -> Resources:
        """The resources of a board the firmware runs on (``BOARDS``), so a script that
        fails there fails here: its watchdog maximum, its small-int width, and a heap that
        is the same share of
        the unix port's heap as the board's MicroPython heap is (the default 2 MiB stands
        for the unix port's 2 MiB). Keyword arguments override."""
        try:
            preset = BOARDS[name]
        except KeyError:
            raise ValueError(f"unknown board {name!r}; one of: {', '.join(BOARDS)}") from None
        return cls(**{**preset, **overrides})


# oom_at: an allocation point's number, or its source location (file, line[, n]).
OomAt = Union[int, tuple[str, int], tuple[str, int, int]]


def _location(loc: Sequence[Any]) -> tuple[str, int, int]:
    """("main.py", 10) or ("main.py", 10, n), checked, as (file, line, n)."""
    if len(loc) not in (2, 3):
        raise ValueError("oom_at location must be (file, line) or (file, line, n)")
    file, line, nth = loc[0], loc[1], loc[2] if len(loc) == 3 else 1
    if not isinstance(file, str) or not file:
        raise TypeError("oom_at location: the file must be a name, e.g. 'main.py'")
    for what, v in (("line", line), ("n", nth)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"oom_at location: {what} must be an int, 1 or more")
    return (file, line, nth)


def parse_oom_at(text: str) -> OomAt:
    """The command line's ``--oom-at``: ``12``, ``main.py:10`` or ``main.py:10:2``."""
    if text.isdigit():
        return int(text)
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and not parts[1].isdigit():  # a ':' in the file name
        parts = [f"{parts[0]}:{parts[1]}", parts[2]]
    if len(parts) < 2 or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"--oom-at {text!r}: give K, FILE:LINE or FILE:LINE:N")
    return _location([parts[0], *(int(p) for p in parts[1:])])


@dataclass(frozen=True)
class Inject:
    """Deterministic faults for one boot of a run (boot 1, the power-on boot, unless
    ``boot`` says otherwise; the reboot after the fault runs clean).

    oom_at: the k-th allocation point (1-based) fails: OOM. Or a source location,
        ``("main.py", 10)``: the first allocation point the boot reaches on line 10 of
        main.py fails (``("main.py", 10, n)``: the n-th allocation point reached on
        that line: a line may have several, and every pass of a loop reaches them
        again). A file is named as in records (relative to the board's root). Unlike a
        count, a location does not move when another CPython counts the points
        differently.
    stack_at: the stack holds d frames: a call at depth d is a STACK fault.
    early_warning: False: the watchdog's early warning is lost in this boot (a port whose
        warning is an interrupt that cannot run): when the watchdog expires the board
        just resets, and the next boot records the bite post hoc (WATCHDOG, POSTHOC).
    hang_at: the program hangs at its n-th instruction (1-based): the watchdog fires
        if it is armed, otherwise the board stays hung (run end "hang").
    """

    oom_at: Optional[OomAt] = None
    stack_at: Optional[int] = None
    hang_at: Optional[int] = None
    boot: int = 1
    early_warning: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.oom_at, (tuple, list)):
            object.__setattr__(self, "oom_at", _location(self.oom_at))
        for name in ("oom_at", "stack_at", "hang_at"):
            v = getattr(self, name)
            if isinstance(v, bool) or (v is not None and not isinstance(v, (int, tuple))):
                raise TypeError(f"{name} must be an int")
            if isinstance(v, int) and v < 1:
                raise ValueError(f"{name} must be 1 or more")
        if self.boot < 1:
            raise ValueError("boot must be 1 or more")

    @property
    def oom_location(self) -> Optional[tuple[str, int, int]]:
        """``oom_at`` as (file, line, n) when it is a source location, else None."""
        return _location(self.oom_at) if isinstance(self.oom_at, tuple) else None

    @property
    def empty(self) -> bool:
        return (
            self.oom_at is None
            and self.stack_at is None
            and self.hang_at is None
            and self.early_warning
        )


@dataclass
class BootPlan:
    """Everything one boot needs (built by the host side, inherited by the forked boot)."""

    root: Path
    main: Optional[str]  # the main program's file name (relative to root); None: REPL
    repl: Optional[str]  # code typed at the REPL (no main program)
    resources: Resources
    inject: Optional[Inject]
    hw_cause: int  # the hardware reset cause (retained.RC_*), or NO_RESET: the board was on
    max_ms: Optional[int]  # virtual time budget of the boot
    programs: dict[str, CodeType] = field(default_factory=dict)  # precompiled files
    sweep_dir: Optional[Path] = None  # the main line of an OOM sweep writes runs there
    machine_stubs: dict[str, Any] = field(default_factory=dict)  # the user's machine.Pin, ...
