# A hang while mark() runs: the watchdog's early warning may interrupt a mark() half
# written. The record's mark is then one of the two tags or none, never a mix of them.
import failstop

r = failstop.last()
if r:
    print("MARK", repr((r.kind, r.mark)))
else:
    a, b = "a" * 16, "b" * 16
    failstop.watchdog(200)
    while True:
        failstop.mark(a)
        failstop.mark(b)
