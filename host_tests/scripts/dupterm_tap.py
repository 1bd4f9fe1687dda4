# A program that mirrors its console to a Python stream (os.dupterm), then lets an
# exception escape main.py. The fault path prints the traceback itself: the stream's
# write() (Python) must not run there. Its mark goes to a watchdog scratch register,
# which survives the reset, since its output would go nowhere anyone reads.
import failstop
import io
import machine
import os

SCRATCH2 = 0x40058014
ZALGO = 0x2A160

r = failstop.last()
if r:
    print("LAST", repr((r.kind, r.exc_type, r.message, r.location)))
else:
    armed = []

    class Tap(io.IOBase):
        def write(self, buf):
            if armed:
                machine.mem32[SCRATCH2] = ZALGO
            return len(buf)

        def readinto(self, buf):
            return None

        def ioctl(self, op, arg):
            return 0

    os.dupterm(Tap())
    print("tapped")

    def lookup():
        return {}["valve"]  # FAULT

    armed.append(1)
    lookup()
