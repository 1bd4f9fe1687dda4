# OOM with the heap locked (as in an interrupt handler).
import failstop
import micropython

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.message, r.location, r.flags)))
else:
    def isr_like():
        micropython.heap_lock()
        try:
            return [1, 2, 3]  # FAULT
        except MemoryError:
            print("ZALGO locked")
        finally:
            micropython.heap_unlock()

    isr_like()
