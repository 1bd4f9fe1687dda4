# Imported at the REPL of the emulated Pico (test_rp2_field.py): a watchdog timeout too
# short for an early warning (1 ms), then a fault 0.4 ms after feeding. Recording takes
# about 0.9 ms on the Pico: the program's timeout would bite mid-record; the fault path
# re-arms the watchdog to its own budget on entry, so the record is complete.
import failstop
import machine
import time


def late_fault():
    failstop.watchdog(1)
    t = time.ticks_us()
    while time.ticks_diff(time.ticks_us(), t) < 400:
        pass
    machine.panic("short budget")  # FAULT


late_fault()
