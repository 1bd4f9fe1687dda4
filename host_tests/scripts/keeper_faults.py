# A keeper that faults: its own record (flagged IN_KEEPER) is never given to it, so it
# does not run again on every boot.
import failstop


def keep(rec):
    print("KEPT", rec.kind, rec.message, rec.boot)
    failstop.panic("keeper bug")  # FAULT


print("BOOT", failstop.boot_count(), failstop.reset_cause())
print("KEEPER", failstop.keeper(keep) is not None)
if failstop.boot_count() == 1:
    failstop.panic("for the keeper")
print("DONE", [(r.seq, r.message, r.flags >> 8 & 1) for r in failstop.records()])
