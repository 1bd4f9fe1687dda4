# Both cores run out of memory at the same moment (the emulated cores step in lockstep):
# one fault path wins the claim and writes its record; the other core waits and is
# stopped. One record, complete, not a double fault; one reboot.
import _thread
import failstop
import time

r = failstop.last()
if r:
    print("LAST", repr((r.kind, r.flags, r.traceback[0][2], len(failstop.records()))))
else:
    go = []

    def grow1():
        return bytearray(10**9)  # FAULT

    def grow0():
        return bytearray(10**9)  # FAULT

    def worker():
        while not go:
            pass
        grow1()

    _thread.start_new_thread(worker, ())
    time.sleep_ms(50)
    go.append(1)
    grow0()
