# Imported at the REPL of the emulated Pico (test_rp2_field.py), which stalls the CPU
# for 50 ms right after the hardware takes the second feed (as a long interrupt handler
# there would). The program feeds in time throughout: no WATCHDOG record may come of it.
import failstop
import machine
import time

failstop.watchdog(200)  # early warning at 187.5 ms
time.sleep_ms(150)
failstop.feed()  # FAULT (where a wrong early warning would place it)
for _ in range(4):
    time.sleep_ms(100)
    failstop.feed()
print("ALIVE")
machine.panic("done")
