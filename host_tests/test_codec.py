"""Tests of the region codec against docs/record-format.md (format version 1)."""

from __future__ import annotations

import binascii
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failstop_host import codec
from failstop_host.codec import (
    FLAG_HEAP_LOCKED,
    FLAG_MSG_TRUNCATED,
    FLAG_NAME_TRUNCATED,
    FLAG_NO_PYTHON_FRAME,
    FLAG_TB_TRUNCATED,
    HEADER_SIZE,
    SLOT_SIZE,
    Frame,
    InvalidSlot,
    Record,
    decode_header,
    decode_region,
    decode_slot,
    encode_header,
    encode_region,
    encode_slot,
    format_record,
)
from failstop_host.fuzz import FuzzStats, check, long_fuzz, sample_regions

FW = "1.25.0+fs0.1.0"


def oom(seq: int = 3, **kw: object) -> bytes:
    fields: dict[str, object] = dict(
        kind="OOM",
        seq=seq,
        action="REBOOT",
        reset_cause="power_on",
        boot=2,
        uptime_ms=1234,
        heap_free=1024,
        alloc_size=1000000,
        stack_used=800,
        mark="commit",
        firmware=FW,
        exc_type="MemoryError",
        message="memory allocation failed, allocating 1000000 bytes",
        traceback=[
            ("purse.py", 23, "deposit"),
            ("purse.py", 40, "main"),
            ("purse.py", 44, "<module>"),
        ],
    )
    fields.update(kw)
    return encode_slot(**fields)  # type: ignore[arg-type]


def slot_of(region: bytes, i: int) -> bytes:
    return region[HEADER_SIZE + i * SLOT_SIZE : HEADER_SIZE + (i + 1) * SLOT_SIZE]


def with_slot(region: bytes, i: int, raw: bytes) -> bytes:
    start = HEADER_SIZE + i * SLOT_SIZE
    return region[:start] + raw + region[start + SLOT_SIZE :]


# --- byte layout, checked field by field against the document ------------------------------


def test_crc_is_ieee_reflected() -> None:
    # The check value of CRC-32/ISO-HDLC, which the document specifies.
    assert binascii.crc32(b"123456789") == 0xCBF43926


def test_slot_layout_matches_document() -> None:
    raw = encode_slot(
        kind="HARDFAULT",
        seq=0x01020304,
        action="HALT",
        reset_cause="watchdog",
        boot=7,
        uptime_ms=99,
        flags=0x81,
        heap_free=None,
        alloc_size=5,
        stack_used=6,
        pc=0x08001234,
        lr=0x08005679,
        depth=9,
        mark="M",
        firmware="F",
        exc_type="T",
        message="msg",
        traceback=[("a.py", 11, "fa"), ("b.py", 22, "fb")],
        auto_flags=False,
    )
    assert len(raw) == 320
    u32 = lambda off: struct.unpack_from("<I", raw, off)[0]  # noqa: E731
    assert raw[0:4] == b"FSRC"
    assert raw[4] == 1
    assert (raw[5], raw[6], raw[7]) == (6, 2, 3)
    assert u32(8) == 0x01020304 and raw[8] == 0x04  # little-endian
    assert (u32(12), u32(16), u32(20)) == (7, 99, 0x81)
    assert u32(24) == 0xFFFFFFFF
    assert (u32(28), u32(32), u32(36), u32(40)) == (5, 6, 0x08001234, 0x08005679)
    assert (raw[44], raw[45], raw[46:48]) == (2, 9, b"\0\0")
    assert raw[48:64] == b"M" + bytes(15)
    assert raw[64:80] == b"F" + bytes(15)
    assert raw[80:104] == b"T" + bytes(23)
    assert raw[104:168] == b"msg" + bytes(61)
    frame = "<I24s20s"  # line, file, function: 48 bytes
    assert struct.unpack_from(frame, raw, 168) == (11, b"a.py" + bytes(20), b"fa" + bytes(18))
    assert struct.unpack_from(frame, raw, 216) == (22, b"b.py" + bytes(20), b"fb" + bytes(18))
    assert raw[264:316] == bytes(52)  # frame 2 unused, reserved zero
    assert u32(316) == binascii.crc32(raw[:316])


def test_header_layout_matches_document() -> None:
    raw = encode_header(
        nslots=3,
        boot_count=4,
        next_seq=9,
        seen_seq=8,
        pending_cause="fault",
        boot_cause="watchdog",
        loop_count=2,
        loop_limit=3,
        loop_window_ms=60000,
        loop_uptime_ms=1500,
        mark="here",
        state=1,
    )
    assert len(raw) == 64
    assert raw[0:4] == b"FSRH" and raw[4] == 2 and raw[5] == 3
    assert struct.unpack_from("<HIII", raw, 6) == (320, 4, 9, 8)
    assert tuple(raw[20:24]) == (2, 3, 2, 3)
    assert struct.unpack_from("<II", raw, 24) == (60000, 1500)
    assert raw[32] == 1 and raw[33:40] == bytes(7)
    assert struct.unpack_from("<I", raw, 40)[0] == binascii.crc32(raw[:40])
    # The mark block: 16 bytes and their own CRC.
    assert raw[44:60] == b"here" + bytes(12)
    assert struct.unpack_from("<I", raw, 60)[0] == binascii.crc32(raw[44:60])
    header = decode_header(raw)
    assert isinstance(header, codec.Header)
    assert header.safe_mode and header.pending_cause == "fault" and header.boot_cause == "watchdog"
    assert (header.boot_count, header.next_seq, header.seen_seq) == (4, 9, 8)
    assert (header.loop_count, header.loop_limit, header.loop_uptime_ms) == (2, 3, 1500)
    assert header.mark == "here"
    assert decode_header(encode_header(pending_cause=None)).pending_cause is None  # type: ignore[union-attr]


# --- round trips ---------------------------------------------------------------------------

ROUND_TRIP_CASES = [
    dict(kind="OOM", seq=1),
    dict(
        kind="PANIC",
        seq=0xFFFFFFFF,
        action="HALT",
        reset_cause="brownout",
        boot=0xFFFFFFFF,
        uptime_ms=0xFFFFFFFF,
        flags=0xFFFFFFFF,
        heap_free=0xFFFFFFFE,
        alloc_size=0xFFFFFFFF,
        stack_used=0xFFFFFFFF,
        pc=0xFFFFFFFF,
        lr=0xFFFFFFFF,
        depth=255,
        mark="m" * 16,
        firmware="f" * 16,
        exc_type="E" * 24,
        message="x" * 64,
        traceback=[("f" * 24, 0xFFFFFFFF, "g" * 20)] * 3,
    ),
    dict(
        kind="HARDFAULT",
        seq=12,
        action="RAISE",
        reset_cause="fault",
        pc=0x20001000,
        lr=0x0800ABCD,
        flags=FLAG_NO_PYTHON_FRAME,
        heap_free=0,
        message="HardFault: bus error",
    ),
    dict(
        kind="UNHANDLED",
        seq=7,
        reset_cause="soft",
        exc_type="ZeroDivisionError",
        message="divide by zero",
        mark="ünïcødé",
        traceback=[("main.py", None, "f"), ("lib/x.py", 3, "<module>")],
        depth=2,
    ),
    dict(kind="KIND_9", seq=5, action="ACTION_77", reset_cause="cause_200"),
]


@pytest.mark.parametrize("fields", ROUND_TRIP_CASES)
def test_round_trip_every_field(fields: dict) -> None:
    raw = encode_slot(**fields)
    rec = decode_slot(raw, slot=1)
    assert isinstance(rec, Record)
    defaults = Record(kind="OOM", seq=1)
    for name in (
        "kind",
        "seq",
        "action",
        "reset_cause",
        "boot",
        "uptime_ms",
        "flags",
        "heap_free",
        "alloc_size",
        "stack_used",
        "pc",
        "lr",
        "mark",
        "firmware",
        "exc_type",
        "message",
    ):
        assert getattr(rec, name) == fields.get(name, getattr(defaults, name)), name
    frames = tuple(Frame(*f) for f in fields.get("traceback", []))
    assert rec.traceback == frames
    assert rec.location == (frames[0] if frames else None)
    assert rec.depth == fields.get("depth", len(frames))
    assert rec.slot == 1 and rec.raw == raw
    # The record re-encodes to the very same bytes.
    assert rec.encode() == raw


def test_record_object_round_trip() -> None:
    rec = Record(
        kind="STACK",
        seq=42,
        boot=3,
        message="maximum recursion depth exceeded",
        exc_type="RuntimeError",
        traceback=(Frame("rec.py", 5, "down"),) * 3,
        depth=3,
        heap_free=77,
    )
    back = decode_slot(rec.encode(), slot=0)
    assert isinstance(back, Record)
    assert back == Record(**{**rec.__dict__, "slot": 0})


def test_encode_region_places_records_by_seq() -> None:
    region = encode_region([oom(4), oom(5), oom(6)])
    assert [decode_slot(slot_of(region, i)).seq for i in range(3)] == [6, 4, 5]  # type: ignore[union-attr]
    dec = decode_region(region)
    assert dec.header is not None and dec.header.next_seq == 7
    assert [r.seq for r in dec.records] == [4, 5, 6]
    assert [r.slot for r in dec.records] == [1, 2, 0]
    assert dec.newest is not None and dec.newest.seq == 6


def test_flags_and_names() -> None:
    rec = decode_slot(oom(flags=["DOUBLE_FAULT", "POSTHOC", "BIT_12"]))
    assert isinstance(rec, Record)
    assert rec.flag_names == ["DOUBLE_FAULT", "POSTHOC", "BIT_12"]
    assert rec.flags == 0x1041
    with pytest.raises(ValueError):
        encode_slot(kind="OOM", seq=1, flags=["NOPE"])
    with pytest.raises(ValueError):
        encode_slot(kind="NOPE", seq=1)
    with pytest.raises(ValueError):
        encode_slot(kind="OOM", seq=1 << 32)


def test_to_json_is_plain_json() -> None:
    rec = decode_slot(oom(heap_free=None), slot=2)
    assert isinstance(rec, Record)
    d = rec.to_json()
    assert json.loads(json.dumps(d)) == d
    assert d["kind"] == "OOM" and d["seq"] == 3 and d["heap_free"] is None
    assert d["location"] == {"file": "purse.py", "line": 23, "function": "deposit"}
    assert len(d["traceback"]) == 3 and d["slot"] == 2
    assert d["flag_names"] == []


def test_format_record_matches_documented_example() -> None:
    rec = decode_slot(oom(flags=FLAG_TB_TRUNCATED, depth=3))
    assert isinstance(rec, Record)
    assert format_record(rec) == (
        "#3 OOM (REBOOT) boot 2, 1234 ms after reset (reset cause: power_on)\n"
        "  at purse.py:23 in deposit\n"
        "     purse.py:40 in main\n"
        "     purse.py:44 in <module>\n"
        "  MemoryError: memory allocation failed, allocating 1000000 bytes\n"
        "  heap free 1024 B, allocation 1000000 B, stack used 800 B\n"
        "  mark 'commit', firmware 1.25.0+fs0.1.0, flags TB_TRUNCATED"
    )


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (0, "MemoryError: memory allocation failed, allocating 1000000 bytes"),
        (FLAG_HEAP_LOCKED, "MemoryError: memory allocation failed, heap is locked"),
    ],
)
def test_lean_oom_record_is_reported_with_micropythons_text(flags: int, text: str) -> None:
    """A lean build stores no OOM text (MICROPY_FAILSTOP_OOM_TEXT off): the report writes
    MicroPython's from alloc_size and the flag; the record itself (JSON) stays as stored."""
    rec = decode_slot(
        encode_slot(
            kind="OOM", seq=1, message="", exc_type="MemoryError", alloc_size=1000000, flags=flags
        )
    )
    assert isinstance(rec, Record)
    assert f"  {text}\n" in format_record(rec)
    assert rec.to_json()["message"] == ""


def test_format_record_other_kinds() -> None:
    rec = decode_slot(
        encode_slot(
            kind="HARDFAULT",
            seq=9,
            pc=0x1234,
            lr=0xFFFFFFF9,
            flags=FLAG_NO_PYTHON_FRAME,
            heap_free=None,
        )
    )
    assert isinstance(rec, Record)
    text = format_record(rec)
    assert "no Python frame was active" in text
    assert "heap free unknown" in text and "allocation" not in text
    assert "pc 0x00001234, lr 0xfffffff9" in text


# --- empty, invalid, wrapped ---------------------------------------------------------------


@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_empty_region(fill: int) -> None:
    dec = decode_region(bytes([fill]) * 1024)
    assert dec.header is None and dec.header_error == "empty"
    assert dec.records == ()
    assert dec.invalid == tuple(InvalidSlot(i, "empty") for i in range(3))
    assert dec.newest is None


def test_every_slot_invalid_with_its_reason() -> None:
    good = oom(1)
    bad_magic = b"XSRC" + good[4:]
    bad_version = good[:4] + b"\x02" + good[5:]
    bad_crc = good[:200] + bytes([good[200] ^ 1]) + good[201:]
    region = encode_header() + bad_magic + bad_version + bad_crc
    dec = decode_region(region)
    assert dec.header is not None
    assert dec.records == ()
    assert [(i.slot, i.reason) for i in dec.invalid] == [
        (0, "bad magic"),
        (1, "bad version"),
        (2, "bad crc"),
    ]


def test_bad_version_with_right_crc_is_rejected() -> None:
    raw = bytearray(oom(1))
    raw[4] = 2
    raw[316:] = struct.pack("<I", binascii.crc32(bytes(raw[:316])))
    assert decode_slot(bytes(raw)) == InvalidSlot(-1, "bad version")


def test_wrapped_ring_is_ordered_by_seq() -> None:
    region = encode_header(next_seq=7) + oom(5) + oom(6) + oom(4)
    dec = decode_region(region)
    assert [r.seq for r in dec.records] == [4, 5, 6]
    assert [r.slot for r in dec.records] == [2, 0, 1]
    assert dec.invalid == ()


def test_torn_mark_block_loses_only_the_mark() -> None:
    good = encode_region([oom(1)], mark="valve")
    for damage in (44, 50, 59, 61):
        region = bytearray(good)
        region[damage] ^= 0x5A
        dec = decode_region(bytes(region))
        assert dec.header is not None and dec.header.mark == ""
        assert [r.seq for r in dec.records] == [1]


def test_version_1_header_still_decodes() -> None:
    body = struct.pack(
        "<4sBBHIIIBBBBII16sB11s", b"FSRH", 1, 3, 320, 5, 6, 4, 0, 1, 0, 3, 60000, 0, b"old", 0, b""
    )
    raw = body + struct.pack("<I", binascii.crc32(body))
    header = decode_header(raw)
    assert isinstance(header, codec.Header)
    assert (header.version, header.boot_count, header.next_seq, header.mark) == (1, 5, 6, "old")


def test_bad_header_but_good_slots() -> None:
    good = encode_region([oom(1), oom(2), oom(3)])
    for damage in (0, 4, 5, 6, 20, 39, 41):
        region = bytearray(good)
        region[damage] ^= 0x5A
        dec = decode_region(bytes(region))
        assert dec.header is None
        assert dec.header_error in ("bad magic", "bad version", "bad crc")
        assert [r.seq for r in dec.records] == [1, 2, 3]
        assert (dec.nslots, dec.slot_size) == (3, 320)


def test_header_with_bad_geometry_falls_back() -> None:
    for kw in (dict(nslots=0), dict(slot_size=256)):
        region = encode_header(**kw) + oom(1) + bytes(640)  # type: ignore[arg-type]
        dec = decode_region(region)
        assert dec.header_error == "bad geometry"
        assert [r.seq for r in dec.records] == [1]


def test_more_slots_and_trailing_bytes() -> None:
    four = encode_region([oom(s) for s in (5, 6, 7, 8)], nslots=4)
    assert len(four) == 64 + 4 * 320
    dec = decode_region(four + bytes(4096 - len(four)))  # e.g. a page-sized file
    assert dec.nslots == 4 and [r.seq for r in dec.records] == [5, 6, 7, 8]
    # With the header lost, the length still tells the slot count.
    dec = decode_region(bytes(64) + four[64:])
    assert dec.header_error == "empty" and [r.seq for r in dec.records] == [5, 6, 7, 8]


@pytest.mark.parametrize("length", [0, 1, 63, 64, 383])
def test_too_short_is_value_error(length: int) -> None:
    with pytest.raises(ValueError, match="too short"):
        decode_region(bytes(length))


def test_truncated_region_with_valid_header() -> None:
    region = encode_region([oom(1)], nslots=4)
    with pytest.raises(ValueError, match="truncated region"):
        decode_region(region[:1024])
    # Without a valid header the default geometry needs 1024 bytes.
    with pytest.raises(ValueError, match="too short"):
        decode_region(bytes(1000))


def test_non_bytes_is_value_error() -> None:
    with pytest.raises(ValueError):
        decode_region("FSRH" * 256)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode_slot(bytes(319))


# --- text fields ---------------------------------------------------------------------------


def test_full_text_fields_have_no_nul() -> None:
    raw = encode_slot(
        kind="PANIC",
        seq=1,
        mark="0123456789abcdef",
        firmware="1.25.0+fs0.1.0xy",
        exc_type="A" * 24,
        message="m" * 64,
        traceback=[("f" * 24, 1, "g" * 20)],
    )
    assert raw[48:64] == b"0123456789abcdef"
    assert raw[104:168] == b"m" * 64
    rec = decode_slot(raw)
    assert isinstance(rec, Record)
    assert rec.mark == "0123456789abcdef" and rec.firmware == "1.25.0+fs0.1.0xy"
    assert rec.exc_type == "A" * 24 and rec.message == "m" * 64
    assert rec.traceback == (Frame("f" * 24, 1, "g" * 20),)
    assert rec.flags == 0  # exactly full is not truncated


def test_long_text_is_cut_like_the_firmware() -> None:
    long_path = "/lib/deeply/nested/package/purse.py"  # 35 bytes
    rec = decode_slot(
        encode_slot(
            kind="PANIC",
            seq=1,
            message="é" * 40,  # 80 bytes: cut at a character boundary
            mark="mark-longer-than-sixteen",
            traceback=[(long_path, 3, "a_very_long_function_name_indeed")],
        )
    )
    assert isinstance(rec, Record)
    assert rec.message == "é" * 32 and len(rec.message.encode()) == 64
    assert rec.mark == "mark-longer-than"
    frame = rec.traceback[0]
    assert frame.file == long_path[-24:] and frame.file.endswith("purse.py")
    assert frame.function == "a_very_long_function"
    assert rec.flags & FLAG_MSG_TRUNCATED and rec.flags & FLAG_NAME_TRUNCATED


def test_multibyte_boundaries() -> None:
    # 63 ASCII bytes + a 2-byte character: the character does not fit, 63 bytes are kept.
    rec = decode_slot(encode_slot(kind="PANIC", seq=1, message="a" * 63 + "é"))
    assert isinstance(rec, Record) and rec.message == "a" * 63
    # The file keeps its tail; a 4-byte character split by the cut is dropped.
    rec = decode_slot(encode_slot(kind="PANIC", seq=1, traceback=[("😀" + "b" * 22, 1, "f")]))
    assert isinstance(rec, Record) and rec.traceback[0].file == "b" * 22


def test_invalid_utf8_is_replaced() -> None:
    raw = bytearray(oom(1))
    raw[104:108] = b"\xff\xfeok"
    raw[316:] = struct.pack("<I", binascii.crc32(bytes(raw[:316])))
    rec = decode_slot(bytes(raw))
    assert isinstance(rec, Record) and rec.message.startswith("\ufffd\ufffdok")


def test_traceback_truncation_flags() -> None:
    frames = [(f"m{i}.py", i + 1, f"f{i}") for i in range(6)]
    rec = decode_slot(encode_slot(kind="OOM", seq=1, traceback=frames))
    assert isinstance(rec, Record)
    assert len(rec.traceback) == 3 and rec.depth == 6
    assert rec.traceback[0] == Frame("m0.py", 1, "f0")  # innermost first
    assert rec.flags & FLAG_TB_TRUNCATED
    # nframes larger than 3 in a CRC-valid slot is clamped, not trusted.
    raw = bytearray(rec.raw)
    raw[44] = 200
    raw[316:] = struct.pack("<I", binascii.crc32(bytes(raw[:316])))
    odd = decode_slot(bytes(raw))
    assert isinstance(odd, Record) and len(odd.traceback) == 3


# --- torn writes ---------------------------------------------------------------------------


def test_torn_write_sweep_xor_every_byte() -> None:
    region = encode_region([oom(1), oom(2), oom(3)])
    expected = decode_region(region).records
    for victim in range(3):
        start = HEADER_SIZE + victim * SLOT_SIZE
        for off in range(SLOT_SIZE):
            damaged = bytearray(region)
            damaged[start + off] ^= 0xFF
            dec = decode_region(bytes(damaged))
            assert [i.slot for i in dec.invalid] == [victim], (victim, off)
            assert dec.records == tuple(r for r in expected if r.slot != victim), (victim, off)
            for rec in dec.records:
                assert rec.raw == slot_of(region, rec.slot)


def test_torn_write_sweep_writer_order() -> None:
    """Replay the writer (clear magic, body, CRC, magic last), interrupted at every byte."""
    old = encode_region([oom(1), oom(2), oom(3)])
    new = oom(4, message="the new record", mark="new")  # goes to slot 4 % 3 == 1
    slot = 1
    older = [r for r in decode_region(old).records if r.slot != slot]
    steps = [bytes(4) + slot_of(old, slot)[4:]]  # magic cleared
    for cut in range(4, SLOT_SIZE + 1):  # body and CRC written up to cut
        steps.append(bytes(4) + new[4:cut] + slot_of(old, slot)[cut:])
    for i, torn in enumerate(steps):
        dec = decode_region(with_slot(old, slot, torn))
        assert [x.slot for x in dec.invalid] == [slot], i
        assert list(dec.records) == older, i
    done = decode_region(with_slot(old, slot, new))  # magic written last: valid
    assert [r.seq for r in done.records] == [2, 3, 4]


# --- property tests (hypothesis) -----------------------------------------------------------

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASES = sample_regions()


def _accepted_slots_have_good_crc(data: bytes) -> None:
    # fuzz.check: only ValueError, and only for data too short for the region it claims;
    # every accepted slot has the right magic, version and CRC and is the input's bytes.
    region = check(data, FuzzStats())
    if region is None:
        return
    for rec in region.records:
        raw = data[64 + rec.slot * 320 : 64 + (rec.slot + 1) * 320]
        assert raw[:5] == b"FSRC\x01"
        assert binascii.crc32(raw[:316]) == struct.unpack("<I", raw[316:])[0]


@FAST
@given(st.binary(min_size=0, max_size=2100))
def test_random_bytes_never_crash(data: bytes) -> None:
    _accepted_slots_have_good_crc(data)


@FAST
@given(st.binary(min_size=1024, max_size=1024))
def test_random_regions_have_no_records(data: bytes) -> None:
    dec = decode_region(data)
    assert dec.records == () or all(r.raw[:5] == b"FSRC\x01" for r in dec.records)
    assert len(dec.invalid) + len(dec.records) == 3


@FAST
@given(
    st.sampled_from(range(len(BASES))),
    st.lists(st.tuples(st.integers(0, 1023), st.integers(1, 255)), min_size=1, max_size=8),
)
def test_mutated_regions(base_index: int, edits: list[tuple[int, int]]) -> None:
    base = BASES[base_index]
    data = bytearray(base)
    for pos, xor in edits:
        data[pos] ^= xor
    data_b = bytes(data)
    dec = decode_region(data_b)
    touched = {(pos - 64) // 320 for pos, _ in edits if pos >= 64}
    for rec in dec.records:
        # A slot that was changed is never accepted (a CRC32 catches up to 32 flipped bits in
        # a burst; scattered edits would need a collision).
        assert rec.slot not in touched or rec.raw == slot_of(base, rec.slot)
        assert rec.raw == slot_of(data_b, rec.slot)
    untouched = {r.slot for r in decode_region(base).records} - touched
    assert untouched <= {r.slot for r in dec.records}


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30)
frame = st.tuples(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30),
    st.one_of(st.none(), st.integers(1, 0xFFFFFFFF)),
    text,
)


@FAST
@given(
    kind=st.sampled_from(sorted(codec.KINDS.values())),
    action=st.sampled_from(sorted(codec.ACTIONS.values())),
    cause=st.sampled_from(sorted(codec.RESET_CAUSES.values())),
    seq=st.integers(1, 0xFFFFFFFF),
    u32s=st.lists(st.integers(0, 0xFFFFFFFF), min_size=8, max_size=8),
    heap=st.one_of(st.none(), st.integers(0, 0xFFFFFFFE)),
    texts=st.lists(text, min_size=4, max_size=4),
    frames=st.lists(frame, max_size=6),
)
def test_round_trip_property(
    kind: str,
    action: str,
    cause: str,
    seq: int,
    u32s: list[int],
    heap: int | None,
    texts: list[str],
    frames: list[tuple[str, int | None, str]],
) -> None:
    boot, uptime, flags, alloc, stack, pc, lr, _ = u32s
    raw = encode_slot(
        kind=kind,
        action=action,
        reset_cause=cause,
        seq=seq,
        boot=boot,
        uptime_ms=uptime,
        flags=flags,
        heap_free=heap,
        alloc_size=alloc,
        stack_used=stack,
        pc=pc,
        lr=lr,
        mark=texts[0],
        firmware=texts[1],
        exc_type=texts[2],
        message=texts[3],
        traceback=frames,
    )
    rec = decode_slot(raw)
    assert isinstance(rec, Record)
    assert (rec.kind, rec.action, rec.reset_cause, rec.seq) == (kind, action, cause, seq)
    assert (rec.boot, rec.uptime_ms, rec.alloc_size, rec.stack_used) == (boot, uptime, alloc, stack)
    assert (rec.pc, rec.lr, rec.heap_free) == (pc, lr, heap)
    assert rec.flags & flags == flags
    for got, want, size in zip(
        (rec.mark, rec.firmware, rec.exc_type, rec.message), texts, (16, 16, 24, 64)
    ):
        assert want.encode().startswith(got.encode())
        assert len(got.encode()) <= size
        if len(want.encode()) <= size:
            assert got == want
    assert len(rec.traceback) == min(len(frames), 3)
    for got_f, (file, line, function) in zip(rec.traceback, frames):
        assert got_f.line == line
        assert file.encode().endswith(got_f.file.encode())
        assert function.encode().startswith(got_f.function.encode())
    assert rec.encode() == raw


def test_long_fuzz_runs_and_counts() -> None:
    stats = long_fuzz(4000, seed=1)
    assert stats.inputs == 4000
    assert stats.records > 0 and stats.invalid_slots > 0 and stats.value_errors > 0
    assert stats.damaged_but_accepted == 0


def test_fuzz_checker_catches_a_lying_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz oracle itself must fail when a decoder accepts a slot with a bad CRC."""
    from failstop_host import fuzz

    region = encode_region([oom(3)])  # slot 3 % 3 == 0
    broken = bytearray(region)
    broken[64 + 150] ^= 1
    real = fuzz.decode_region

    def lying(data: bytes) -> codec.Region:
        dec = real(data)
        raw = data[64:384]
        rec = Record(kind="OOM", seq=3, slot=0, raw=raw)
        return codec.Region(dec.header, dec.header_error, 3, 320, (rec,), dec.invalid[1:])

    monkeypatch.setattr(fuzz, "decode_region", lying)
    with pytest.raises(fuzz.ContractViolation, match="bad CRC"):
        check(bytes(broken), fuzz.FuzzStats())
