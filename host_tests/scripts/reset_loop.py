# A board that keeps resetting (not a fault): host tools must give up in bounded time.
# Ctrl-C from the host cannot stop it (on a USB console it otherwise would).
import machine
import micropython
import time

micropython.kbd_intr(-1)
time.sleep_ms(30)
machine.reset()
