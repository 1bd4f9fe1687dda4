# The watchdog's early warning lands while mark() is half way through its copy (a test
# hook makes the worst moment deterministic): the record carries no mark rather than a
# torn one, and after the reboot mark() reads as none until it is set again.
import failstop

r = failstop.last()
if r:
    print("MARK", repr((r.kind, r.mark, r.location[2], r.location[1], failstop.mark())))
    failstop.mark("c" * 16)
    print("AGAIN", repr(failstop.mark()))
else:
    failstop.mark("a" * 16)
    failstop._inject("MARK")
    failstop.mark("b" * 16)  # FAULT
    print("ZALGO mark returned")
