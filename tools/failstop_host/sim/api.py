"""The modules a device script imports on the simulated board: ``failstop``,
``machine`` (``panic``, ``reset``, ``WDT``), ``micropython`` (``const``, ``heap_lock``,
...), ``time`` (MicroPython's ``ticks_*``/``sleep_*`` on the virtual clock), ``uctypes``
(``bytearray_at``/``bytes_at``: the simulated board has no memory to poke, every access
is a HARDFAULT), ``gc.mem_free``/``gc.mem_alloc``, ``sys.print_exception``.

Names, arguments, errors and messages follow modules/failstop/modfailstop.c."""

from __future__ import annotations

import gc
import sys
import time as _time
import types
from collections.abc import Iterator
from typing import Any, Callable, Literal, NoReturn, Optional

from .. import codec
from ..codec import Action, Kind
from . import mpstyle as mp
from .retained import FIRMWARE
from .runtime import Runtime

_KIND_NAMES = [k.name for k in Kind]  # in code order: PANIC is 1
_ACTION_NAMES = [a.name for a in Action]
_RAISABLE = (Kind.OOM, Kind.STACK, Kind.UNHANDLED)


def _tname(obj: object) -> str:
    """MicroPython's name for an object's type (in error messages)."""
    return type(obj).__name__


def _is_int(obj: object) -> bool:
    return isinstance(obj, int) and not isinstance(obj, bool)


def _lookup(name: object, table: list[str], what: str) -> int:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {_tname(name)}")
    if name in table:
        return table.index(name) + 1
    raise ValueError(f"unknown {what} '{name}'")


_RECORD_FIELDS = frozenset(
    (
        "kind",
        "action",
        "reset_cause",
        "seq",
        "boot",
        "uptime_ms",
        "flags",
        "heap_free",
        "alloc_size",
        "stack_used",
        "pc",
        "lr",
        "depth",
        "mark",
        "firmware",
        "exc_type",
        "message",
        "raw",
    )
)


class Record:
    """A record as ``failstop.last()``/``records()``/``keeper`` hand it to the program
    (a copy of one valid slot; the attributes of modfailstop.c)."""

    __slots__ = ("_r",)

    def __init__(self, rec: codec.Record) -> None:
        self._r = rec

    def __getattr__(self, name: str) -> Any:
        r = self._r
        if name == "location":
            f = r.location
            return None if f is None else (f.file, f.line or 0, f.function)
        if name == "traceback":
            return [(f.file, f.line or 0, f.function) for f in r.traceback]
        if name in _RECORD_FIELDS:
            return getattr(r, name)
        raise AttributeError(f"'Record' object has no attribute '{name}'")

    def __repr__(self) -> str:
        r = self._r
        text = f"<failstop record #{r.seq} {r.kind} boot {r.boot}"
        f = r.location
        if f is not None:
            text += f" at {f.file}:{f.line or 0} in {f.function}"
        if r.exc_type:
            text += f" {r.exc_type}"
        if r.message:
            text += f": {r.message}"
        return text + ">"


class _Fragile:
    """``with failstop.fragile():`` — an exception escaping the block is a PANIC, but for
    KeyboardInterrupt (a person stopping the program) and GeneratorExit (a generator
    being closed), which pass unchanged."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def __enter__(self) -> _Fragile:
        return self

    def __exit__(self, et: Optional[type], ev: Optional[BaseException], tb: Any) -> Literal[False]:
        if et is None or not isinstance(ev, BaseException) or isinstance(ev, _NOT_FAULTS):
            return False
        rt = self._rt
        rt.fault_stop(
            Kind.PANIC,
            frame=rt.caller(),
            exc=ev,
            exc_type=mp.type_name(ev),
            message=mp.exc_message(ev, rt.res.small_int_bits),
        )


_NOT_FAULTS = (KeyboardInterrupt, GeneratorExit)
_RECOVERABLE = (Kind.OOM, Kind.STACK)


class _Recoverable:
    """``with failstop.recoverable(kind):`` — inside, OOM (or STACK) behaves as stock
    MicroPython and writes no record; the depth counts nesting."""

    def __init__(self, rt: Runtime, kind: int) -> None:
        self._rt = rt
        self._kind = kind

    def __enter__(self) -> _Recoverable:
        depth = self._rt.recoverable
        if depth[self._kind] == 255:
            raise ValueError("recoverable() nested too deep")
        depth[self._kind] += 1
        return self

    def __exit__(self, et: Optional[type], ev: Optional[BaseException], tb: Any) -> Literal[False]:
        depth = self._rt.recoverable
        if depth[self._kind] > 0:
            depth[self._kind] -= 1
        return False


def build_failstop(rt: Runtime) -> types.ModuleType:
    ret = rt.retained
    m = types.ModuleType("failstop")
    fragile_singleton = _Fragile(rt)
    recoverables: dict[int, _Recoverable] = {k: _Recoverable(rt, k) for k in _RECOVERABLE}

    def panic(*args: Any, **kwargs: Any) -> NoReturn:
        """Never returns; any reason is recorded, truncated as needed."""
        # The free heap as the program left it (the board allocates nothing from here on;
        # the simulator's own work below would count).
        free = rt.heap.free()
        reason = args[0] if args else kwargs.get("reason")
        exc_type, message, flags = "", "", 0
        if isinstance(reason, BaseException):
            exc_type = mp.type_name(reason)
            message = mp.exc_message(reason, rt.res.small_int_bits)
        elif type(reason) is str:
            message = reason
        elif reason is not None:
            rt.converting = True
            try:
                message = str(reason)
            except BaseException:
                message = _tname(reason)
                flags |= codec.FLAG_REASON_UNPRINTABLE
            finally:
                rt.converting = False
        rt.fault_stop(
            Kind.PANIC,
            frame=rt.caller(),
            exc_type=exc_type,
            message=message,
            flags=flags,
            heap_free=free,
        )

    def policy(kind: object, action: object = None) -> str:
        k = _lookup(kind, _KIND_NAMES, "fault kind")
        if action is not None:
            a = _lookup(action, _ACTION_NAMES, "action")
            if a == Action.RAISE and k not in _RAISABLE:
                raise ValueError(f"{_KIND_NAMES[k - 1]} cannot be RAISE: it is always fail-stop")
            rt.policies[k] = a
        return _ACTION_NAMES[rt.policy(k) - 1]

    def fragile() -> _Fragile:
        return fragile_singleton

    def recoverable(kind: object) -> _Recoverable:
        k = _lookup(kind, _KIND_NAMES, "fault kind")
        if k not in recoverables:
            raise ValueError(f"{_KIND_NAMES[k - 1]} cannot be recoverable: only OOM and STACK")
        return recoverables[k]

    def last() -> Optional[Record]:
        r = ret.last()
        return None if r is None else Record(r)

    def records() -> list[Record]:
        return [Record(r) for r in ret.records()]

    def clear() -> None:
        ret.clear()

    def dump() -> bytes:
        return ret.dump()

    def keeper(fn: object) -> Optional[Record]:
        if not callable(fn):
            raise TypeError(f"keeper must be callable, not {_tname(fn)}")
        r = ret.last()
        h = ret.hdr
        # Safe mode skips the keeper too; a record the keeper itself caused is not given to it.
        if r is None or r.seq <= h.seen_seq or h.safe_mode or r.flags & codec.FLAG_IN_KEEPER:
            return None
        # Seen before the call: a keeper that crashes is not run again on the next boot.
        h.seen_seq = r.seq
        ret.commit()
        rec = Record(r)
        rt.keeper_active = True
        try:
            fn(rec)
        finally:
            rt.keeper_active = False
        return rec

    def watchdog(timeout_ms: object) -> None:
        if not _is_int(timeout_ms):
            raise TypeError(f"timeout_ms must be an int, not {_tname(timeout_ms)}")
        assert isinstance(timeout_ms, int)
        top = rt.res.wdt_max_ms
        if timeout_ms <= 0 or timeout_ms > top:
            raise ValueError(f"timeout_ms must be 1..{top}")
        rt.clock.wdt_arm(timeout_ms)

    def feed() -> None:
        rt.clock.wdt_feed()

    def mark(*args: object) -> Optional[str]:
        """mark() -> the current tag; mark(tag) sets it, allocating nothing."""
        if len(args) > 1:
            raise TypeError(f"function expected at most 1 arguments, got {len(args)}")
        if not args:
            return ret.mark_get()
        tag = args[0]
        if tag is None:
            ret.mark_set("")
        elif isinstance(tag, str):
            if len(tag.encode("utf-8", "surrogatepass")) > codec.MARK_SIZE:
                raise ValueError(f"mark tag longer than {codec.MARK_SIZE} bytes")
            if rt.inject_mark:
                # _inject("MARK"): the watchdog's early warning lands half way through.
                rt.inject_mark = False
                ret.mark_set_torn(tag)
                rt.fault_stop(
                    Kind.WATCHDOG, frame=rt.caller(), message="watchdog timeout", asynchronous=True
                )
            ret.mark_set(tag)
        else:
            raise TypeError(f"mark tag must be a str or None, not {_tname(tag)}")
        return None

    def reset_cause() -> str:
        return codec.RESET_CAUSES.get(ret.hdr.boot_cause, "unknown")

    def boot_count() -> int:
        return ret.hdr.boot_count

    def safe_mode() -> bool:
        return ret.hdr.safe_mode

    def crash_loop(limit: object = None, window_ms: object = None) -> tuple[int, int]:
        h = ret.hdr
        if limit is not None:
            if not _is_int(limit):
                raise TypeError(f"limit must be an int, not {_tname(limit)}")
            assert isinstance(limit, int)
            if not 1 <= limit <= 254:
                raise ValueError("limit must be 1..254")
            h.loop_limit = limit
        if window_ms is not None:
            if not _is_int(window_ms):
                raise TypeError(f"window_ms must be an int, not {_tname(window_ms)}")
            assert isinstance(window_ms, int)
            if not 1 <= window_ms <= 0x7FFFFFFF:
                raise ValueError("window_ms must be 1..2147483647")
            h.loop_window_ms = window_ms
        ret.commit()
        return (h.loop_limit, h.loop_window_ms)

    def _inject(kind: object, *addr: object) -> None:
        if len(addr) > 1:
            raise TypeError(f"function expected at most 2 arguments, got {1 + len(addr)}")
        if addr and type(kind) is str and kind == "DOUBLE":
            # The next fail-stop fault path stores to addr before its record is committed.
            a = addr[0]
            if not isinstance(a, int):
                raise TypeError(f"can't convert {_tname(a)} to int")
            rt.inject_addr = a & 0xFFFFFFFFFFFFFFFF
            return
        if not addr and type(kind) is str and kind == "MARK":
            # The next mark(tag) is interrupted half way through its copy.
            rt.inject_mark = True
            return
        k = _lookup(kind, _KIND_NAMES, "fault kind")
        if k != Kind.FATAL:
            raise ValueError("only FATAL can be injected")
        # The firmware raises with no NLR handler at all: nlr_jump_fail, a FATAL fault.
        rt.fault_stop(Kind.FATAL, frame=rt.caller(), message="uncaught NLR")

    for fn in (
        panic,
        policy,
        fragile,
        recoverable,
        last,
        records,
        clear,
        dump,
        keeper,
        watchdog,
        feed,
        mark,
        reset_cause,
        boot_count,
        safe_mode,
        crash_loop,
        _inject,
    ):
        setattr(m, fn.__name__, fn)
    m.Record = Record  # type: ignore[attr-defined]
    for name in _KIND_NAMES + _ACTION_NAMES:
        setattr(m, name, name)
    m.FIRMWARE = FIRMWARE  # type: ignore[attr-defined]
    return m


# The simulator's own names in ``machine``: a stub may not replace them.
MACHINE_OWN = ("panic", "reset", "WDT")


def build_machine(rt: Runtime, failstop: types.ModuleType) -> types.ModuleType:
    """``machine``: the simulator's panic, reset and WDT, and the user's stubs
    (``SimDevice(machine_stubs=...)``) for what the board has besides."""
    m = types.ModuleType("machine")

    def reset() -> NoReturn:
        """A reset asked for by the program: the next boot's cause is 'soft'."""
        rt.retained.soft_reset()
        rt.finish("reset", None)

    class WDT:
        """machine.WDT: the same (simulated) hardware watchdog as failstop.watchdog."""

        def __init__(self, id: int = 0, timeout: int = 5000) -> None:
            failstop.watchdog(timeout)

        def feed(self) -> None:
            rt.clock.wdt_feed()

    for name, stub in rt.plan.machine_stubs.items():  # the user's (Pin, I2C, ...)
        setattr(m, name, stub)
    m.panic = failstop.panic  # type: ignore[attr-defined]
    m.reset = reset  # type: ignore[attr-defined]
    m.WDT = WDT  # type: ignore[attr-defined]
    return m


def build_micropython(rt: Runtime) -> types.ModuleType:
    m = types.ModuleType("micropython")

    def const(x: Any) -> Any:
        return x

    def heap_lock() -> None:
        rt.heap.locked += 1

    def heap_unlock() -> int:
        if rt.heap.locked:
            rt.heap.locked -= 1
        return rt.heap.locked

    def heap_locked() -> int:
        return rt.heap.locked

    def mem_info(*args: Any) -> None:
        used = rt.heap.used()
        total = rt.heap.size
        rt.write(f"heap: total {total}, used {used}, free {rt.heap.free()} (simulated)\n")

    def opt_level(*args: Any) -> int:
        return 0

    def alloc_emergency_exception_buf(size: int) -> None:
        return None

    def kbd_intr(ch: int) -> None:
        return None

    def _identity(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    for fn in (
        const,
        heap_lock,
        heap_unlock,
        heap_locked,
        mem_info,
        opt_level,
        alloc_emergency_exception_buf,
        kbd_intr,
    ):
        setattr(m, fn.__name__, fn)
    for name in ("native", "viper", "bytecode"):
        setattr(m, name, _identity)
    return m


def build_time(rt: Runtime) -> types.ModuleType:
    """MicroPython's time on the virtual clock; anything else comes from CPython's."""
    m = types.ModuleType("time")
    epoch = _time.time()  # wall-clock time at the start of the boot
    # MICROPY_PY_TIME_TICKS_PERIOD: the largest positive small int plus one (2**30 on a
    # 32-bit board, 2**62 on the 64-bit unix port).
    period = 1 << (rt.res.small_int_bits - 1)

    def ticks_ms() -> int:
        return (rt.clock.now_ns() // 1_000_000) % period

    def ticks_us() -> int:
        return (rt.clock.now_ns() // 1_000) % period

    def ticks_cpu() -> int:
        return rt.clock.now_ns() % period

    def ticks_add(ticks: int, delta: int) -> int:
        return (ticks + delta) % period

    def ticks_diff(end: int, start: int) -> int:
        half = period // 2
        return ((end - start + half) % period) - half

    def sleep(seconds: float) -> None:
        rt.sleep_ns(int(seconds * 1_000_000_000))

    def sleep_ms(ms: int) -> None:
        rt.sleep_ns(int(ms) * 1_000_000)

    def sleep_us(us: int) -> None:
        rt.sleep_ns(int(us) * 1_000)

    def time() -> int:
        return int(epoch + rt.clock.now_ns() / 1e9)

    def time_ns() -> int:
        return int(epoch * 1e9) + rt.clock.now_ns()

    for fn in (
        ticks_ms,
        ticks_us,
        ticks_cpu,
        ticks_add,
        ticks_diff,
        sleep,
        sleep_ms,
        sleep_us,
        time,
        time_ns,
    ):
        setattr(m, fn.__name__, fn)

    def __getattr__(name: str) -> Any:
        return getattr(_time, name)

    m.__getattr__ = __getattr__  # type: ignore[method-assign]
    return m


class _Memory:
    """``uctypes.bytearray_at(addr, size)`` on a board with no memory behind it: every
    access is a bus fault (HARDFAULT)."""

    def __init__(self, rt: Runtime, addr: int, size: int) -> None:
        self._rt, self._addr, self._size = rt, addr, size

    def __len__(self) -> int:
        return self._size

    def _at(self, index: Any) -> int:
        i = index.start or 0 if isinstance(index, slice) else int(index)
        return self._addr + (i if i >= 0 else self._size + i)

    def __getitem__(self, index: Any) -> NoReturn:
        self._rt.hard_fault(self._at(index), write=False)

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        self._rt.hard_fault(self._at(index), write=True)

    def __iter__(self) -> Iterator[int]:
        self._rt.hard_fault(self._addr, write=False)


def build_uctypes(rt: Runtime) -> types.ModuleType:
    m = types.ModuleType("uctypes")

    def bytearray_at(addr: int, size: int) -> _Memory:
        return _Memory(rt, int(addr), int(size))

    def bytes_at(addr: int, size: int) -> NoReturn:
        rt.hard_fault(int(addr), write=False)

    m.bytearray_at = bytearray_at  # type: ignore[attr-defined]
    m.bytes_at = bytes_at  # type: ignore[attr-defined]
    return m


def install(rt: Runtime) -> None:
    """Put the device modules in place for this boot (this process only)."""
    failstop = build_failstop(rt)
    mods = {
        "failstop": failstop,
        "machine": build_machine(rt, failstop),
        "micropython": build_micropython(rt),
        "time": build_time(rt),
        "uctypes": build_uctypes(rt),
    }
    sys.modules.update(mods)

    def mem_free() -> int:
        free = rt.heap.free()
        return 0x7FFFFFFF if free is None else free

    def mem_alloc() -> int:
        return rt.heap.used()

    gc.mem_free = mem_free  # type: ignore[attr-defined]
    gc.mem_alloc = mem_alloc  # type: ignore[attr-defined]

    def print_exception(exc: BaseException, file: Any = None) -> None:
        out = sys.stdout if file is None else file
        mp.write_traceback(exc, out.write, rt.tracer.is_device_file)

    sys.print_exception = print_exception  # type: ignore[attr-defined]
