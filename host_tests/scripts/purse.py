# The seed's Purse (prepare-commit): a fault after the commit point must not be
# swallowed by the broad except around the call, or the purses stay half-updated.
import failstop


def nat(n):
    if n >= 0:
        return n
    raise ValueError("not Nat %d" % n)


class Purse:
    def __init__(self, units, unit_value):
        self.units = nat(units)
        self.unit_value = nat(unit_value)

    def __str__(self):
        return "%d * %d" % (self.units, self.unit_value)

    def deposit(self, my_delta, src):
        # prepare: every check that can fail, no effects
        nat(src.units * src.unit_value - nat(my_delta) * self.unit_value)
        with failstop.fragile():  # COMMIT POINT
            self.units += my_delta
            src.units -= my_delta * self.unit_value // src.unit_value  # FAULT


r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.message, r.location, r.traceback)))
else:
    wallet = Purse(0, 0)  # unit value never set: a latent bug
    savings = Purse(50, 0)
    try:
        wallet.deposit(5, savings)
    except Exception as e:
        print("ZALGO swallowed", repr(e), "wallet", wallet, "savings", savings)
