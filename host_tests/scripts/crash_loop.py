# Crash-loop breaker: more than 2 fail-stop reboots within the window -> safe mode.
import failstop

print("MAIN boot", failstop.boot_count(), "safe", failstop.safe_mode())
if failstop.boot_count() == 1:
    failstop.crash_loop(2, 60000)
if failstop.boot_count() < 10:
    failstop.panic("loop %d" % failstop.boot_count())  # FAULT
