# Imported at the REPL of the emulated Pico (test_rp2_field.py), not run as main.py: the
# host has the USB serial open but has stopped reading it. The CDC FIFO fills; with
# interrupts off (so the USB interrupt cannot take them) Ctrl-C bytes from the host
# arrive; then a fail-stop fault. Its console output waits for the host: the fault path
# must not hand the pending KeyboardInterrupt to the except clause below.
import machine
import time

SCRATCH1 = 0x40058010  # watchdog SCRATCH1: the handshake with the test (a probe reads it)
READY = 0x5A1160
SCRATCH2 = 0x40058014  # set by the except clause: evidence even when its output is stuck
ZALGO = 0x2A160
BUFF_STATUS = 0x50110058  # USB controller: a completed transfer per endpoint and direction
EP2_OUT = 1 << 5  # the CDC data OUT endpoint (MicroPython's descriptor: 0x02)


def fault():
    machine.disable_irq()  # until the reset: the fault path keeps them off
    machine.mem32[SCRATCH1] = READY
    t0 = time.ticks_ms()
    while not machine.mem32[BUFF_STATUS] & EP2_OUT:
        if time.ticks_diff(time.ticks_ms(), t0) > 20000:
            break
    machine.mem32[SCRATCH1] = 0
    return bytearray(10**9)  # FAULT


try:
    print("x" * 2048)  # more than the FIFO holds: the host does not read
    fault()
except BaseException as e:  # noqa: BLE001 (the point: nothing may reach here)
    machine.mem32[SCRATCH2] = ZALGO
    for _ in range(20):
        print("ZALGO", repr(e))
