# mark(tag) allocates nothing: it works with the heap locked (as in a hard IRQ handler).
import failstop
import micropython

failstop.mark("before-" + str(7))  # not an interned string
micropython.heap_lock()
failstop.mark("in-irq")
micropython.heap_unlock()
print("MARK", failstop.mark())
