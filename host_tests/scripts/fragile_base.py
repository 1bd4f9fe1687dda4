# fragile() and BaseException: KeyboardInterrupt (the host's Ctrl-C) and GeneratorExit
# (gen.close()) pass through unchanged; SystemExit and asyncio.CancelledError tear a
# commit: PANIC.
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type)))
if failstop.boot_count() == 1:
    try:
        with failstop.fragile():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        print("passed KeyboardInterrupt")

    def gen():
        with failstop.fragile():
            yield 1
            yield 2

    g = gen()
    next(g)
    g.close()
    print("passed GeneratorExit")
    try:
        with failstop.fragile():
            raise SystemExit(3)  # FAULT
    except BaseException:
        print("ZALGO")
elif failstop.boot_count() == 2:
    try:
        from asyncio import CancelledError
    except ImportError:
        # A firmware without asyncio: the same class as extmod/asyncio/core.py defines.
        class CancelledError(BaseException):
            pass

    try:
        with failstop.fragile():
            raise CancelledError  # FAULT
    except BaseException:
        print("ZALGO")
