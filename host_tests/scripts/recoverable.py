# A scoped best-effort region: inside recoverable("OOM") / ("STACK") the fault behaves
# as stock MicroPython (caught, no record); a fragile() block inside it still PANICs;
# outside it, fail-stop again.
import failstop


def down(n):
    return down(n + 1) + 1


r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.message)))
if failstop.boot_count() == 1:
    with failstop.recoverable("OOM"):
        try:
            buf = bytearray(1000000000)
        except MemoryError:
            buf = bytearray(16)
            print("fell back to", len(buf))
    with failstop.recoverable("STACK"):
        try:
            down(0)
        except RuntimeError:
            print("caught deep recursion")
    print("records", len(failstop.records()))
    with failstop.recoverable("OOM"):
        with failstop.fragile():
            raise ValueError("torn commit")  # FAULT
elif failstop.boot_count() == 2:
    try:
        bytearray(1000000000)  # FAULT
    except MemoryError:
        print("ZALGO")
