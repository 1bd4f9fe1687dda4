# A board that keeps resetting (not a fault): host tools must give up in bounded time.
import machine
import time

time.sleep_ms(30)
machine.reset()
