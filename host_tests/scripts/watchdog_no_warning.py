# Imported at the REPL of the emulated Pico (test_rp2_field.py): a timeout too short for
# an early warning (1 ms), then a hang. Only the hardware resets the board: the next
# boot must still count and report it (reset cause 'watchdog', a post-hoc record).
import failstop

failstop.mark("spin")
failstop.watchdog(1)
while True:
    pass
