"""What MicroPython says where CPython says it differently: exception types, messages,
``repr`` of the errors the simulator raises, and the traceback text of the top level
and ``sys.print_exception``.

Only the device-visible surface the simulator needs is covered; everything else keeps
CPython's wording (see docs/simulator.md)."""

from __future__ import annotations

import builtins
import errno
import re
from types import TracebackType
from typing import Callable, Optional

OOM_LOCKED = "memory allocation failed, heap is locked"
OOM_UNKNOWN_SIZE = "memory allocation failed"
RECURSION = "maximum recursion depth exceeded"


def oom_message(size: int) -> str:
    """MicroPython's MemoryError text for a failed allocation of ``size`` bytes."""
    return f"memory allocation failed, allocating {size} bytes"


def mp_repr(exc: BaseException) -> str:
    """``repr`` as MicroPython prints an exception: its name and its args tuple."""
    args = exc.args
    inner = ", ".join(repr(a) for a in args) + ("," if len(args) == 1 else "")
    return f"{type(exc).__name__}({inner})"


class MemoryError(builtins.MemoryError):
    """The MemoryError a fault with the RAISE policy raises: caught by ``except
    MemoryError`` and printed the way MicroPython prints it."""

    def __repr__(self) -> str:
        return mp_repr(self)


class RuntimeError(builtins.RuntimeError):
    """MicroPython's stack-check error: a RuntimeError, not CPython's RecursionError."""

    def __repr__(self) -> str:
        return mp_repr(self)


for _cls in (MemoryError, RuntimeError):
    _cls.__module__ = "builtins"

SIM_ERRORS = (MemoryError, RuntimeError)

# Built-in CPython types MicroPython does not have: the name the device would show.
_TYPE_NAMES = {
    "RecursionError": "RuntimeError",
    "ModuleNotFoundError": "ImportError",
}
_OSERROR_SUBCLASSES = frozenset(
    t.__name__
    for t in vars(builtins).values()
    if isinstance(t, type) and issubclass(t, OSError) and t is not OSError
)


def type_name(exc: BaseException) -> str:
    """The exception type name as MicroPython would report it."""
    t = type(exc)
    name = t.__name__
    if t.__module__ == "builtins":
        if name in _OSERROR_SUBCLASSES:
            return "OSError"
        return _TYPE_NAMES.get(name, name)
    return name


# CPython messages MicroPython words differently (exact text -> MicroPython's text).
_MESSAGES: dict[type, dict[str, str]] = {
    ZeroDivisionError: {
        "division by zero": "divide by zero",
        "integer division or modulo by zero": "divide by zero",
        "integer modulo by zero": "divide by zero",
        "float division by zero": "divide by zero",
        "float modulo": "divide by zero",
        "float divmod()": "divide by zero",
        "float floor division by zero": "divide by zero",
    },
}
_NO_MODULE = re.compile(r"^No module named ('.*')$")


def rewrite_message(exc: BaseException) -> None:
    """Reword a CPython-raised message the way MicroPython words it (in place)."""
    args = exc.args
    if len(args) != 1 or not isinstance(args[0], str):
        return
    table = _MESSAGES.get(type(exc))
    if table is not None:
        new = table.get(args[0])
        if new is not None:
            exc.args = (new,)
        return
    if isinstance(exc, ImportError):
        m = _NO_MODULE.match(args[0])
        if m:
            exc.args = (f"no module named {m.group(1)}",)
            exc.msg = exc.args[0]  # what str() of an ImportError shows


def exc_message(exc: BaseException, small_int_bits: int = 63) -> str:
    """The record message of an exception, as the firmware takes it without running
    Python code: its first argument when that is a str or a small int (``small_int_bits``
    wide, signed: 63 on the unix port, 31 on a 32-bit board), else empty."""
    args = exc.args
    if not args:
        return ""
    val = args[0]
    if type(val) is str:
        return val
    half = 1 << (small_int_bits - 1)
    if type(val) is int and -half <= val < half:
        return str(val)
    return ""


# MicroPython's errno table (py/moderrno.c, MICROPY_PY_ERRNO_LIST): OSError(5, ...) prints
# as "[Errno 5] EIO: ...".
_ERRNO_NAMES = (
    "EPERM",
    "ENOENT",
    "EIO",
    "EBADF",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EEXIST",
    "ENODEV",
    "EISDIR",
    "EINVAL",
    "EOPNOTSUPP",
    "EADDRINUSE",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "ENOTCONN",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
)
ERRNO = {getattr(errno, n): n for n in _ERRNO_NAMES if hasattr(errno, n)}


def write_exception_text(exc: BaseException, write: Callable[[str], object]) -> None:
    """``TypeName: message`` as MicroPython prints an exception (PRINT_EXC), written piece
    by piece: str() of an argument runs the program's code and may raise half way."""
    write(type_name(exc) + ": ")
    args = exc.args
    if not args:
        return
    if isinstance(exc, OSError) and 0 < len(args) < 3 and type(args[0]) is int:
        name = ERRNO.get(args[0])
        if name is not None:
            write(f"[Errno {args[0]}] {name}")
            if len(args) > 1:
                write(": " + str(args[1]))
            return
    if len(args) == 1:
        write(str(args[0]))
        return
    write(repr(tuple(args)))


def traceback_entries(
    tb: Optional[TracebackType], is_device: Callable[[str], bool]
) -> list[tuple[str, int, str]]:
    """(file, line, function) of the program's frames in a traceback, outermost first."""
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if is_device(code.co_filename):
            out.append((code.co_filename, tb.tb_lineno or 0, code.co_name))
        tb = tb.tb_next
    return out


def write_traceback(
    exc: BaseException, write: Callable[[str], object], is_device: Callable[[str], bool]
) -> None:
    """The text MicroPython prints for an exception that reaches the top level (or for
    ``sys.print_exception``): the traceback of the program's frames, then the exception."""
    entries = traceback_entries(exc.__traceback__, is_device)
    if entries:
        write("Traceback (most recent call last):\n")
        for file, line, func in entries:
            write(f'  File "{file}", line {line}, in {func}\n')
    write_exception_text(exc, write)
    write("\n")
