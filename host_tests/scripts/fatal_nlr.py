# FATAL: an exception with no NLR handler at all (nlr_jump_fail).
import failstop

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.message, r.location)))
else:
    def boom():
        failstop._inject("FATAL")  # FAULT

    boom()
