# _thread runs Python on the RP2040's core 1 (no GIL). Core 0 spins in its own function
# while the thread on core 1 runs out of memory: the record has the thread's frames and
# none of core 0's; core 0 is stopped before the record is written.
import _thread
import failstop
import time

r = failstop.last()
if r:
    print("LAST", repr((r.kind, r.exc_type, r.traceback)))
else:

    def grow():
        return bytearray(10**9)  # FAULT

    def worker():
        time.sleep_ms(100)  # core 0 is in spin() by then
        grow()

    def spin():
        n = 0
        while True:
            n += 1  # FAULT core 0

    _thread.start_new_thread(worker, ())
    spin()
