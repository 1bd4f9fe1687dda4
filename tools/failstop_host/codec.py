"""Decode and encode the failstop retained region (docs/record-format.md, format version 1).

The region is a 64-byte header followed by ``nslots`` slots of 320 bytes. Every slot holds one
fault record protected by magic, version and CRC32. A slot is accepted only when all three are
right; anything else is reported as an :class:`InvalidSlot` with the reason.

The encoder writes exactly the bytes the firmware writes, so a simulator can produce regions
that the firmware, ``failstop.last()`` and this decoder all agree on.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from .textsafe import escape

# --- geometry -----------------------------------------------------------------------------

FORMAT_VERSION = 1  # slots
HEADER_VERSION = 2  # 2: the mark in its own CRC'd block (1 is still decoded)
HEADER_MAGIC = b"FSRH"
SLOT_MAGIC = b"FSRC"
HEADER_SIZE = 64
SLOT_SIZE = 320
DEFAULT_NSLOTS = 3
NFRAMES = 3
FRAME_SIZE = 48
UNKNOWN_HEAP = 0xFFFFFFFF

MARK_SIZE = 16
FIRMWARE_SIZE = 16
EXC_TYPE_SIZE = 24
MESSAGE_SIZE = 64
FILE_SIZE = 24
FUNCTION_SIZE = 20

# Header v1: magic version nslots slot_size boot_count next_seq seen_seq pending_cause
#            boot_cause loop_count loop_limit loop_window_ms loop_uptime_ms mark state reserved crc
_HEADER_V1 = struct.Struct("<4sBBHIIIBBBBII16sB11sI")
# Header v2: the same fields up to loop_uptime_ms, then state reserved crc (over bytes 0..39),
#            then the mark block: mark mark_crc (over the 16 mark bytes)
_HEADER = struct.Struct("<4sBBHIIIBBBBIIB7sI16sI")
_HEADER_V2_CRC_END = 40
_MARK_START = 44
# Slot: magic version kind action reset_cause seq boot uptime_ms flags heap_free alloc_size
#       stack_used pc lr nframes depth reserved mark firmware exc_type message frames reserved crc
_SLOT = struct.Struct("<4sBBBBIIIIIIIIIBBH16s16s24s64s144sII")
_FRAME = struct.Struct("<I24s20s")
_HEADER_CRC_END = 60
_SLOT_CRC_END = 316

assert _HEADER.size == HEADER_SIZE == _HEADER_V1.size
assert _SLOT.size == SLOT_SIZE
assert _FRAME.size == FRAME_SIZE

# --- codes --------------------------------------------------------------------------------


class Kind(enum.IntEnum):
    """A fault kind: its code in the record and its name (FAILSTOP_KIND_* in
    modules/failstop/failstop.h). The one spelling the codec, the CLI and the simulator use."""

    PANIC = 1
    OOM = 2
    STACK = 3
    UNHANDLED = 4
    WATCHDOG = 5
    HARDFAULT = 6
    FATAL = 7


class Action(enum.IntEnum):
    """What a fault does (FAILSTOP_ACTION_*)."""

    REBOOT = 1
    HALT = 2
    RAISE = 3


# Code -> name, for decoding (a code outside these is a newer firmware's: "KIND_9").
KINDS: dict[int, str] = {k.value: k.name for k in Kind}
ACTIONS: dict[int, str] = {a.value: a.name for a in Action}
RESET_CAUSES: dict[int, str] = {
    0: "unknown",
    1: "power_on",
    2: "fault",
    3: "watchdog",
    4: "soft",
    5: "pin",
    6: "brownout",
}

FLAG_DOUBLE_FAULT = 1 << 0
FLAG_MSG_TRUNCATED = 1 << 1
FLAG_TB_TRUNCATED = 1 << 2
FLAG_NAME_TRUNCATED = 1 << 3
FLAG_NO_PYTHON_FRAME = 1 << 4
FLAG_HEAP_LOCKED = 1 << 5
FLAG_POSTHOC = 1 << 6
FLAG_REASON_UNPRINTABLE = 1 << 7
FLAG_IN_KEEPER = 1 << 8

FLAGS: dict[str, int] = {
    "DOUBLE_FAULT": FLAG_DOUBLE_FAULT,
    "MSG_TRUNCATED": FLAG_MSG_TRUNCATED,
    "TB_TRUNCATED": FLAG_TB_TRUNCATED,
    "NAME_TRUNCATED": FLAG_NAME_TRUNCATED,
    "NO_PYTHON_FRAME": FLAG_NO_PYTHON_FRAME,
    "HEAP_LOCKED": FLAG_HEAP_LOCKED,
    "POSTHOC": FLAG_POSTHOC,
    "REASON_UNPRINTABLE": FLAG_REASON_UNPRINTABLE,
    "IN_KEEPER": FLAG_IN_KEEPER,
}

STATE_SAFE_MODE = 1 << 0

# Names for codes outside the tables (a newer firmware): "KIND_9", "ACTION_9", "cause_9".
_UNKNOWN_PREFIX = {"kind": "KIND_", "action": "ACTION_", "reset cause": "cause_"}

# Reasons an InvalidSlot (or the header) can carry.
EMPTY = "empty"
BAD_MAGIC = "bad magic"
BAD_VERSION = "bad version"
BAD_CRC = "bad crc"
BAD_GEOMETRY = "bad geometry"  # header only: nslots 0 or slot_size other than 320

CodeLike = Union[str, int]


def _name(table: dict[int, str], what: str, code: int) -> str:
    return table.get(code, f"{_UNKNOWN_PREFIX[what]}{code}")


def _code(table: dict[int, str], what: str, value: CodeLike) -> int:
    if isinstance(value, int):
        code = value
    else:
        for c, n in table.items():
            if n == value:
                return c
        prefix = _UNKNOWN_PREFIX[what]
        if value.startswith(prefix) and value[len(prefix) :].isdigit():
            code = int(value[len(prefix) :])
        else:
            raise ValueError(f"unknown {what} {value!r}")
    if not 0 <= code <= 0xFF:
        raise ValueError(f"{what} code {code} out of range 0..255")
    return code


def kind_code(kind: CodeLike) -> int:
    """Numeric code of a fault kind given by name (``"OOM"``) or code."""
    return _code(KINDS, "kind", kind)


def action_code(action: CodeLike) -> int:
    """Numeric code of an action given by name (``"REBOOT"``) or code."""
    return _code(ACTIONS, "action", action)


def reset_cause_code(cause: CodeLike) -> int:
    """Numeric code of a reset cause given by name (``"power_on"``) or code."""
    return _code(RESET_CAUSES, "reset cause", cause)


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in ``flags``; unknown bits appear as ``BIT_n``."""
    names = []
    for bit in range(32):
        mask = 1 << bit
        if flags & mask:
            known = [n for n, m in FLAGS.items() if m == mask]
            names.append(known[0] if known else f"BIT_{bit}")
    return names


def flags_value(flags: Union[int, Iterable[str]]) -> int:
    """Turn a flag word or an iterable of flag names into the flag word."""
    if isinstance(flags, int):
        if not 0 <= flags <= 0xFFFFFFFF:
            raise ValueError(f"flags {flags:#x} out of range")
        return flags
    value = 0
    for name in flags:
        if name in FLAGS:
            value |= FLAGS[name]
        elif name.startswith("BIT_") and name[4:].isdigit() and int(name[4:]) < 32:
            value |= 1 << int(name[4:])
        else:
            raise ValueError(f"unknown flag {name!r}")
    return value


# --- text fields --------------------------------------------------------------------------


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "replace")


def fit_head(s: str, size: int) -> tuple[bytes, bool]:
    """UTF-8 bytes of ``s`` cut to ``size`` at a character boundary, keeping the head."""
    b = _utf8(s)
    if len(b) <= size:
        return b, False
    cut = size
    while cut > 0 and (b[cut] & 0xC0) == 0x80:
        cut -= 1
    return b[:cut], True


def fit_tail(s: str, size: int) -> tuple[bytes, bool]:
    """UTF-8 bytes of ``s`` cut to ``size`` at a character boundary, keeping the tail."""
    b = _utf8(s)
    if len(b) <= size:
        return b, False
    start = len(b) - size
    while start < len(b) and (b[start] & 0xC0) == 0x80:
        start += 1
    return b[start:], True


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pad(b: bytes, size: int) -> bytes:
    return b + b"\0" * (size - len(b))


def _u32(name: str, value: int) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} {value} out of range 0..0xFFFFFFFF")
    return value


def _u8(name: str, value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} {value} out of range 0..255")
    return value


def _crc(data: bytes) -> int:
    return binascii.crc32(data) & 0xFFFFFFFF


# --- data model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One Python frame: ``line`` is None when unknown (stored as 0)."""

    file: str
    line: Optional[int]
    function: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function}

    def __str__(self) -> str:
        line = "?" if self.line is None else str(self.line)
        return f"{self.file}:{line} in {self.function}"


FrameLike = Union[Frame, tuple[str, Optional[int], str]]


@dataclass(frozen=True)
class Record:
    """One fault record (a valid slot). Text fields are decoded, NUL padding removed."""

    kind: str
    seq: int
    action: str = "REBOOT"
    reset_cause: str = "unknown"
    boot: int = 1
    uptime_ms: int = 0
    flags: int = 0
    heap_free: Optional[int] = None
    alloc_size: int = 0
    stack_used: int = 0
    pc: int = 0
    lr: int = 0
    depth: int = 0
    mark: str = ""
    firmware: str = ""
    exc_type: str = ""
    message: str = ""
    traceback: tuple[Frame, ...] = ()
    slot: int = -1
    raw: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    @property
    def flag_names(self) -> list[str]:
        return flag_names(self.flags)

    @property
    def location(self) -> Optional[Frame]:
        return self.traceback[0] if self.traceback else None

    def to_json(self) -> dict[str, Any]:
        """The record as a dict of plain JSON types."""
        loc = self.location
        return {
            "seq": self.seq,
            "kind": self.kind,
            "action": self.action,
            "reset_cause": self.reset_cause,
            "boot": self.boot,
            "uptime_ms": self.uptime_ms,
            "flags": self.flags,
            "flag_names": self.flag_names,
            "heap_free": self.heap_free,
            "alloc_size": self.alloc_size,
            "stack_used": self.stack_used,
            "pc": self.pc,
            "lr": self.lr,
            "depth": self.depth,
            "mark": self.mark,
            "firmware": self.firmware,
            "exc_type": self.exc_type,
            "message": self.message,
            "location": loc.to_json() if loc else None,
            "traceback": [f.to_json() for f in self.traceback],
            "slot": self.slot,
        }

    def encode(self) -> bytes:
        """The exact 320 slot bytes for this record's fields (no flags or depth added)."""
        return encode_slot(
            kind=self.kind,
            seq=self.seq,
            action=self.action,
            reset_cause=self.reset_cause,
            boot=self.boot,
            uptime_ms=self.uptime_ms,
            flags=self.flags,
            heap_free=self.heap_free,
            alloc_size=self.alloc_size,
            stack_used=self.stack_used,
            pc=self.pc,
            lr=self.lr,
            depth=self.depth,
            mark=self.mark,
            firmware=self.firmware,
            exc_type=self.exc_type,
            message=self.message,
            traceback=self.traceback,
            auto_flags=False,
        )


@dataclass(frozen=True)
class InvalidSlot:
    """A slot that is not a valid record; ``reason`` is one of empty, bad magic, bad version,
    bad crc."""

    slot: int
    reason: str


@dataclass(frozen=True)
class Header:
    """A valid region header."""

    nslots: int
    slot_size: int
    boot_count: int
    next_seq: int
    seen_seq: int
    pending_cause: Optional[str]  # None: no reset pending
    boot_cause: str
    loop_count: int
    loop_limit: int
    loop_window_ms: int
    loop_uptime_ms: int
    mark: str
    state: int
    version: int = HEADER_VERSION

    @property
    def safe_mode(self) -> bool:
        return bool(self.state & STATE_SAFE_MODE)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["safe_mode"] = self.safe_mode
        return d


@dataclass(frozen=True)
class Region:
    """A decoded region. ``header`` is None when the header is invalid (``header_error`` says
    why); the slots are then decoded with the default geometry."""

    header: Optional[Header]
    header_error: Optional[str]
    nslots: int
    slot_size: int
    records: tuple[Record, ...]  # valid records, oldest first (by seq)
    invalid: tuple[InvalidSlot, ...]  # invalid slots, by slot index
    raw: bytes = dataclasses.field(default=b"", repr=False, compare=False)  # the region's bytes

    @property
    def newest(self) -> Optional[Record]:
        return self.records[-1] if self.records else None

    @property
    def size(self) -> int:
        return HEADER_SIZE + self.nslots * self.slot_size


# --- decoding -----------------------------------------------------------------------------


def _blank(data: bytes) -> bool:
    return data.count(0) == len(data) or data.count(0xFF) == len(data)


def check_slot(data: bytes) -> Optional[str]:
    """Why a 320-byte slot is invalid, or None when it is a valid record."""
    if len(data) != SLOT_SIZE:
        raise ValueError(f"a slot is {SLOT_SIZE} bytes, got {len(data)}")
    if _blank(data):
        return EMPTY
    if data[0:4] != SLOT_MAGIC:
        return BAD_MAGIC
    if data[4] != FORMAT_VERSION:
        return BAD_VERSION
    stored = int.from_bytes(data[_SLOT_CRC_END:SLOT_SIZE], "little")
    if _crc(data[:_SLOT_CRC_END]) != stored:
        return BAD_CRC
    return None


def decode_slot(data: bytes, slot: int = -1) -> Union[Record, InvalidSlot]:
    """Decode one 320-byte slot: a Record when magic, version and CRC are right, else an
    InvalidSlot. ValueError only when ``data`` is not 320 bytes long."""
    data = bytes(data)
    reason = check_slot(data)
    if reason is not None:
        return InvalidSlot(slot, reason)
    (
        _magic,
        _version,
        kind,
        action,
        reset_cause,
        seq,
        boot,
        uptime_ms,
        flags,
        heap_free,
        alloc_size,
        stack_used,
        pc,
        lr,
        nframes,
        depth,
        _reserved0,
        mark,
        firmware,
        exc_type,
        message,
        frames_raw,
        _reserved1,
        _crc_stored,
    ) = _SLOT.unpack(data)
    frames = []
    for i in range(min(nframes, NFRAMES)):
        line, file, function = _FRAME.unpack_from(frames_raw, i * FRAME_SIZE)
        frames.append(Frame(_text(file), line or None, _text(function)))
    return Record(
        kind=_name(KINDS, "kind", kind),
        seq=seq,
        action=_name(ACTIONS, "action", action),
        reset_cause=_name(RESET_CAUSES, "reset cause", reset_cause),
        boot=boot,
        uptime_ms=uptime_ms,
        flags=flags,
        heap_free=None if heap_free == UNKNOWN_HEAP else heap_free,
        alloc_size=alloc_size,
        stack_used=stack_used,
        pc=pc,
        lr=lr,
        depth=depth,
        mark=_text(mark),
        firmware=_text(firmware),
        exc_type=_text(exc_type),
        message=_text(message),
        traceback=tuple(frames),
        slot=slot,
        raw=data,
    )


def decode_header(data: bytes) -> Union[Header, str]:
    """Decode the 64-byte header: a Header, or the reason it is invalid (empty, bad magic,
    bad version, bad crc, bad geometry)."""
    data = bytes(data)
    if len(data) != HEADER_SIZE:
        raise ValueError(f"the header is {HEADER_SIZE} bytes, got {len(data)}")
    if _blank(data):
        return EMPTY
    if data[0:4] != HEADER_MAGIC:
        return BAD_MAGIC
    # The fields both versions share come first, in the same order; v2 moved the mark out
    # of the header's CRC into a block of its own at the end.
    if data[4] == 1:
        *common, mark, state, _reserved, crc = _HEADER_V1.unpack(data)
        if _crc(data[:_HEADER_CRC_END]) != crc:
            return BAD_CRC
    elif data[4] == HEADER_VERSION:
        *common, state, _reserved, crc, mark, mark_crc = _HEADER.unpack(data)
        if _crc(data[:_HEADER_V2_CRC_END]) != crc:
            return BAD_CRC
        if _crc(mark) != mark_crc:
            mark = b""  # a torn mark update: the mark is lost, nothing else
    else:
        return BAD_VERSION
    (
        _magic,
        version,
        nslots,
        slot_size,
        boot_count,
        next_seq,
        seen_seq,
        pending_cause,
        boot_cause,
        loop_count,
        loop_limit,
        loop_window_ms,
        loop_uptime_ms,
    ) = common
    if nslots == 0 or slot_size != SLOT_SIZE:
        return BAD_GEOMETRY
    return Header(
        nslots=nslots,
        slot_size=slot_size,
        boot_count=boot_count,
        next_seq=next_seq,
        seen_seq=seen_seq,
        pending_cause=(
            None if pending_cause == 0 else _name(RESET_CAUSES, "reset cause", pending_cause)
        ),
        boot_cause=_name(RESET_CAUSES, "reset cause", boot_cause),
        loop_count=loop_count,
        loop_limit=loop_limit,
        loop_window_ms=loop_window_ms,
        loop_uptime_ms=loop_uptime_ms,
        mark=_text(mark),
        state=state,
        version=version,
    )


def decode_region(data: bytes) -> Region:
    """Decode a whole retained region (header + slots).

    Bytes after the region (e.g. a page-sized file) are ignored. When the header is invalid
    the slots are still decoded: with 320-byte slots and as many slots as the length holds
    exactly, or the default 3 slots. Raises ValueError, and nothing else, when the data is
    too short to hold a region.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"region data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE + SLOT_SIZE:
        raise ValueError(
            f"too short for a failstop region: {len(data)} bytes "
            f"(a region is {HEADER_SIZE} header bytes + {SLOT_SIZE} bytes per slot, "
            f"{HEADER_SIZE + DEFAULT_NSLOTS * SLOT_SIZE} with the default {DEFAULT_NSLOTS} slots)"
        )
    decoded = decode_header(data[:HEADER_SIZE])
    if isinstance(decoded, Header):
        header: Optional[Header] = decoded
        header_error: Optional[str] = None
        nslots = decoded.nslots
        need = HEADER_SIZE + nslots * SLOT_SIZE
        if len(data) < need:
            raise ValueError(
                f"truncated region: the header says {nslots} slots ({need} bytes), "
                f"got {len(data)} bytes"
            )
    else:
        header, header_error = None, decoded
        body = len(data) - HEADER_SIZE
        nslots = body // SLOT_SIZE if body % SLOT_SIZE == 0 and body // SLOT_SIZE <= 255 else 0
        if nslots == 0:
            nslots = DEFAULT_NSLOTS
        need = HEADER_SIZE + nslots * SLOT_SIZE
        if len(data) < need:
            raise ValueError(
                f"too short for a failstop region: {len(data)} bytes and no valid header "
                f"(the default geometry needs {need} bytes)"
            )
    records: list[Record] = []
    invalid: list[InvalidSlot] = []
    for i in range(nslots):
        start = HEADER_SIZE + i * SLOT_SIZE
        item = decode_slot(data[start : start + SLOT_SIZE], slot=i)
        if isinstance(item, Record):
            records.append(item)
        else:
            invalid.append(item)
    records.sort(key=lambda r: (r.seq, r.slot))
    return Region(
        header=header,
        header_error=header_error,
        nslots=nslots,
        slot_size=SLOT_SIZE,
        records=tuple(records),
        invalid=tuple(invalid),
        raw=data[:need],
    )


# --- encoding -----------------------------------------------------------------------------


def _as_frame(f: FrameLike) -> Frame:
    if isinstance(f, Frame):
        return f
    file, line, function = f
    return Frame(file, line, function)


def encode_slot(
    *,
    kind: CodeLike,
    seq: int,
    action: CodeLike = "REBOOT",
    reset_cause: CodeLike = "unknown",
    boot: int = 1,
    uptime_ms: int = 0,
    flags: Union[int, Iterable[str]] = 0,
    heap_free: Optional[int] = None,
    alloc_size: int = 0,
    stack_used: int = 0,
    pc: int = 0,
    lr: int = 0,
    depth: Optional[int] = None,
    mark: str = "",
    firmware: str = "",
    exc_type: str = "",
    message: str = "",
    traceback: Sequence[FrameLike] = (),
    auto_flags: bool = True,
) -> bytes:
    """The 320 bytes the firmware writes for one record.

    Text is UTF-8, NUL padded; too-long text is cut at a character boundary (a file path keeps
    its tail, everything else its head). ``traceback`` is innermost first; only the first
    ``NFRAMES`` (3) frames are stored. ``depth`` defaults to the number of frames given
    (saturating at 255).
    With ``auto_flags`` (the default) the firmware's flags are added as the firmware sets them:
    MSG_TRUNCATED, NAME_TRUNCATED (file, function or exception type cut) and TB_TRUNCATED
    (more than ``NFRAMES`` frames active).
    """
    frames = [_as_frame(f) for f in traceback]
    flag_word = flags_value(flags)
    if depth is None:
        depth = min(len(frames), 255)
    _u8("depth", depth)
    mark_b, _ = fit_head(mark, MARK_SIZE)
    firmware_b, _ = fit_head(firmware, FIRMWARE_SIZE)
    exc_b, exc_cut = fit_head(exc_type, EXC_TYPE_SIZE)
    msg_b, msg_cut = fit_head(message, MESSAGE_SIZE)
    name_cut = exc_cut
    frames_raw = b""
    for f in frames[:NFRAMES]:
        file_b, file_cut = fit_tail(f.file, FILE_SIZE)
        func_b, func_cut = fit_head(f.function, FUNCTION_SIZE)
        name_cut = name_cut or file_cut or func_cut
        line = 0 if f.line is None else _u32("line", f.line)
        frames_raw += _FRAME.pack(line, file_b, func_b)
    frames_raw = _pad(frames_raw, NFRAMES * FRAME_SIZE)
    if auto_flags:
        if msg_cut:
            flag_word |= FLAG_MSG_TRUNCATED
        if name_cut:
            flag_word |= FLAG_NAME_TRUNCATED
        if len(frames) > NFRAMES or depth > NFRAMES:
            flag_word |= FLAG_TB_TRUNCATED
    body = _SLOT.pack(
        SLOT_MAGIC,
        FORMAT_VERSION,
        kind_code(kind),
        action_code(action),
        reset_cause_code(reset_cause),
        _u32("seq", seq),
        _u32("boot", boot),
        _u32("uptime_ms", uptime_ms),
        flag_word,
        UNKNOWN_HEAP if heap_free is None else _u32("heap_free", heap_free),
        _u32("alloc_size", alloc_size),
        _u32("stack_used", stack_used),
        _u32("pc", pc),
        _u32("lr", lr),
        min(len(frames), NFRAMES),
        depth,
        0,
        mark_b,
        firmware_b,
        exc_b,
        msg_b,
        frames_raw,
        0,
        0,
    )
    return body[:_SLOT_CRC_END] + struct.pack("<I", _crc(body[:_SLOT_CRC_END]))


def encode_header(
    *,
    nslots: int = DEFAULT_NSLOTS,
    boot_count: int = 1,
    next_seq: int = 1,
    seen_seq: int = 0,
    pending_cause: Optional[CodeLike] = None,
    boot_cause: CodeLike = "power_on",
    loop_count: int = 0,
    loop_limit: int = 3,
    loop_window_ms: int = 60000,
    loop_uptime_ms: int = 0,
    mark: str = "",
    state: int = 0,
    slot_size: int = SLOT_SIZE,
) -> bytes:
    """The 64 header bytes the firmware writes (defaults: a fresh region, first boot)."""
    mark_b, _ = fit_head(mark, MARK_SIZE)
    body = _HEADER.pack(
        HEADER_MAGIC,
        HEADER_VERSION,
        _u8("nslots", nslots),
        slot_size,
        _u32("boot_count", boot_count),
        _u32("next_seq", next_seq),
        _u32("seen_seq", seen_seq),
        0 if pending_cause is None else reset_cause_code(pending_cause),
        reset_cause_code(boot_cause),
        _u8("loop_count", loop_count),
        _u8("loop_limit", loop_limit),
        _u32("loop_window_ms", loop_window_ms),
        _u32("loop_uptime_ms", loop_uptime_ms),
        _u8("state", state),
        b"",
        0,
        b"",
        0,
    )
    head = body[:_HEADER_V2_CRC_END]
    return head + struct.pack("<I", _crc(head)) + encode_mark(mark_b)


def encode_mark(mark: Union[str, bytes]) -> bytes:
    """The 20-byte mark block at header offset 44: 16 NUL-padded bytes and their CRC32."""
    mark_b = fit_head(mark, MARK_SIZE)[0] if isinstance(mark, str) else bytes(mark)
    mark_b = mark_b.ljust(MARK_SIZE, b"\0")
    return mark_b + struct.pack("<I", _crc(mark_b))


def encode_region(
    records: Iterable[Union[Record, bytes]] = (),
    *,
    nslots: int = DEFAULT_NSLOTS,
    header: Optional[bytes] = None,
    **header_fields: Any,
) -> bytes:
    """A whole region: the header followed by ``nslots`` slots.

    Each record goes to slot ``seq % nslots`` (a later record with the same slot replaces an
    earlier one): a fixed placement for building test regions. The firmware itself puts a
    record into an invalid slot, else the oldest (docs/record-format.md). A record may be a
    Record or 320 slot bytes from :func:`encode_slot`. Slots without a record are zero.
    ``header`` gives the 64 header bytes as they are; otherwise they are built by
    :func:`encode_header` from ``header_fields``, with ``next_seq`` defaulting to one after the
    highest record.
    """
    if not 1 <= nslots <= 255:
        raise ValueError(f"nslots {nslots} out of range 1..255")
    slots = [bytes(SLOT_SIZE)] * nslots
    highest = 0
    for rec in records:
        raw = rec.encode() if isinstance(rec, Record) else bytes(rec)
        if len(raw) != SLOT_SIZE:
            raise ValueError(f"a slot is {SLOT_SIZE} bytes, got {len(raw)}")
        seq = int.from_bytes(raw[8:12], "little")
        slots[seq % nslots] = raw
        highest = max(highest, seq)
    if header is None:
        header_fields.setdefault("next_seq", highest + 1)
        header = encode_header(nslots=nslots, **header_fields)
    elif header_fields:
        raise ValueError("pass either header bytes or header fields, not both")
    if len(header) != HEADER_SIZE:
        raise ValueError(f"the header is {HEADER_SIZE} bytes, got {len(header)}")
    return bytes(header) + b"".join(slots)


# --- human report -------------------------------------------------------------------------


def shown_message(rec: Record) -> str:
    """The record's message as reports show it. A lean build's OOM record carries none
    (MICROPY_FAILSTOP_OOM_TEXT off): MicroPython's own text, from alloc_size and the flag."""
    if rec.message or rec.kind != "OOM":
        return rec.message
    if rec.flags & FLAG_HEAP_LOCKED:
        return "memory allocation failed, heap is locked"
    return f"memory allocation failed, allocating {rec.alloc_size} bytes"


def format_record(rec: Record, symbolize: Optional[Callable[[int, bool], str]] = None) -> str:
    """A short human report of one record; every device string is escaped. With
    ``symbolize(address, is_return_address)`` (``--elf``), pc and lr get a line each:
    ``pc 0x…  function (file.c:line)``."""
    e = escape
    lines = [
        f"#{rec.seq} {e(rec.kind)} ({e(rec.action)}) boot {rec.boot}, "
        f"{rec.uptime_ms} ms after reset (reset cause: {e(rec.reset_cause)})"
    ]
    for i, f in enumerate(rec.traceback):
        line = "?" if f.line is None else str(f.line)
        prefix = "  at " if i == 0 else "     "
        lines.append(f"{prefix}{e(f.file)}:{line} in {e(f.function)}")
    shown = len(rec.traceback)
    if rec.depth > shown and shown:
        lines.append(f"     ... {rec.depth - shown} more of {rec.depth} frames")
    if not rec.traceback and rec.flags & FLAG_NO_PYTHON_FRAME:
        lines.append("  no Python frame was active")
    message = shown_message(rec)
    if rec.exc_type and message:
        lines.append(f"  {e(rec.exc_type)}: {e(message)}")
    elif rec.exc_type or message:
        lines.append(f"  {e(rec.exc_type or message)}")
    heap = "unknown" if rec.heap_free is None else f"{rec.heap_free} B"
    mem = [f"heap free {heap}"]
    if rec.alloc_size or rec.kind == "OOM":
        mem.append(f"allocation {rec.alloc_size} B")
    mem.append(f"stack used {rec.stack_used} B")
    lines.append("  " + ", ".join(mem))
    if (rec.pc or rec.lr) and symbolize is not None:
        lines.append(f"  pc 0x{rec.pc:08x}  {symbolize(rec.pc, False)}")
        lines.append(f"  lr 0x{rec.lr:08x}  {symbolize(rec.lr, True)}")
    elif rec.pc or rec.lr:
        lines.append(f"  pc 0x{rec.pc:08x}, lr 0x{rec.lr:08x}")
    tail = []
    if rec.mark:
        tail.append(f"mark '{e(rec.mark)}'")
    if rec.firmware:
        tail.append(f"firmware {e(rec.firmware)}")
    if rec.flags:
        tail.append("flags " + " ".join(rec.flag_names))
    if tail:
        lines.append("  " + ", ".join(tail))
    return "\n".join(lines)


def format_header(header: Header) -> str:
    """One line about the header state (boot count, next seq, safe mode, crash loop)."""
    pending = header.pending_cause or "none"
    safe = ", SAFE MODE" if header.safe_mode else ""
    return (
        f"boot {header.boot_count} (cause: {escape(header.boot_cause)}), next seq "
        f"{header.next_seq}, seen seq {header.seen_seq}, pending reset: {escape(pending)}, "
        f"crash loop {header.loop_count}/{header.loop_limit} in {header.loop_window_ms} ms"
        f"{safe}"
    )


def region_json(region: Region) -> dict[str, Any]:
    """What the region says besides its records: the header (boot count, crash-loop state,
    safe mode; None when invalid, ``header_error`` then says why), the geometry, how many
    valid records, and every slot that holds none (``empty`` or why it is not a record)."""
    return {
        "header": None if region.header is None else region.header.to_json(),
        "header_error": region.header_error,
        "nslots": region.nslots,
        "slot_size": region.slot_size,
        "records": len(region.records),
        "invalid": [{"slot": bad.slot, "reason": bad.reason} for bad in region.invalid],
    }


def format_region(region: Region) -> str:
    """One line about the region: its header's state and its slots."""
    if region.header is None:
        head = f"header invalid ({escape(region.header_error or '')})"
    else:
        head = format_header(region.header)
    empty = sum(1 for bad in region.invalid if bad.reason == EMPTY)
    broken = len(region.invalid) - empty
    slots = f"{len(region.records)} of {region.nslots} slots hold records, {empty} empty"
    if broken:
        slots += f", {broken} invalid"
    return f"region: {head}; {slots}"
