# RAISE-policy faults are best effort: they never evict the record of a crash the
# program has not seen, and there is at most one RAISE record per boot.
import failstop

if failstop.boot_count() == 1:
    failstop.panic("the evidence")  # FAULT
failstop.policy("OOM", "RAISE")
for i in range(4):
    try:
        bytearray(1000000000)
    except MemoryError:
        print("probe", i, "caught")
r = failstop.last()
print("LAST", repr((r.seq, r.kind, r.message)))
print("RECORDS", repr([(r.kind, r.action, r.boot) for r in failstop.records()]))
