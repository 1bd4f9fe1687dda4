# A program that never ends (the normal case in the field) and faults once, early,
# after each power-on.
import failstop
import time

print("BOOT", failstop.boot_count(), failstop.reset_cause(), "safe", failstop.safe_mode())
if failstop.reset_cause() == "power_on":
    failstop.panic("early fault")  # FAULT
print("RUNNING")
while True:
    time.sleep_ms(20)
