# A program that never ends and faults once, early, after each RUN-pin reset (the Pico's
# reset button, or a supervisor chip): SRAM, and with it the retained region, survives.
import failstop
import time

print("BOOT", failstop.boot_count(), failstop.reset_cause(), "safe", failstop.safe_mode())
if failstop.reset_cause() in ("power_on", "pin"):
    failstop.panic("early fault")  # FAULT
print("RUNNING")
while True:
    time.sleep_ms(20)
