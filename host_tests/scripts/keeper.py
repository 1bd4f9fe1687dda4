# Keeper: fn(record) on the first boot after a fault, once, before the program.
import failstop


def keep(rec):
    print("KEPT", rec.kind, rec.message, rec.boot)


print("BOOT", failstop.boot_count(), failstop.reset_cause())
got = failstop.keeper(keep)
print("KEEPER AGAIN", failstop.keeper(keep))
if failstop.boot_count() == 1:
    failstop.panic("for the keeper")
print("DONE", got is not None)
