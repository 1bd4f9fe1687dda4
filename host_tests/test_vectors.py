"""The host codec against regions written by the real firmware (host_tests/vectors/,
made by make_vectors.py): every field decodes to what the firmware itself reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from failstop_host import codec

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.bin"))


@pytest.mark.parametrize("vector", VECTORS, ids=[v.stem for v in VECTORS])
def test_firmware_vector_decodes_as_device_reported(vector: Path) -> None:
    expected = json.loads(vector.with_suffix(".json").read_text())
    region = codec.decode_region(vector.read_bytes())
    assert (
        (region.header is not None
        and not region.invalid)
        or all(i.reason == "empty" for i in region.invalid)
    )
    got = []
    for r in region.records:
        got.append(
            {
                "seq": r.seq,
                "kind": r.kind,
                "action": r.action,
                "reset_cause": r.reset_cause,
                "boot": r.boot,
                "uptime_ms": r.uptime_ms,
                "flags": r.flags,
                "heap_free": r.heap_free,
                "alloc_size": r.alloc_size,
                "stack_used": r.stack_used,
                "pc": r.pc,
                "lr": r.lr,
                "depth": r.depth,
                "mark": r.mark,
                "firmware": r.firmware,
                "exc_type": r.exc_type,
                "message": r.message,
                "traceback": [[f.file, f.line, f.function] for f in r.traceback],
            }
        )
    assert got == expected and got


def test_firmware_vectors_reencode_byte_for_byte() -> None:
    """The encoder (used by the simulator) writes exactly the firmware's slot bytes."""
    assert VECTORS
    for vector in VECTORS:
        data = vector.read_bytes()
        for r in codec.decode_region(data).records:
            start = codec.HEADER_SIZE + r.slot * codec.SLOT_SIZE
            again = codec.encode_slot(
                kind=r.kind,
                seq=r.seq,
                action=r.action,
                reset_cause=r.reset_cause,
                boot=r.boot,
                uptime_ms=r.uptime_ms,
                flags=r.flags,
                heap_free=r.heap_free,
                alloc_size=r.alloc_size,
                stack_used=r.stack_used,
                pc=r.pc,
                lr=r.lr,
                depth=r.depth,
                mark=r.mark,
                firmware=r.firmware,
                exc_type=r.exc_type,
                message=r.message,
                traceback=r.traceback,
                auto_flags=False,
            )
            assert again == data[start : start + codec.SLOT_SIZE], (vector.name, r.seq)
