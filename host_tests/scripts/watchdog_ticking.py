# A program in the field: it arms a short watchdog and runs forever, feeding it.
# Reading its records from the host must neither stop it for good nor let it bite.
import failstop, time
failstop.watchdog(1500)
n = 0
while True:
    failstop.feed()
    failstop.mark("loop")
    n += 1
    print("tick", n)
    time.sleep_ms(300)
