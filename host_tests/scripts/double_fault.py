# A fault while the first is handled: printing the unhandled exception runs its
# argument's __str__, which raises with no handler left (FATAL). The first record
# (UNHANDLED) is kept and flagged DOUBLE_FAULT.
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.flags & 1)))
else:
    class Poisoned:
        def __str__(self):
            raise RuntimeError("poisoned __str__")

    def fail():
        raise ValueError(Poisoned())  # FAULT

    fail()
