// failstop integration glue for the rp2 port: where MicroPython and pico-sdk meet the
// failstop core, through --wrap and the SDK's weak handlers (the platform itself is in
// failstop_hal.c):
//  - main.py: pyexec_file_if_exists("main.py") from main.c is wrapped to bracket the
//    main program (UNHANDLED faults, healthy runs) and to skip it in safe mode;
//  - USB: mp_usbd_init is wrapped, so the boot banner written before USB was up is sent;
//  - watchdog: watchdog_enable/watchdog_update (failstop.watchdog and machine.WDT) are
//    wrapped for the early warning, a timer alarm routed to the NMI (isr_nmi);
//  - hard faults: isr_hardfault (a weak pico-sdk symbol) records the stacked PC/LR;
//  - pico-sdk's panic() (PICO_PANIC_FUNCTION) and failed C asserts are FATAL faults.
#include <stdarg.h>
#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/builtin.h"
#include "shared/runtime/pyexec.h"
#include "failstop.h"
#include "failstop_pyexec.h"
#include "failstop_rp2.h"

#include "hardware/irq.h"
#include "hardware/structs/syscfg.h"
#include "hardware/structs/timer.h"
#include "hardware/timer.h"
#include "hardware/watchdog.h"

#define fs_warn_us failstop_rp2_warn_us

#if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
void __real_mp_usbd_init(void);
void __wrap_mp_usbd_init(void) {
    __real_mp_usbd_init();
    failstop_rp2_usb_started();
}
#endif

// --- watchdog with an early warning -----------------------------------------------
// The RP2040 watchdog has no interrupt: a timer alarm, armed a little before the
// watchdog would bite, is the early warning. Its interrupt is routed to the NMI
// (SYSCFG PROC0_NMI_MASK) and kept out of the NVIC, so a hang with interrupts off
// (machine.disable_irq(), a spin in a critical section) is recorded too.

static int fs_alarm = -1;
static uint32_t fs_alarm_bit;
static volatile uint32_t fs_fed_us; // 32-bit: one store, so the NMI never reads it torn

static void fs_alarm_set(void) {
    uint32_t target = fs_fed_us + fs_warn_us;
    timer_hw->alarm[fs_alarm] = target; // arms the alarm
    if ((int32_t)(time_us_32() - target) >= 0) {
        hw_set_bits(&timer_hw->intf, fs_alarm_bit); // the deadline has already passed
    }
}

// NMI (our alarm only): not fed since the deadline was set, the program hung. Record
// WATCHDOG (with the mark and the interrupted Python location), then reset.
void isr_nmi(void) {
    if (fs_alarm < 0 || !(timer_hw->ints & fs_alarm_bit)) {
        return;
    }
    hw_clear_bits(&timer_hw->intf, fs_alarm_bit);
    timer_hw->intr = fs_alarm_bit;
    if (fs_warn_us == 0) {
        return;
    }
    if (time_us_32() - fs_fed_us < fs_warn_us) {
        fs_alarm_set(); // fed in the meantime: wait for the new deadline
        return;
    }
    failstop_watchdog_timeout();
}

// Every arming goes through here: failstop.watchdog() and machine.WDT (machine_wdt.c
// calls watchdog_enable from another file, so --wrap reaches it), so a hang under
// either leaves a WATCHDOG record.
void __wrap_watchdog_enable(uint32_t delay_ms, bool pause_on_debug) {
    uint32_t timeout_us = delay_ms * 1000u;
    // Warn a little before the hardware bites: 1/16 of the timeout, 1 to 50 ms. Recording
    // takes about a millisecond (bench-rp2.md); the slack covers flash writes, which
    // stall the CPU.
    uint32_t slack = MIN(MAX(timeout_us / 16u, 1000u), 50000u);
    // The NMI ignores the alarm while the deadline changes; the feed time is taken
    // before the hardware is fed, so the early deadline never lies after the real one.
    fs_warn_us = 0;
    fs_fed_us = time_us_32();
    __real_watchdog_enable(delay_ms, pause_on_debug);
    if (timeout_us <= slack) {
        return; // too short to warn: the hardware resets (cause: watchdog, recorded post hoc)
    }
    if (fs_alarm < 0) {
        int alarm = hardware_alarm_claim_unused(false);
        if (alarm < 0) {
            return; // no alarm free: no early warning, the hardware still resets
        }
        fs_alarm_bit = 1u << alarm;
        irq_set_enabled(TIMER_IRQ_0 + alarm, false); // NMI only
        hw_set_bits(&timer_hw->inte, fs_alarm_bit);
        fs_alarm = alarm;
        hw_set_bits(&syscfg_hw->proc0_nmi_mask, 1u << (TIMER_IRQ_0 + alarm));
    }
    fs_warn_us = timeout_us - slack;
    fs_alarm_set();
}

// Feeding: failstop.feed() and machine.WDT.feed(). The feed time first, then the
// hardware: an early warning taken in between (a long interrupt handler right after
// the feed) sees the new time and waits for the new deadline, instead of recording a
// hang that the hardware, already fed, would never have had.
void __real_watchdog_update(void);
void __wrap_watchdog_update(void) {
    fs_fed_us = time_us_32();
    __real_watchdog_update();
}

// --- C asserts and pico-sdk panics ---------------------------------------------------

// A tiny formatter for pico-sdk's panic texts (%s %c %d %i %u %x %p %%): no allocation,
// no libc printf (which may allocate, lock or print).
static size_t fs_vformat(char *out, size_t cap, const char *fmt, va_list ap) {
    size_t n = 0;
    for (const char *f = fmt; *f && n < cap; ++f) {
        if (*f != '%' || f[1] == 0) {
            out[n++] = *f;
            continue;
        }
        char c = *++f;
        while (c == 'l' || c == 'z' || (c >= '0' && c <= '9')) {
            c = *++f; // flags and widths: ignored
        }
        char num[11];
        const char *p = num;
        size_t len = 0;
        switch (c) {
            case 's':
                p = va_arg(ap, const char *);
                p = p ? p : "(null)";
                len = strlen(p);
                break;
            case 'c':
                num[0] = (char)va_arg(ap, int);
                len = 1;
                break;
            case 'd':
            case 'i':
            case 'u': {
                int v = va_arg(ap, int);
                bool neg = c != 'u' && v < 0;
                p = failstop_utoa(num + sizeof(num), neg ? -(mp_uint_t)v : (mp_uint_t)v);
                if (neg) {
                    *(char *)--p = '-';
                }
                len = num + sizeof(num) - p;
                break;
            }
            case 'x':
            case 'X':
            case 'p': {
                uint32_t v = va_arg(ap, uint32_t);
                char *q = num + sizeof(num);
                do {
                    *--q = "0123456789abcdef"[v & 15];
                    v >>= 4;
                } while (v);
                p = q;
                len = num + sizeof(num) - q;
                break;
            }
            default:
                num[0] = c;
                len = 1;
                break;
        }
        for (size_t i = 0; i < len && n < cap; ++i) {
            out[n++] = p[i];
        }
    }
    return n;
}

// pico-sdk's panic() (hard_assert, claims of hardware in use, "not supported", ...) comes
// here (PICO_PANIC_FUNCTION, failstop_port.cmake) instead of printing through stdio and
// stopping at a breakpoint: FATAL, with its text.
NORETURN void failstop_rp2_panic(const char *fmt, ...);
NORETURN void failstop_rp2_panic(const char *fmt, ...) {
    char msg[sizeof(((failstop_record_t *)0)->message)];
    static const char pre[] = "panic: ";
    memcpy(msg, pre, sizeof(pre) - 1);
    size_t n = sizeof(pre) - 1;
    va_list ap;
    va_start(ap, fmt);
    n += fs_vformat(msg + n, sizeof(msg) - n, fmt ? fmt : "", ap);
    va_end(ap);
    failstop_fatal(msg, n);
}

// A failed C assert (MicroPython and pico-sdk in a debug build, the C library): FATAL,
// "assert <expr> at <file>:<line>". Replaces main.c's weak one (printf, then panic) and
// newlib's (fiprintf, then abort).
void __assert_func(const char *file, int line, const char *func, const char *expr) {
    (void)func;
    failstop_fatal_assert(file, line, expr);
}

#if MICROPY_FAILSTOP_RP2_TEST_HOOKS
// Test hooks, not an API: reach the two routes above from Python, as no correct program
// can (the emulated-Pico tests use them). _failstop_rp2.sdk_panic(text) calls pico-sdk's
// panic() with a format; _failstop_rp2.c_assert() fails a C assert.
void panic(const char *fmt, ...);
static mp_obj_t fs_test_sdk_panic(mp_obj_t text) {
    panic("%s (%d, 0x%x)", mp_obj_str_get_str(text), -42, 0xf5u);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(fs_test_sdk_panic_obj, fs_test_sdk_panic);

static mp_obj_t fs_test_c_assert(void) {
    void (*volatile fail)(const char *, int, const char *, const char *) = __assert_func;
    fail("ports/rp2/failstop_hal.c", __LINE__, __func__, "hook != 0");
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(fs_test_c_assert_obj, fs_test_c_assert);

static const mp_rom_map_elem_t fs_test_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__failstop_rp2) },
    { MP_ROM_QSTR(MP_QSTR_sdk_panic), MP_ROM_PTR(&fs_test_sdk_panic_obj) },
    { MP_ROM_QSTR(MP_QSTR_c_assert), MP_ROM_PTR(&fs_test_c_assert_obj) },
};
static MP_DEFINE_CONST_DICT(fs_test_globals, fs_test_globals_table);

const mp_obj_module_t failstop_rp2_test_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&fs_test_globals,
};
MP_REGISTER_MODULE(MP_QSTR__failstop_rp2, failstop_rp2_test_module);
#endif

// --- hard fault ------------------------------------------------------------------

// Cortex-M0+ has one fault (HardFault) and no fault status registers: record the
// stacked PC and LR (frame: r0-r3, r12, lr, pc, xpsr).
void failstop_rp2_hardfault(const uint32_t *frame);
void failstop_rp2_hardfault(const uint32_t *frame) {
    #if MICROPY_FAILSTOP_CPU_FAULT_TEXT
    failstop_cpu_fault("hard fault at ", frame[6], "", frame[6], frame[5]);
    #else
    failstop_cpu_fault(NULL, 0, NULL, frame[6], frame[5]);
    #endif
}

// Overrides pico-sdk's weak isr_hardfault (which stops at a breakpoint). Thumb-1 only.
__attribute__((naked)) void isr_hardfault(void) {
    __asm volatile (
        "movs r0, #4\n"
        "mov r1, lr\n"
        "tst r0, r1\n"
        "beq 1f\n"
        "mrs r0, psp\n"
        "b 2f\n"
        "1: mrs r0, msp\n"
        "2: bl failstop_rp2_hardfault\n");
}

// --- main.py -----------------------------------------------------------------------

// main.c runs boot.py, then main.py (friendly REPL only), both through this function.
int __real_pyexec_file_if_exists(const char *file);
int __wrap_pyexec_file_if_exists(const char *file) {
    return failstop_pyexec_main(file, __real_pyexec_file_if_exists);
}
