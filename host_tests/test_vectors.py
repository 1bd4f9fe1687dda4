"""The host codec against regions written by the real firmware (host_tests/vectors/,
made by make_vectors.py): every field decodes to what the firmware itself reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from failstop_host import codec
from make_vectors import FIELDS

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.bin"))


def as_reported(r: codec.Record) -> dict[str, Any]:
    """A record in the shape the firmware's own `failstop.records()` printed it."""
    d = {f: getattr(r, f) for f in FIELDS}
    d["traceback"] = [[f.file, f.line, f.function] for f in r.traceback]
    return d


@pytest.mark.parametrize("vector", VECTORS, ids=[v.stem for v in VECTORS])
def test_firmware_vector_decodes_as_device_reported(vector: Path) -> None:
    expected = json.loads(vector.with_suffix(".json").read_text())
    region = codec.decode_region(vector.read_bytes())
    assert region.header is not None
    assert all(i.reason == "empty" for i in region.invalid)
    got = [as_reported(r) for r in region.records]
    assert got == expected and got


def test_firmware_vectors_reencode_byte_for_byte() -> None:
    """The encoder (used by the simulator) writes exactly the firmware's slot bytes."""
    assert VECTORS
    for vector in VECTORS:
        data = vector.read_bytes()
        for r in codec.decode_region(data).records:
            start = codec.HEADER_SIZE + r.slot * codec.SLOT_SIZE
            assert r.encode() == data[start : start + codec.SLOT_SIZE], (vector.name, r.seq)
