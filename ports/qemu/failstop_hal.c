// failstop HAL for the qemu port on Cortex-M (board MPS2_AN385, QEMU mps2-an385).
//  - retained RAM: the .failstop_retained NOLOAD section, in a linker memory region
//    of its own (QEMU rewrites the ELF's load segments on every reset);
//  - reset: through the CMSDK APB watchdog (SYSRESETREQ if it does not bite);
//  - watchdog: its first expiry is an NMI, the early warning that records WATCHDOG;
//    the second expiry resets the board;
//  - hard faults: HardFault/BusFault/UsageFault/MemManage record the stacked PC/LR;
//  - uptime: SysTick at 1 kHz from the 25 MHz core clock;
//  - reset cause: none in hardware; the core keeps it in the region.

#include "py/mphal.h"
#include "py/runtime.h"
#include "failstop.h"

#define FS_CPU_HZ (25000000u)

// CMSDK APB watchdog (ARM DDI 0479), clocked at the core clock on MPS2.
#define WDOG_BASE (0x40008000u)
#define WDOG_LOAD (*(volatile uint32_t *)(WDOG_BASE + 0x000))
#define WDOG_CTRL (*(volatile uint32_t *)(WDOG_BASE + 0x008))
#define WDOG_INTCLR (*(volatile uint32_t *)(WDOG_BASE + 0x00c))
#define WDOG_MIS (*(volatile uint32_t *)(WDOG_BASE + 0x014))
#define WDOG_LOCK (*(volatile uint32_t *)(WDOG_BASE + 0xc00))
#define WDOG_UNLOCK_KEY (0x1acce551u)
#define WDOG_CTRL_INTEN (1u << 0)
#define WDOG_CTRL_RESEN (1u << 1)

// Cortex-M3 system control space.
#define SYST_CSR (*(volatile uint32_t *)0xe000e010u)
#define SYST_RVR (*(volatile uint32_t *)0xe000e014u)
#define SYST_CVR (*(volatile uint32_t *)0xe000e018u)
#define SCB_AIRCR (*(volatile uint32_t *)0xe000ed0cu)
#define SCB_CFSR (*(volatile uint32_t *)0xe000ed28u)
#define SCB_HFSR (*(volatile uint32_t *)0xe000ed2cu)
#define SCB_MMFAR (*(volatile uint32_t *)0xe000ed34u)
#define SCB_BFAR (*(volatile uint32_t *)0xe000ed38u)

#define FS_WDT_MAX_MS (0xffffffffu / (FS_CPU_HZ / 1000u))

__attribute__((section(".failstop_retained"), aligned(8)))
static failstop_region_t fs_retained;

static volatile uint32_t fs_ms;
static volatile bool fs_resetting; // the watchdog's next expiry is our own reset

uint8_t *failstop_hal_retained(size_t *len) {
    // The first HAL call of a boot: start the millisecond clock.
    SYST_RVR = FS_CPU_HZ / 1000u - 1;
    SYST_CVR = 0;
    SYST_CSR = 7; // core clock, interrupt, enable
    *len = sizeof(fs_retained);
    return (uint8_t *)&fs_retained;
}

uint8_t failstop_hal_reset_cause(void) {
    return FAILSTOP_RC_UNKNOWN; // AN385 has no reset-cause register
}

uint32_t failstop_hal_uptime_ms(void) {
    return fs_ms;
}

// Microseconds since boot (for the board's time module).
uint64_t failstop_qemu_ticks_us(void) {
    uint32_t ms, cvr;
    do {
        ms = fs_ms;
        cvr = SYST_CVR;
    } while (ms != fs_ms);
    return (uint64_t)ms * 1000u + (SYST_RVR - cvr) / (FS_CPU_HZ / 1000000u);
}

void __wrap_SysTick_Handler(void) {
    if (fs_ms != UINT32_MAX) { // saturates after 49.7 days: a long run never looks short
        fs_ms = fs_ms + 1;
    }
}

void failstop_hal_write(const char *str, size_t len) {
    mp_hal_stdout_tx_strn(str, len); // the UART, polled: no allocation, no IRQ
}

// PRIMASK: a CPU fault still escalates to HardFault (a double fault, not a hang).
void failstop_hal_irq_disable(void) {
    __asm volatile ("cpsid i" : : : "memory");
}

uint32_t failstop_hal_context(void) {
    return 1; // one core
}

uint32_t failstop_hal_cas(volatile uint32_t *p, uint32_t expect, uint32_t desired) {
    __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expect;
}

void failstop_hal_stop_others(void) {
}


static void fs_wdt_write(uint32_t load, uint32_t ctrl) {
    WDOG_LOCK = WDOG_UNLOCK_KEY;
    WDOG_LOAD = load; // restarts the count
    WDOG_CTRL = ctrl;
    WDOG_LOCK = 0;
}

void failstop_hal_reset(uint8_t cause) {
    (void)cause; // the core keeps it in the region
    failstop_hal_irq_disable();
    fs_resetting = true;
    // Through the watchdog, as on a board in the field: NMI after 1 ms, reset after 2 ms.
    // An expiry already pending (a hang caught in the NMI) resets after 1 ms.
    fs_wdt_write(FS_CPU_HZ / 1000u, WDOG_CTRL_INTEN | WDOG_CTRL_RESEN);
    for (volatile uint32_t n = 0; n < 20000000u; ++n) {
    }
    // The watchdog did not bite: ask the core for a system reset.
    __asm volatile ("dsb" : : : "memory");
    SCB_AIRCR = 0x05fa0004u; // VECTKEY | SYSRESETREQ
    __asm volatile ("dsb" : : : "memory");
    for (;;) {
    }
}

void failstop_hal_halt(void) {
    failstop_hal_irq_disable();
    fs_wdt_write(0xffffffffu, 0); // a debugger's halt stops the watchdog too
    SYST_CSR = 0;
    for (;;) {
        __asm volatile ("wfi");
    }
}

// The program's watchdog (or none) becomes the fault path's budget; its NMI then
// means the fault path itself hung: a double fault, which resets at once.
void failstop_hal_wdt_budget(uint32_t ms) {
    fs_wdt_write(ms * (FS_CPU_HZ / 1000u), WDOG_CTRL_INTEN | WDOG_CTRL_RESEN);
}

void failstop_hal_wdt_arm(uint32_t timeout_ms) {
    fs_wdt_write(timeout_ms * (FS_CPU_HZ / 1000u), WDOG_CTRL_INTEN | WDOG_CTRL_RESEN);
}

void failstop_hal_wdt_feed(void) {
    WDOG_LOCK = WDOG_UNLOCK_KEY;
    WDOG_INTCLR = 1; // clears the interrupt and reloads the count
    WDOG_LOCK = 0;
}

uint32_t failstop_hal_wdt_max_ms(void) {
    return FS_WDT_MAX_MS;
}

// NMI: on MPS2 the watchdog interrupt is wired to it. The first expiry means the
// program hung: record WATCHDOG with the mark and location, then reset. The second
// expiry (while we reset) resets the board in hardware.
void __real_NMI_Handler(void);
void __wrap_NMI_Handler(void) {
    if (fs_resetting) {
        for (;;) {
        }
    }
    if (WDOG_MIS & 1) {
        failstop_watchdog_timeout();
    }
    __real_NMI_Handler();
}

// Fault handlers: the CPU stacked r0-r3, r12, lr, pc, xpsr on the active stack.
void failstop_qemu_cpu_fault(const uint32_t *frame, uint32_t exc);
void failstop_qemu_cpu_fault(const uint32_t *frame, uint32_t exc) {
    #if !MICROPY_FAILSTOP_CPU_FAULT_TEXT
    (void)exc;
    failstop_cpu_fault(NULL, 0, NULL, frame[6], frame[5]);
    #else
    uint32_t cfsr = SCB_CFSR;
    const char *what = "hard fault, HFSR ";
    uint32_t value = SCB_HFSR;
    if (cfsr & (1u << 15)) { // BFARVALID
        what = "bus fault at ";
        value = SCB_BFAR;
    } else if (cfsr & (1u << 7)) { // MMARVALID
        what = "memory fault at ";
        value = SCB_MMFAR;
    } else if (cfsr & 0xff00u) {
        what = "bus fault, CFSR ";
        value = cfsr;
    } else if (cfsr & 0xffff0000u) {
        what = "usage fault, CFSR ";
        value = cfsr;
    }
    failstop_cpu_fault(what, value,
        exc == 3 ? " (HardFault)" : exc == 4 ? " (MemManage)" : exc == 5 ? " (BusFault)" : " (UsageFault)",
        frame[6], frame[5]);
    #endif
}

#define FS_FAULT_ENTRY(name, num) \
    __attribute__((naked)) void __wrap_##name(void) { \
        __asm volatile ( \
            "tst lr, #4\n" \
            "ite eq\n" \
            "mrseq r0, msp\n" \
            "mrsne r0, psp\n" \
            "movs r1, #" #num "\n" \
            "b failstop_qemu_cpu_fault\n"); \
    }

FS_FAULT_ENTRY(HardFault_Handler, 3)
FS_FAULT_ENTRY(MemManage_Handler, 4)
FS_FAULT_ENTRY(BusFault_Handler, 5)
FS_FAULT_ENTRY(UsageFault_Handler, 6)
