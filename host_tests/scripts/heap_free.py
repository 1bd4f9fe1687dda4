# The record's heap_free is the free GC heap at the fault: the same count as gc.mem_free()
# (nothing is allocated between the two: panic() prints a small int into a fixed buffer).
import gc
import failstop

r = failstop.last()
if r is None:
    gc.collect()
    failstop.panic(gc.mem_free())
else:
    print("HEAP", r.heap_free, r.message)
