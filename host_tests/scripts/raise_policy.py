# RAISE policy: exactly stock MicroPython behaviour (compared with a stock build).
try:
    import failstop

    for kind in ("OOM", "STACK", "UNHANDLED"):
        failstop.policy(kind, "RAISE")
except ImportError:
    pass
import micropython

try:
    bytearray(1000000000)
except MemoryError as e:
    print("caught", repr(e))


def down(n):
    return down(n + 1) + 1


try:
    down(0)
except RuntimeError as e:
    print("caught", repr(e))

micropython.heap_lock()
try:
    [1, 2, 3]
except MemoryError as e:
    micropython.heap_unlock()
    # Its message depends on the port's emergency exception buffer: the type only.
    print("caught", type(e).__name__, "with the heap locked")
else:
    micropython.heap_unlock()
print("after")
raise OSError(5, "escapes")
