"""The simulated board's retained RAM: a 1024-byte region in a file that outlives every
simulated reset, read and written with the rules of modules/failstop/failstop_core.c
(header v2 rebuild and boot count at boot, reset-cause fusion, crash-loop breaker, post-hoc
WATCHDOG record, slot choice, magic written last, double-fault flag, the mark in its own
CRC'd block). All bytes go through the host codec's encoders, so the firmware, the device
API and ``failstop decode`` read the same region.
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
from ..codec import Action, Kind

NSLOTS = codec.DEFAULT_NSLOTS
REGION_SIZE = codec.HEADER_SIZE + NSLOTS * codec.SLOT_SIZE
LOOP_LIMIT = 3
LOOP_WINDOW_MS = 60000

CAUSE = {name: code for code, name in codec.RESET_CAUSES.items()}
RC_UNKNOWN, RC_POWER_ON, RC_FAULT, RC_WATCHDOG, RC_SOFT, RC_PIN, RC_BROWNOUT = (
    CAUSE[n] for n in ("unknown", "power_on", "fault", "watchdog", "soft", "pin", "brownout")
)
RC_MAX = max(codec.RESET_CAUSES)
NO_RESET = -1  # a boot plan's hw_cause: the board is on, no reset (exec at its REPL)
UPTIME_MAX = 0xFFFFFFFF  # uptime saturates there (49.7 days), never wraps
# Header v2: the header proper (CRC over bytes 0..39, CRC at 40) and, at 44, the mark
# block (16 bytes and their CRC32), written on its own: mark() never rewrites the header.
HEADER_COMMIT_END = 44
MARK_START = 44
MARK_BLOCK = codec.MARK_SIZE + 4
assert MARK_START + MARK_BLOCK == codec.HEADER_SIZE
POSTHOC_WATCHDOG = "watchdog reset, no early warning"


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
    state: int = 0

    @property
    def safe_mode(self) -> bool:
        return bool(self.state & codec.STATE_SAFE_MODE)


def _slot_offset(slot: int) -> int:
    return codec.HEADER_SIZE + slot * codec.SLOT_SIZE


def clean_text(text: str) -> str:
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
        if (
            not isinstance(dec, codec.Header)
            or dec.version != codec.HEADER_VERSION
            or dec.nslots != NSLOTS
        ):
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
            state=dec.state,
        )
        return True

    def commit(self) -> None:
        """Write the header with a fresh CRC (failstop_header_commit): bytes 0..43, the
        mark block after them is left as it is."""
        h = self.hdr
        self.mem[:HEADER_COMMIT_END] = codec.encode_header(
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
            state=h.state,
        )[:HEADER_COMMIT_END]

    def mark_get(self) -> str:
        """failstop_mark_get: the tag in the mark block, '' when its CRC does not match
        (torn by a reset, or never written)."""
        block = bytes(self.mem[MARK_START : MARK_START + MARK_BLOCK])
        raw = block[: codec.MARK_SIZE]
        if codec.encode_mark(raw) != block:
            return ""
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def mark_set(self, tag: str) -> None:
        """failstop_mark_set: the 16 bytes, then their CRC; the header is not touched."""
        self.mem[MARK_START : MARK_START + MARK_BLOCK] = codec.encode_mark(tag)

    def mark_set_torn(self, tag: str) -> None:
        """failstop_mark_set cut short: the block cleared and half the tag's bytes written,
        the CRC not yet (an interrupt half way through the copy)."""
        raw = tag.encode("utf-8", "surrogatepass")
        self.mem[MARK_START : MARK_START + codec.MARK_SIZE] = bytes(codec.MARK_SIZE)
        self.mem[MARK_START : MARK_START + len(raw) // 2] = raw[: len(raw) // 2]

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

    def pick_slot(self, action: int) -> Optional[int]:
        """fs_pick_slot: the slot a new record takes: an invalid one, else the oldest. A
        RAISE record (best effort) never evicts the evidence: it takes only a RAISE
        record's slot, or one the program has seen (seq <= seen_seq) that is not the newest
        fail-stop record. None: no slot for it."""
        recs: list[codec.Record] = []
        for i in range(NSLOTS):
            item = codec.decode_slot(self.slot_bytes(i), slot=i)
            if not isinstance(item, codec.Record):
                return i
            recs.append(item)
        stops = [r for r in recs if r.action != "RAISE"]
        newest_stop = max(stops, key=lambda r: r.seq) if stops else None
        if action == Action.RAISE:
            recs = [
                r
                for r in recs
                if r.action == "RAISE" or (r.seq <= self.hdr.seen_seq and r is not newest_stop)
            ]
        if not recs:
            return None
        return min(recs, key=lambda r: (r.seq, r.slot)).slot

    def write_record(
        self,
        *,
        slot: int,
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
        boot: Optional[int] = None,
    ) -> None:
        """Write one record into ``slot`` (see pick_slot), as fs_record_begin and
        fs_record_commit do: slot invalidated first, next_seq committed, magic stored last.
        ``boot``: the boot it belongs to (default: this one)."""
        h = self.hdr
        seq = h.next_seq
        off = _slot_offset(slot)
        self.mem[off : off + 4] = bytes(4)  # a torn write leaves this slot invalid
        self.mem[off + 4 : off + codec.SLOT_SIZE] = bytes(codec.SLOT_SIZE - 4)
        h.next_seq = (seq + 1) & 0xFFFFFFFF
        self.commit()
        if not frames:
            flags |= codec.FLAG_NO_PYTHON_FRAME
        data = codec.encode_slot(
            kind=kind,
            seq=seq,
            action=action,
            reset_cause=h.boot_cause,
            boot=h.boot_count if boot is None else boot,
            uptime_ms=min(uptime_ms, UPTIME_MAX),
            flags=flags,
            heap_free=heap_free,
            alloc_size=min(alloc_size, 0xFFFFFFFF),
            stack_used=min(stack_used, 0xFFFFFFFF),
            depth=min(depth, 255),
            mark=self.mark_get(),
            firmware=FIRMWARE,
            exc_type=exc_type,
            message=message,
            traceback=[(f, line or None, fn) for f, line, fn in frames[: codec.NFRAMES]],
        )
        self.mem[off + 4 : off + codec.SLOT_SIZE] = data[4:]
        self.mem[off : off + 4] = data[:4]

    def write_posthoc(self, kind: int, message: str, boot: Optional[int] = None) -> None:
        """A record written after the fact for a boot that went down without its fault
        path (fs_posthoc_watchdog): from what survived (the mark), no Python frame,
        uptime 0, heap unknown, stack 0; counted as a fail-stop reboot after 0 ms."""
        slot = self.pick_slot(Action.REBOOT)
        assert slot is not None  # a fail-stop record always has one
        self.write_record(
            slot=slot,
            kind=kind,
            action=Action.REBOOT,
            flags=codec.FLAG_POSTHOC,
            uptime_ms=0,
            heap_free=None,
            alloc_size=0,
            stack_used=0,
            depth=0,
            exc_type="",
            message=message,
            frames=(),
            boot=boot,
        )
        self.count_reboot(0)

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
        cause, start a fresh crash-loop window after a power-on or pin reset, record a
        watchdog bite that had no early warning, decide safe mode, print the banner."""
        hdr_ok = self.load_header()
        recs = self.records()
        max_seq = max((r.seq for r in recs), default=0)
        max_boot = max((r.boot for r in recs), default=0)
        if not hdr_ok:
            # Rebuild the header only: valid slots and the mark block stay; nothing is
            # known to be seen (a keeper gets the newest record, at least once).
            self.mem[:MARK_START] = bytes(MARK_START)
            self.hdr = HeaderState(boot_count=max_boot)
        h = self.hdr
        if h.next_seq <= max_seq:
            h.next_seq = max_seq + 1
        h.boot_count = (h.boot_count + 1) & 0xFFFFFFFF
        cause = self._fuse_cause(hw_cause, hdr_ok)
        if cause in (RC_POWER_ON, RC_PIN):
            h.loop_count = 0  # a person (or a power cut) restarted it: a fresh window
            h.loop_uptime_ms = 0
        elif cause == RC_WATCHDOG and h.pending_cause == 0 and hdr_ok:
            # The watchdog bit with no early warning: recorded now, as the boot that hung.
            self.write_posthoc(Kind.WATCHDOG, POSTHOC_WATCHDOG, boot=h.boot_count - 1)
        h.boot_cause = cause
        h.pending_cause = 0
        if h.loop_count > h.loop_limit:
            h.state |= codec.STATE_SAFE_MODE
        else:
            h.state &= ~codec.STATE_SAFE_MODE
        self.commit()
        self.banner(write)

    def _fuse_cause(self, hw_cause: int, hdr_ok: bool) -> int:
        """One reset cause from the hardware's and the one the firmware left."""
        pending = self.hdr.pending_cause
        if hw_cause in (RC_POWER_ON, RC_BROWNOUT, RC_PIN):
            return hw_cause
        if 0 < pending <= RC_MAX:
            return pending
        if hw_cause != RC_UNKNOWN:
            return hw_cause
        return RC_SOFT if hdr_ok else RC_POWER_ON

    def banner(self, write: Callable[[str], object]) -> None:
        """failstop_print_banner: what the last boot's fault was, and safe mode."""
        h = self.hdr
        recs = self.records()
        r = recs[-1] if recs else None
        if (
            h.boot_cause in (RC_FAULT, RC_WATCHDOG)
            and r is not None
            and r.boot + 1 == h.boot_count
            and r.kind in Kind.__members__
        ):
            text = f"failstop: reboot after {r.kind} (seq {r.seq}, boot {r.boot})"
            if r.traceback:
                f = r.traceback[0]
                text += f" at {clean_text(f.file)}:{f.line or 0} in {clean_text(f.function)}"
            if r.message:
                text += ": " + clean_text(r.message)
            write(text + "\r\n")
        if h.safe_mode:
            write(
                f"failstop: safe mode ({h.loop_count} fail-stop reboots within the "
                "crash-loop window); main program not run\r\n"
            )

    def count_reboot(self, uptime_ms: int) -> None:
        """fs_count_reboot (crash-loop breaker): one fail-stop reboot after ``uptime_ms``.
        A boot that ran longer than the window (or whose uptime saturated) starts a
        fresh count."""
        h = self.hdr
        up = min(uptime_ms, UPTIME_MAX)
        total = h.loop_uptime_ms + up
        if h.loop_count == 0 or total > h.loop_window_ms or total > UPTIME_MAX:
            h.loop_count = 1
            h.loop_uptime_ms = up
        else:
            h.loop_count = min(h.loop_count + 1, 255)
            h.loop_uptime_ms = total

    def enter_reboot(self, kind: int, uptime_ms: int) -> None:
        """A REBOOT fault enters the fault path: counted there, once, and the reset cause
        left for the next boot (a double fault from here on resets directly)."""
        self.count_reboot(uptime_ms)
        self.hdr.pending_cause = RC_WATCHDOG if kind == Kind.WATCHDOG else RC_FAULT
        self.commit()

    def soft_reset(self) -> None:
        """failstop_soft_reset: a reset the program asked for; the crash loop is left alone."""
        self.hdr.pending_cause = RC_SOFT
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
