# The record's depth is the number of active Python frames, exactly: three are decoded,
# the rest counted. One panic per boot, 1 to 10 frames of down() under the module's.
import failstop


def down(n):
    if n > 1:
        return down(n - 1)  # CALL
    failstop.panic("deep")  # FAULT


r = failstop.last()
if r:
    print("DEPTH", repr((r.seq, r.depth, r.traceback, r.flags)))
step = failstop.boot_count() - 1
if step == 0:
    failstop.crash_loop(20, 60000)  # ten deliberate reboots are not a crash loop
if step < 10:
    down(step + 1)  # STEP
print("DONE", step)
