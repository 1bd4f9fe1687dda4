# The other way round from core1_fault.py: a thread spins on core 1 in its own function
# while the main program on core 0 runs out of memory. The record has core 0's frames
# only; core 1 is stopped before the record is written.
import _thread
import failstop
import time

r = failstop.last()
if r:
    print("LAST", repr((r.kind, r.exc_type, r.traceback)))
else:

    def busy():
        n = 0
        while True:
            n += 1

    def grow():
        return bytearray(10**9)  # FAULT

    _thread.start_new_thread(busy, ())
    time.sleep_ms(100)  # core 1 is in busy() by then
    grow()
