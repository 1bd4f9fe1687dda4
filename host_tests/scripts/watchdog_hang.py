# A hang caught by the watchdog; the record carries the last mark. Feeding keeps it alive.
import failstop
import time

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.message, r.mark, r.location)))
else:
    failstop.watchdog(300)
    failstop.mark("feeding")
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 600:
        failstop.feed()
        time.sleep_ms(10)
    print("fed for 600 ms")
    failstop.mark("valve-wait")

    def wait_for_valve():
        while True:
            pass  # FAULT

    wait_for_valve()
