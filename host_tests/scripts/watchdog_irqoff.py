# A hang with interrupts off (a spin inside a critical section): the watchdog's early
# warning still records it (on RP2040 an NMI; on MPS2 the watchdog's NMI). Where the
# port has no machine.disable_irq, the same hang with interrupts on.
import failstop
import machine

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.mark, r.location)))
else:
    failstop.watchdog(300)
    failstop.mark("irq-off")
    disable_irq = getattr(machine, "disable_irq", None)
    print("IRQ OFF", disable_irq is not None)

    def critical():
        state = disable_irq() if disable_irq else None
        while True:
            pass  # FAULT
        machine.enable_irq(state)

    critical()
