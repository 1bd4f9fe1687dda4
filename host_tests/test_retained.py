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


def test_corrupt_byte_at_every_offset(board: UnixBackend, three_records: bytes) -> None:
    slot = 1  # holds seq 4 (slot = seq % 3)
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
    slot = 1
    base = HDR + slot * SLOT
    # The record that would replace seq 4: seq 7 from one more boot of the same firmware.
    new_run = bytearray(old)
    board.retained.write_bytes(bytes(new_run))
    board.exec(
        "import failstop; failstop.policy('OOM', 'RAISE')\n"
        "try:\n bytearray(1000000000)\nexcept MemoryError:\n pass"
    )
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
    for off in (0, 8, 20, 33, 60):
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
