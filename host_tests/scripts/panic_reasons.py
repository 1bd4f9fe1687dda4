# panic() accepts anything and never raises: one reason per boot.
import failstop
import machine


class Unprintable:
    def __str__(self):
        raise ValueError("no str for you")


reasons = [
    lambda: "sensor stuck",
    lambda: 42,
    lambda: KeyError("valve"),
    lambda: None,
    lambda: "x" * 10240,
    lambda: Unprintable(),
]

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.message, r.location, r.flags)))
step = failstop.boot_count() - 1
if step == 0:
    failstop.crash_loop(10, 60000)  # six deliberate reboots are not a crash loop
if step < len(reasons):
    reason = reasons[step]()
    try:
        if step % 2:
            failstop.panic(reason)  # FAULT
        else:
            machine.panic(reason)  # FAULT
    except BaseException:
        print("ZALGO panic returned")
print("DONE", step)
