# Boots that each ran for months (uptime saturated) before their fault are never a
# crash loop, even with a limit of one reboot.
import failstop
import time

r = failstop.last()
if r:
    print("LAST", r.uptime_ms, failstop.safe_mode())
if failstop.boot_count() == 1:
    failstop.crash_loop(1, 60000)
if failstop.boot_count() < 5:
    time.sleep_ms(30)
    failstop.panic("after months")  # FAULT
print("DONE", failstop.safe_mode())
