# HALT: record, then stop for a debugger (no reset).
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.action)))
else:
    failstop.policy("OOM", "HALT")
    print("halting next")
    bytearray(1000000000)  # FAULT
    print("ZALGO after halt")
