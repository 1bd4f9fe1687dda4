"""Allocation points: the bytecode instructions at which the simulator counts, injects
and checks heap allocations (see docs/simulator.md, "Allocation points").

MicroPython fails an allocation inside ``gc_alloc``; CPython gives no such hook to pure
Python code, so the simulator works one level up, on the instructions of the program's
own frames (``sys.settrace`` opcode events). An instruction is

* ``ALWAYS`` if it allocates a new object whatever its operands (building a container,
  string, slice, function or class; comprehension appends; f-string parts; imports;
  generators), on MicroPython as on CPython;
* ``MAY`` if it allocates for some operands only (arithmetic, subscripts, attribute and
  item stores that may grow a container, iterators, and every call).

Injection (``oom_at=k``) counts ALWAYS and MAY instructions, so a sweep over k reaches
every place the program can fail to allocate (and some that cannot fail on MicroPython,
e.g. ``i + 1`` on a small int). A locked heap fails at ALWAYS instructions only."""

from __future__ import annotations

import dis
from types import CodeType

NONE, MAY, ALWAYS = 0, 1, 2

# The CPython versions whose instruction sets are classified below and tested. A newer
# CPython renames and adds instructions (3.13: FORMAT_SIMPLE, CALL_KW, ...; 3.14:
# BINARY_SUBSCR folded into BINARY_OP, BUILD_TEMPLATE, ...): unknown names would count as
# NONE and an OOM sweep would silently reach fewer places, so it is refused instead.
SUPPORTED = ((3, 9), (3, 12))


def unsupported_python(version: tuple[int, ...]) -> str | None:
    """Why the simulator cannot run on CPython ``version``, or None."""
    low, high = SUPPORTED
    if low <= tuple(version[:2]) <= high:
        return None
    return (
        f"the failstop simulator supports CPython {low[0]}.{low[1]} to {high[0]}.{high[1]}, "
        f"not {version[0]}.{version[1]}: its allocation points (where OOM is injected) are "
        "classified per CPython version; run it on a supported Python"
    )


_ALWAYS = {
    "BUILD_TUPLE",
    "BUILD_LIST",
    "BUILD_SET",
    "BUILD_MAP",
    "BUILD_CONST_KEY_MAP",
    "BUILD_STRING",
    "BUILD_SLICE",
    "LIST_APPEND",
    "SET_ADD",
    "MAP_ADD",
    "LIST_EXTEND",
    "SET_UPDATE",
    "DICT_UPDATE",
    "DICT_MERGE",
    "LIST_TO_TUPLE",
    "FORMAT_VALUE",
    "MAKE_FUNCTION",
    "IMPORT_NAME",
    "RETURN_GENERATOR",
    "GEN_START",
    "UNPACK_EX",
    "LOAD_BUILD_CLASS",
}
_MAY = {
    "BINARY_OP",
    "BINARY_SUBSCR",
    "BINARY_SLICE",
    "STORE_SUBSCR",
    "STORE_SLICE",
    "STORE_ATTR",
    "UNARY_NEGATIVE",
    "UNARY_INVERT",
    "UNARY_POSITIVE",
    "GET_ITER",
    "CALL",
    "CALL_FUNCTION",
    "CALL_FUNCTION_KW",
    "CALL_FUNCTION_EX",
    "CALL_METHOD",
    "CALL_INTRINSIC_1",
}


def op_class(name: str) -> int:
    """NONE, MAY or ALWAYS for an instruction name (any CPython 3.9-3.12 spelling)."""
    if name in _ALWAYS:
        return ALWAYS
    if name in _MAY:
        return MAY
    # CPython < 3.11 spells arithmetic BINARY_ADD, INPLACE_ADD, ...
    if name.startswith(("BINARY_", "INPLACE_")) and name not in ("BINARY_OP_INPLACE_ADD",):
        return MAY
    return NONE


_CLASS = bytes(op_class(name) for name in dis.opname)


_TABLES: dict[int, tuple[CodeType, bytes]] = {}


def table(code: CodeType) -> bytes:
    """One byte per byte of ``code.co_code``: the class of the instruction that starts
    there (``table[frame.f_lasti]``). Memoized per code object."""
    hit = _TABLES.get(id(code))
    if hit is not None:
        return hit[1]
    t = _table(code)
    _TABLES[id(code)] = (code, t)  # the code object is kept: its id stays unique
    return t


def prepare(code: CodeType) -> None:
    """Build the tables of ``code`` and of every function nested in it (done before the
    boots fork, so every boot inherits them)."""
    table(code)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            prepare(const)


def _table(code: CodeType) -> bytes:
    out = bytearray(len(code.co_code))
    for ins in dis.get_instructions(code):
        if ins.opname != "EXTENDED_ARG":
            out[ins.offset] = _CLASS[ins.opcode]
    return bytes(out)


def count(code: CodeType) -> int:
    """Allocation points in ``code`` alone (static, not executed)."""
    return sum(1 for b in table(code) if b)


def line_at(code: CodeType, lasti: int) -> int:
    """Source line of the instruction at byte offset ``lasti`` (0 when unknown)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line or 0
    return 0


def offsets_on_line(code: CodeType, line: int) -> frozenset[int]:
    """Byte offsets of the allocation points of ``code`` itself (not of nested functions)
    whose source line is ``line``."""
    t = table(code)
    return frozenset(
        off
        for start, end, ln in code.co_lines()
        if ln == line
        for off in range(start, end)
        if off < len(t) and t[off]
    )


def has_point_on_line(code: CodeType, line: int) -> bool:
    """Whether ``code`` or a function nested in it has an allocation point on ``line``."""
    if offsets_on_line(code, line):
        return True
    return any(
        has_point_on_line(const, line) for const in code.co_consts if isinstance(const, CodeType)
    )
