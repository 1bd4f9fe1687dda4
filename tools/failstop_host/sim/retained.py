"""The simulated board's retained RAM: a 1024-byte region in a file that outlives every
simulated reset, read and written with the rules of modules/failstop/failstop_core.c
(header rebuild and boot count at boot, reset-cause fusion, crash-loop breaker, slot
ring, magic written last, double-fault flag). All bytes go through the host codec's
encoders, so the firmware, the device API and ``failstop decode`` read the same region.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .. import codec

NSLOTS = codec.DEFAULT_NSLOTS
REGION_SIZE = codec.HEADER_SIZE + NSLOTS * codec.SLOT_SIZE
LOOP_LIMIT = 3
LOOP_WINDOW_MS = 60000

KIND = {name: code for code, name in codec.KINDS.items()}
ACTION = {name: code for code, name in codec.ACTIONS.items()}
CAUSE = {name: code for code, name in codec.RESET_CAUSES.items()}
RC_UNKNOWN, RC_POWER_ON, RC_FAULT, RC_WATCHDOG, RC_SOFT, RC_PIN, RC_BROWNOUT = (
    CAUSE[n] for n in ("unknown", "power_on", "fault", "watchdog", "soft", "pin", "brownout")
)
RC_MAX = max(codec.RESET_CAUSES)


@dataclass
class HeaderState:
    """The header fields, as the firmware keeps them in retained RAM."""

    boot_count: int = 0
    next_seq: int = 0
    seen_seq: int = 0
    pending_cause: int = 0
    boot_cause: int = 0
    loop_count: int = 0
    loop_limit: int = LOOP_LIMIT
    loop_window_ms: int = LOOP_WINDOW_MS
    loop_uptime_ms: int = 0
    mark: str = ""
    state: int = 0

    @property
    def safe_mode(self) -> bool:
        return bool(self.state & codec.STATE_SAFE_MODE)


def _slot_offset(slot: int) -> int:
    return codec.HEADER_SIZE + slot * codec.SLOT_SIZE


def _clean(text: str) -> str:
    """Device text on the console: control characters become '?' (one line per banner)."""
    return "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


class Retained:
    """The region in a file, mapped shared: what is written is in the file at once, as
    RAM keeps what was stored when the board resets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < REGION_SIZE:
                os.ftruncate(fd, REGION_SIZE)
            self.mem = mmap.mmap(fd, REGION_SIZE, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.hdr = HeaderState()

    def close(self) -> None:
        self.mem.close()

    def copy_to(self, path: Path) -> Retained:
        """A copy of the region (bytes and header state) in another file."""
        path.write_bytes(self.dump())
        other = Retained(path)
        other.hdr = dataclasses.replace(self.hdr)
        return other

    def rebind(self, path: Path) -> None:
        """Go on with a copy of the region in another file (an OOM sweep's forked run
        gets its own retained RAM, as it was at the fork)."""
        data = self.dump()
        self.mem.close()
        path.write_bytes(data)
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.mem = mmap.mmap(fd, REGION_SIZE, mmap.MAP_SHARED)
        finally:
            os.close(fd)

    def dump(self) -> bytes:
        return bytes(self.mem[:REGION_SIZE])

    # --- header ---------------------------------------------------------------------

    def load_header(self) -> bool:
        """Read the header into ``self.hdr``; False when it is not valid (as at boot)."""
        dec = codec.decode_header(bytes(self.mem[: codec.HEADER_SIZE]))
        if not isinstance(dec, codec.Header) or dec.nslots != NSLOTS:
            return False
        self.hdr = HeaderState(
            boot_count=dec.boot_count,
            next_seq=dec.next_seq,
            seen_seq=dec.seen_seq,
            pending_cause=(
                0 if dec.pending_cause is None else codec.reset_cause_code(dec.pending_cause)
            ),
            boot_cause=codec.reset_cause_code(dec.boot_cause),
            loop_count=dec.loop_count,
            loop_limit=dec.loop_limit,
            loop_window_ms=dec.loop_window_ms,
            loop_uptime_ms=dec.loop_uptime_ms,
            mark=dec.mark,
            state=dec.state,
        )
        return True

    def commit(self) -> None:
        """Write the header with a fresh CRC (failstop_header_commit)."""
        h = self.hdr
        self.mem[: codec.HEADER_SIZE] = codec.encode_header(
            nslots=NSLOTS,
            boot_count=h.boot_count,
            next_seq=h.next_seq,
            seen_seq=h.seen_seq,
            pending_cause=h.pending_cause or None,
            boot_cause=h.boot_cause,
            loop_count=h.loop_count,
            loop_limit=h.loop_limit,
            loop_window_ms=h.loop_window_ms,
            loop_uptime_ms=h.loop_uptime_ms,
            mark=h.mark,
            state=h.state,
        )

    # --- slots ----------------------------------------------------------------------

    def slot_bytes(self, slot: int) -> bytes:
        off = _slot_offset(slot)
        return bytes(self.mem[off : off + codec.SLOT_SIZE])

    def records(self) -> list[codec.Record]:
        """Valid records, oldest first."""
        out = []
        for i in range(NSLOTS):
            item = codec.decode_slot(self.slot_bytes(i), slot=i)
            if isinstance(item, codec.Record):
                out.append(item)
        out.sort(key=lambda r: r.seq)
        return out

    def last(self) -> Optional[codec.Record]:
        """Newest record written in an earlier boot."""
        older = [r for r in self.records() if r.boot < self.hdr.boot_count]
        return older[-1] if older else None

    def write_record(
        self,
        *,
        kind: int,
        action: int,
        flags: int,
        uptime_ms: int,
        heap_free: Optional[int],
        alloc_size: int,
        stack_used: int,
        depth: int,
        exc_type: str,
        message: str,
        frames: Sequence[tuple[str, int, str]],
    ) -> int:
        """Write one record into the oldest slot, as fs_record_begin/fs_record_commit do
        (slot invalidated first, next_seq committed, magic stored last). Returns the slot."""
        h = self.hdr
        seq = h.next_seq
        slot = seq % NSLOTS
        off = _slot_offset(slot)
        self.mem[off : off + 4] = bytes(4)  # a torn write leaves this slot invalid
        self.mem[off + 4 : off + codec.SLOT_SIZE] = bytes(codec.SLOT_SIZE - 4)
        h.next_seq = seq + 1
        self.commit()
        if not frames:
            flags |= codec.FLAG_NO_PYTHON_FRAME
        data = codec.encode_slot(
            kind=kind,
            seq=seq,
            action=action,
            reset_cause=h.boot_cause,
            boot=h.boot_count,
            uptime_ms=uptime_ms & 0xFFFFFFFF,
            flags=flags,
            heap_free=heap_free,
            alloc_size=min(alloc_size, 0xFFFFFFFF),
            stack_used=min(stack_used, 0xFFFFFFFF),
            depth=min(depth, 255),
            mark=h.mark,
            firmware=FIRMWARE,
            exc_type=exc_type,
            message=message,
            traceback=[(f, line or None, fn) for f, line, fn in frames[: codec.NFRAMES]],
        )
        self.mem[off + 4 : off + codec.SLOT_SIZE] = data[4:]
        self.mem[off : off + 4] = data[:4]
        return slot

    def flag_double_fault(self, slot: int) -> None:
        """Set DOUBLE_FAULT on the record in ``slot`` and commit it again."""
        rec = codec.decode_slot(self.slot_bytes(slot), slot=slot)
        if not isinstance(rec, codec.Record):
            return  # nothing valid to flag (the firmware checks its own pointer the same way)
        raw = dataclasses.replace(rec, flags=rec.flags | codec.FLAG_DOUBLE_FAULT).encode()
        off = _slot_offset(slot)
        self.mem[off : off + 4] = bytes(4)
        self.mem[off + 4 : off + codec.SLOT_SIZE] = raw[4:]
        self.mem[off : off + 4] = raw[:4]

    # --- boot, reset, crash loop ----------------------------------------------------

    def boot(self, hw_cause: int, write: Callable[[str], object]) -> None:
        """failstop_boot: validate or rebuild the header, count the boot, fuse the reset
        cause, decide safe mode, then print the banner."""
        hdr_ok = self.load_header()
        recs = self.records()
        max_seq = max((r.seq for r in recs), default=0)
        max_boot = max((r.boot for r in recs), default=0)
        if not hdr_ok:
            self.mem[: codec.HEADER_SIZE] = bytes(codec.HEADER_SIZE)
            self.hdr = HeaderState(boot_count=max_boot, seen_seq=max_seq)
        h = self.hdr
        if h.next_seq <= max_seq:
            h.next_seq = max_seq + 1
        h.boot_count = (h.boot_count + 1) & 0xFFFFFFFF
        if hw_cause in (RC_POWER_ON, RC_BROWNOUT, RC_PIN):
            cause = hw_cause
        elif 0 < h.pending_cause <= RC_MAX:
            cause = h.pending_cause
        elif hw_cause != RC_UNKNOWN:
            cause = hw_cause
        else:
            cause = RC_SOFT if hdr_ok else RC_POWER_ON
        h.boot_cause = cause
        h.pending_cause = 0
        if h.loop_count > h.loop_limit:
            h.state |= codec.STATE_SAFE_MODE
        else:
            h.state &= ~codec.STATE_SAFE_MODE
        self.commit()
        self.banner(write, recs)

    def banner(
        self, write: Callable[[str], object], recs: Optional[list[codec.Record]] = None
    ) -> None:
        """failstop_print_banner: what the last boot's fault was, and safe mode."""
        h = self.hdr
        if recs is None:
            recs = self.records()
        r = recs[-1] if recs else None
        if (
            h.boot_cause in (RC_FAULT, RC_WATCHDOG)
            and r is not None
            and r.boot + 1 == h.boot_count
            and r.kind in KIND
        ):
            text = f"failstop: reboot after {r.kind} (seq {r.seq}, boot {r.boot})"
            if r.traceback:
                f = r.traceback[0]
                text += f" at {_clean(f.file)}:{f.line or 0} in {_clean(f.function)}"
            if r.message:
                text += ": " + _clean(r.message)
            write(text + "\r\n")
        if h.safe_mode:
            write(
                f"failstop: safe mode ({h.loop_count} fail-stop reboots within the "
                "crash-loop window); main program not run\r\n"
            )

    def before_reset(self, kind: int, uptime_ms: int) -> None:
        """fs_reset: count the fail-stop reboot in the crash-loop window and leave the
        reset cause for the next boot."""
        h = self.hdr
        up = uptime_ms & 0xFFFFFFFF
        total = h.loop_uptime_ms + up
        if h.loop_count == 0 or total > h.loop_window_ms or total > 0xFFFFFFFF:
            h.loop_count = 1
            h.loop_uptime_ms = up
        else:
            h.loop_count = min(h.loop_count + 1, 255)
            h.loop_uptime_ms = total
        h.pending_cause = RC_WATCHDOG if kind == KIND["WATCHDOG"] else RC_FAULT
        self.commit()

    def clear(self) -> None:
        """failstop.clear(): forget records, end the crash loop and safe mode."""
        for i in range(NSLOTS):
            off = _slot_offset(i)
            self.mem[off : off + codec.SLOT_SIZE] = bytes(codec.SLOT_SIZE)
        h = self.hdr
        h.seen_seq = (h.next_seq - 1) & 0xFFFFFFFF
        h.loop_count = 0
        h.loop_uptime_ms = 0
        h.state &= ~codec.STATE_SAFE_MODE
        self.commit()

    def healthy(self) -> None:
        """The main program ended without a fail-stop fault: the crash loop is over."""
        if self.hdr.loop_count != 0:
            self.hdr.loop_count = 0
            self.hdr.loop_uptime_ms = 0
            self.commit()


# The simulator's firmware id (16 bytes): MicroPython 1.25.0 semantics, failstop 0.1.
FIRMWARE = "1.25.0+fs0.1-sim"
assert len(FIRMWARE.encode()) <= codec.FIRMWARE_SIZE
