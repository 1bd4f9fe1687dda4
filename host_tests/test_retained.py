"""Retained-region robustness on the real firmware: a torn or corrupted slot is never
reported as valid and never hides the other records (checked by the firmware and by the
host codec, at every byte offset)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from backends import UnixBackend, require_built
from conftest import UNIX_FW
from failstop_host import codec

HDR, SLOT = codec.HEADER_SIZE, codec.SLOT_SIZE
LIST = "import failstop\nprint('SEQS', [r.seq for r in failstop.records()])"


def device_seqs(board: UnixBackend, region: bytes) -> list[int]:
    board.retained.write_bytes(region)
    out = board.exec(LIST)
    lines = [ln for ln in out.splitlines() if ln.startswith("SEQS ")]
    assert lines, out
    return list(ast.literal_eval(lines[0][5:]))


def host_seqs(region: bytes) -> list[int]:
    return [r.seq for r in codec.decode_region(region).records]


@pytest.fixture
def board(tmp_path: Path) -> UnixBackend:
    """The unix firmware: its retained RAM is a file these tests can corrupt byte by byte."""
    require_built(UNIX_FW, "make firmware BOARD=unix")
    return UnixBackend(UNIX_FW, tmp_path)


@pytest.fixture
def three_records(board: UnixBackend) -> bytes:
    res = board.run("panic_reasons.py")
    assert [r.seq for r in res.region.records] == [4, 5, 6]
    return board.retained.read_bytes()


def slot_of(region: bytes, seq: int) -> int:
    (slot,) = [r.slot for r in codec.decode_region(region).records if r.seq == seq]
    return slot


def test_corrupt_byte_at_every_offset(board: UnixBackend, three_records: bytes) -> None:
    slot = slot_of(three_records, 4)
    base = HDR + slot * SLOT
    for off in range(SLOT):
        bad = bytearray(three_records)
        bad[base + off] ^= 0xFF
        assert host_seqs(bytes(bad)) == [5, 6], off
        assert device_seqs(board, bytes(bad)) == [5, 6], off


def test_torn_write_never_valid_never_hides_others(
    board: UnixBackend, three_records: bytes
) -> None:
    """Replay the firmware's write order (magic cleared, body and CRC, magic last) onto
    the oldest slot, stopping after every byte."""
    old = three_records
    slot = slot_of(old, 4)  # the oldest: the next record replaces it
    base = HDR + slot * SLOT
    # The record that replaces seq 4: seq 7 from one more boot of the same firmware.
    board.retained.write_bytes(old)
    board.exec("import failstop; failstop.panic('seven')")
    after = board.retained.read_bytes()
    new_slot = after[base : base + SLOT]
    assert codec.decode_slot(new_slot).seq == 7  # type: ignore[union-attr]
    for k in range(0, SLOT - 4 + 1):
        torn = bytearray(old)
        torn[base : base + 4] = b"\0\0\0\0"
        torn[base + 4 : base + 4 + k] = new_slot[4 : 4 + k]
        assert host_seqs(bytes(torn)) == [5, 6], k
        if k % 4 == 0 or k > SLOT - 12:
            assert device_seqs(board, bytes(torn)) == [5, 6], k
    done = bytearray(old)
    done[base : base + SLOT] = new_slot
    assert host_seqs(bytes(done)) == device_seqs(board, bytes(done)) == [5, 6, 7]


def test_corrupt_header_keeps_records(board: UnixBackend, three_records: bytes) -> None:
    for off in (0, 8, 20, 33, 40):
        bad = bytearray(three_records)
        bad[off] ^= 0x5A
        assert codec.decode_region(bytes(bad)).header is None
        assert device_seqs(board, bytes(bad)) == [4, 5, 6], off
        region = codec.decode_region(board.retained.read_bytes())
        assert region.header is not None  # rebuilt at boot
        assert (
            region.header.next_seq == 7 and region.header.boot_count == 7
        )  # after the newest record


def test_garbage_region_boots_clean(board: UnixBackend, tmp_path: Path) -> None:
    import random

    rnd = random.Random(1)
    for _ in range(20):
        junk = bytes(rnd.getrandbits(8) for _ in range(HDR + 3 * SLOT))
        assert device_seqs(board, junk) == []
        assert host_seqs(junk) == []


def device_keeper_and_mark(board: UnixBackend, region: bytes) -> tuple[list[int], str, str]:
    """What the firmware makes of `region` at boot: the records, what a keeper gets, the mark."""
    board.retained.write_bytes(region)
    out = board.exec(
        "import failstop\n"
        "print('SEQS', [r.seq for r in failstop.records()])\n"
        "print('KEPT', failstop.keeper(lambda r: None))\n"
        "print('MARK', repr(failstop.mark()))"
    )
    got = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.splitlines() if " " in ln}
    return list(ast.literal_eval(got["SEQS"])), got["KEPT"], ast.literal_eval(got["MARK"])


def test_torn_mark_update_loses_only_the_mark(board: UnixBackend, three_records: bytes) -> None:
    """mark() writes its own block (16 bytes, then their CRC): a reset after any byte leaves
    the header, the records and the keeper's view as they were; the mark is the old one,
    the new one, or none."""
    old = bytearray(three_records)
    old[44:64] = codec.encode_mark("before")
    new_block = codec.encode_mark("after-tag")
    hdr_old = codec.decode_region(bytes(old)).header
    assert hdr_old is not None and hdr_old.mark == "before"
    for k in range(len(new_block) + 1):
        torn = bytearray(old)
        torn[44 : 44 + k] = new_block[:k]
        region = codec.decode_region(bytes(torn))
        assert region.header is not None, k
        assert region.header.boot_count == hdr_old.boot_count, k
        assert region.header.mark in ("before", "", "after-tag"), k
        assert [r.seq for r in region.records] == [4, 5, 6], k
        if k % 2 == 0 or k == len(new_block):
            seqs, kept, mark = device_keeper_and_mark(board, bytes(torn))
            assert seqs == [4, 5, 6] and kept.startswith("<failstop record #6"), (k, kept)
            assert mark == region.header.mark, k
    assert codec.decode_region(bytes(torn)).header.mark == "after-tag"  # type: ignore[union-attr]


def test_torn_header_commit_loses_no_record_and_hides_none(
    board: UnixBackend, three_records: bytes
) -> None:
    """A reset in the middle of a header commit (here: the one that counts a boot) at any
    byte: no record is lost, and the newest record, which no keeper has seen, is still
    given to the keeper."""
    old = three_records
    new_hdr = codec.encode_header(
        boot_count=99, next_seq=7, seen_seq=0, boot_cause="soft", loop_limit=3
    )
    for k in range(codec.HEADER_SIZE + 1):
        torn = bytearray(old)
        torn[:k] = new_hdr[:k]
        assert [r.seq for r in codec.decode_region(bytes(torn)).records] == [4, 5, 6], k
        if k % 4 == 0 or k > 36:
            seqs, kept, _ = device_keeper_and_mark(board, bytes(torn))
            assert seqs == [4, 5, 6] and kept.startswith("<failstop record #6"), (k, kept)
