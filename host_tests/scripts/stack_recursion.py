# Deep recursion: the stack check fires; except RuntimeError must never run.
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.message, r.location, r.depth, r.stack_used, r.flags)))
else:
    def down(n):
        return down(n + 1) + 1  # FAULT

    try:
        down(0)
    except RuntimeError:
        print("ZALGO recursion")
