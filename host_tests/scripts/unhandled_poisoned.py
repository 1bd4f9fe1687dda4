# An exception escaping main.py whose argument's __str__ runs Python code (here it would
# print and raise): the fault path prints the traceback from its record, never running
# the program's code. One clean UNHANDLED record, no double fault.
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.location, r.flags)))
else:
    class Poisoned:
        def __str__(self):
            print("ZALGO")
            raise RuntimeError("poisoned __str__")

    def fail():
        raise ValueError(Poisoned())  # FAULT

    fail()
