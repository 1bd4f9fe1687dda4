# Several threads (on the RP2040: both cores) fault at the same moment: the fault path is
# claimed by one; exactly one record, not flagged as a double fault; one reboot.
import failstop
import time

try:
    import _thread
except ImportError:
    _thread = None

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.message[:5], r.flags)))
    print("RECORDS", len(failstop.records()))
elif _thread is None:
    print("no _thread")
else:
    go = [False]

    def racer(tag):
        while not go[0]:
            pass
        failstop.panic(tag)  # FAULT

    for i in range(3):
        try:
            _thread.start_new_thread(racer, ("racer%d" % i,))
        except OSError:
            break  # the RP2040 runs one thread besides the main one: on core 1
    time.sleep_ms(50)
    go[0] = True
    racer("main")
