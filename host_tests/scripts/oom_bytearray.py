# OOM from one huge allocation, inside two layers of except that must never run.
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.message, r.location, r.alloc_size, r.flags)))
else:
    def inner():
        try:
            buf = bytearray(1000000000)  # FAULT
        except MemoryError:
            print("ZALGO inner")
        return buf

    def outer():
        try:
            inner()
        except BaseException:
            print("ZALGO outer")

    outer()
    print("ZALGO survived")
