# A CPU fault inside the fault path (the test hook stores to an unmapped address while
# the first record is being written): a double fault. The first record (PANIC) is kept,
# flagged DOUBLE_FAULT, and the board resets at once.
import failstop
import sys

ADDR = {"linux": 8}.get(sys.platform, 0xE0100000)

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.message, r.flags & 1)))
else:
    failstop._inject("DOUBLE", ADDR)
    try:
        failstop.panic("first")  # FAULT
    except BaseException:
        print("ZALGO")
