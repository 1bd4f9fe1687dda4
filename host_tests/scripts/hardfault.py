# A CPU fault: a store to an unmapped address (unix: the null page -> SIGSEGV).
import failstop
import sys
import uctypes

ADDR = {"linux": 8}.get(sys.platform, 0xE0100000)

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.location)))
else:
    def poke():
        uctypes.bytearray_at(ADDR, 4)[0] = 1  # FAULT

    poke()
