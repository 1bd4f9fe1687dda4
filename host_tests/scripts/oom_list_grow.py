# OOM while a list grows until the heap is full; a bare except waits to swallow it.
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.location, r.heap_free, r.alloc_size, r.flags)))
else:
    def fill(keep):
        while True:
            keep.append(bytearray(1024))  # FAULT

    keep = []
    try:
        fill(keep)
    except:  # noqa: E722
        print("ZALGO bare except", len(keep))
