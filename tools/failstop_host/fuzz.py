"""A long, seeded fuzz run of the region decoder (for ``make bench``).

``long_fuzz(n)`` feeds ``n`` inputs to :func:`decode_region` (random bytes of random length,
valid regions with random damage, and regions whose slots carry a right magic and version
but random bodies) and checks the decoder's contract on every one:

* it returns a Region or raises ValueError, and ValueError only for data too short to hold
  the region;
* every accepted record's slot has the right magic, version and CRC, and its ``raw`` bytes
  are exactly that slot of the input;
* every slot is either a record or an invalid slot, and records come oldest first.

Run: ``python -m failstop_host.fuzz [N] [SEED]``.
"""

from __future__ import annotations

import binascii
import random
import sys
import time
from dataclasses import dataclass

from .codec import (
    DEFAULT_NSLOTS,
    FORMAT_VERSION,
    HEADER_SIZE,
    SLOT_MAGIC,
    SLOT_SIZE,
    Header,
    Region,
    decode_header,
    decode_region,
    encode_region,
    encode_slot,
)


@dataclass
class FuzzStats:
    inputs: int = 0
    value_errors: int = 0
    records: int = 0
    invalid_slots: int = 0
    damaged_but_accepted: int = 0  # damaged slot still valid: needs a CRC32 collision
    seconds: float = 0.0


class ContractViolation(AssertionError):
    """The decoder broke its contract on an input (kept in ``data``)."""

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(f"{message}; input ({len(data)} bytes): {binascii.hexlify(data)[:400]!r}")
        self.data = data


def sample_regions() -> list[bytes]:
    """A few valid regions to damage: full, wrapped, partly empty, with long text."""
    tb = [("main.py", 10, "run"), ("lib/very/long/path/to/module.py", 2, "f" * 20)]
    regions = []
    for first in (1, 4, 100):
        slots = [
            encode_slot(
                kind=1 + (seq % 7),
                seq=seq,
                action=1 + (seq % 3),
                reset_cause=seq % 7,
                boot=seq,
                uptime_ms=seq * 1000,
                heap_free=None if seq % 2 else 4096,
                alloc_size=seq * 64,
                mark=f"m{seq}",
                firmware="1.25.0+fs0.1.0",
                exc_type="MemoryError",
                message="é" * 40,
                traceback=tb[: seq % 3],
            )
            for seq in range(first, first + 3)
        ]
        regions.append(encode_region(slots, boot_count=first + 3))
    regions.append(encode_region([encode_slot(kind="PANIC", seq=1, message="x")]))
    return regions


def check(data: bytes, stats: FuzzStats, original: bytes = b"") -> Region | None:
    """Decode ``data`` and check the contract; ``original`` is the undamaged region."""
    stats.inputs += 1
    try:
        region = decode_region(data)
    except ValueError:
        stats.value_errors += 1
        if len(data) >= HEADER_SIZE + SLOT_SIZE:
            header = decode_header(data[:HEADER_SIZE])
            body = len(data) - HEADER_SIZE
            if isinstance(header, Header):
                need = HEADER_SIZE + header.nslots * SLOT_SIZE
            elif body % SLOT_SIZE == 0 and body // SLOT_SIZE <= 255:
                need = len(data)  # the length gives the slot count
            else:
                need = HEADER_SIZE + DEFAULT_NSLOTS * SLOT_SIZE
        else:
            need = HEADER_SIZE + SLOT_SIZE
        if len(data) >= need:
            raise ContractViolation("ValueError for data long enough", data) from None
        return None
    if len(region.records) + len(region.invalid) != region.nslots:
        raise ContractViolation("slots lost", data)
    seqs = [r.seq for r in region.records]
    if seqs != sorted(seqs):
        raise ContractViolation("records not oldest first", data)
    for rec in region.records:
        start = HEADER_SIZE + rec.slot * SLOT_SIZE
        raw = data[start : start + SLOT_SIZE]
        if rec.raw != raw:
            raise ContractViolation(f"slot {rec.slot}: record raw differs from input", data)
        if raw[:4] != SLOT_MAGIC or raw[4] != FORMAT_VERSION:
            raise ContractViolation(f"slot {rec.slot}: accepted with bad magic/version", data)
        if binascii.crc32(raw[:316]) & 0xFFFFFFFF != int.from_bytes(raw[316:], "little"):
            raise ContractViolation(f"slot {rec.slot}: accepted with a bad CRC", data)
        if original and raw != original[start : start + SLOT_SIZE]:
            stats.damaged_but_accepted += 1
    stats.records += len(region.records)
    stats.invalid_slots += len(region.invalid)
    return region


def _damage(rng: random.Random, base: bytes) -> bytes:
    data = bytearray(base)
    how = rng.randrange(6)
    if how == 0:  # flip a few bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:  # overwrite one byte
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 2:  # torn write: a slot's tail from some offset is erased or stale
        slot = rng.randrange((len(data) - HEADER_SIZE) // SLOT_SIZE)
        start = HEADER_SIZE + slot * SLOT_SIZE + rng.randrange(SLOT_SIZE)
        end = HEADER_SIZE + (slot + 1) * SLOT_SIZE
        fill = rng.choice((0, 0xFF))
        data[start:end] = bytes([fill]) * (end - start)
    elif how == 3:  # random run of bytes
        start = rng.randrange(len(data))
        n = rng.randint(1, 64)
        data[start : start + n] = rng.randbytes(n)[: len(data) - start]
    elif how == 4:  # cut or extend
        cut = rng.randrange(len(data) + 200)
        return bytes(data[:cut]) + rng.randbytes(max(0, cut - len(data)))
    else:  # damage the header only
        data[rng.randrange(HEADER_SIZE)] ^= 0xFF
    return bytes(data)


def _plausible(rng: random.Random) -> bytes:
    """Slots with the right magic and version and random bodies (mostly bad CRCs)."""
    slots = []
    for _ in range(3):
        body = bytearray(rng.randbytes(SLOT_SIZE))
        body[0:5] = SLOT_MAGIC + bytes([FORMAT_VERSION])
        if rng.random() < 0.3:  # make the CRC right: an odd but valid record
            crc = binascii.crc32(bytes(body[:316])) & 0xFFFFFFFF
            body[316:] = crc.to_bytes(4, "little")
        slots.append(bytes(body))
    return rng.randbytes(HEADER_SIZE) + b"".join(slots)


def long_fuzz(n: int = 1_000_000, seed: int = 0) -> FuzzStats:
    """Run ``n`` fuzz inputs; raise ContractViolation on the first broken rule."""
    rng = random.Random(seed)
    bases = sample_regions()
    stats = FuzzStats()
    t0 = time.perf_counter()
    for i in range(n):
        pick = i % 4
        if pick == 0:
            length = rng.choice((1024, 1024, rng.randrange(2048), HEADER_SIZE + SLOT_SIZE))
            check(rng.randbytes(length), stats)
        elif pick == 3:
            check(_plausible(rng), stats)
        else:
            base = bases[rng.randrange(len(bases))]
            check(_damage(rng, base), stats, original=base)
    stats.seconds = time.perf_counter() - t0
    return stats


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 1_000_000
    seed = int(argv[1]) if len(argv) > 1 else 0
    stats = long_fuzz(n, seed)
    print(
        f"fuzz: {stats.inputs} inputs in {stats.seconds:.1f} s, "
        f"{stats.value_errors} too short, {stats.records} records, "
        f"{stats.invalid_slots} invalid slots, "
        f"{stats.damaged_but_accepted} damaged slots accepted (CRC collisions); contract held"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
