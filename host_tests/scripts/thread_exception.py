# An exception escaping a thread ends that thread and is printed, as in stock
# MicroPython; it is not the main program's UNHANDLED fault (a thread that must not die
# quietly wraps its work in failstop.fragile()).
import failstop
import time

try:
    import _thread
except ImportError:
    _thread = None

if _thread is None:
    print("no _thread")
else:

    def worker():
        raise ValueError("thread ends")

    _thread.start_new_thread(worker, ())
    time.sleep_ms(200)
    print("main still running", len(failstop.records()))
