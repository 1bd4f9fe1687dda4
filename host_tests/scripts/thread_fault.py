# A fault on another thread (on the RP2040: core 1) while the main program runs Python:
# recorded with the thread's own location, the main thread's frames not mixed in.
import failstop
import time

try:
    import _thread
except ImportError:
    _thread = None

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.message, r.location, [f[2] for f in r.traceback])))
elif _thread is None:
    print("no _thread")
else:

    def worker(tag):
        time.sleep_ms(50)
        failstop.panic(tag)  # FAULT

    def busy(n):
        while True:
            n += 1
            if n % 1000 == 0:
                time.sleep_ms(1)

    _thread.start_new_thread(worker, ("in thread",))
    try:
        busy(0)
    except BaseException:
        print("ZALGO")
