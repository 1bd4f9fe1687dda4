// failstop HAL for the rp2 port on RP2040 (RPI_PICO; also the rp2040js emulated board).
//  - retained RAM: a region in .uninitialized_data in main SRAM, which crt0 neither
//    copies nor zeroes. Not in SCRATCH_X/Y: the bootrom uses the top of SCRATCH_Y
//    (boot2 and its stack) on every reset;
//  - reset: through the RP2040 watchdog (TRIGGER), with the cause left in SCRATCH0;
//  - reset cause: the watchdog's REASON register, SCRATCH0 and the chip-reset
//    register, fused with the record by the core;
//  - watchdog: the RP2040 watchdog has no interrupt, so a timer alarm armed shortly
//    before the timeout, routed to the NMI, is the early warning that records WATCHDOG
//    if not fed (with interrupts off too);
//  - hard faults: isr_hardfault (a weak pico-sdk symbol) records the stacked PC/LR;
//  - main.py: pyexec_file_if_exists("main.py") from main.c is wrapped to mark the
//    main program (UNHANDLED faults, healthy runs) and to skip it in safe mode.
#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/builtin.h"
#include "py/stackctrl.h"
#include "shared/runtime/pyexec.h"
#include "failstop.h"

#include "hardware/irq.h"
#include "hardware/structs/syscfg.h"
#include "hardware/structs/timer.h"
#include "hardware/structs/vreg_and_chip_reset.h"
#include "hardware/structs/watchdog.h"
#include "hardware/sync.h"
#include "hardware/timer.h"
#include "hardware/watchdog.h"
#if MICROPY_HW_ENABLE_UART_REPL
#include "uart.h"
#endif
#if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
#include "hardware/structs/usb.h"
// shared/tinyusb/mp_usbd_cdc.c and tinyusb, declared here: their headers need tinyusb's
// include paths, which the qstr pass over user modules does not have.
mp_uint_t mp_usbd_cdc_tx_strn(const char *str, mp_uint_t len);
bool tusb_inited(void);
bool tud_cdc_n_connected(uint8_t itf);
uint32_t tud_cdc_n_write_flush(uint8_t itf);
uint32_t tud_cdc_n_write_available(uint8_t itf);
void tusb_int_handler(uint8_t rhport, bool in_isr);
void tud_task_ext(uint32_t timeout_ms, bool in_isr);
#endif

// SCRATCH0 while failstop resets the chip: magic in the top bits, cause in the low byte.
// SCRATCH4-7 belong to pico-sdk's watchdog_reboot; 0-3 are free for applications.
#define FS_SCRATCH (watchdog_hw->scratch[0])
#define FS_SCRATCH_MAGIC (0xf5a17000u)
#define FS_SCRATCH_MAGIC_MASK (0xffffff00u)

// pico-sdk: the largest watchdog_enable() delay (24-bit counter at 2 ticks/us, RP2040-E1).
#define FS_WDT_MAX_MS (8388u)

// The watchdog's early warning (see below): 0, or how long after feeding it fires.
static volatile uint32_t fs_warn_us;
void __real_watchdog_enable(uint32_t delay_ms, bool pause_on_debug);

__attribute__((section(".uninitialized_data.failstop"), aligned(8)))
static failstop_region_t fs_retained;

uint8_t *failstop_hal_retained(size_t *len) {
    // Called once per boot, after main.c set the stack limit (MICROPY_STACK_CHECK_MARGIN
    // is 256 bytes on rp2, less than the fault path needs): widen the margin here,
    // without patching the port.
    MP_STATE_THREAD(stack_limit) -= MICROPY_FAILSTOP_RP2_STACK_EXTRA;
    *len = sizeof(fs_retained);
    return (uint8_t *)&fs_retained;
}

uint8_t failstop_hal_reset_cause(void) {
    uint32_t reason = watchdog_hw->reason;
    uint32_t scratch = FS_SCRATCH;
    uint32_t chip = vreg_and_chip_reset_hw->chip_reset;
    FS_SCRATCH = 0; // read once: the next reset states its own cause
    if ((reason & (WATCHDOG_REASON_FORCE_BITS | WATCHDOG_REASON_TIMER_BITS))
        && (scratch & FS_SCRATCH_MAGIC_MASK) == FS_SCRATCH_MAGIC && (scratch & 0xff) != 0
        && (scratch & 0xff) <= FAILSTOP_RC_MAX) {
        return scratch & 0xff; // failstop's own reset (or its backstop), with its cause
    }
    if (reason & WATCHDOG_REASON_FORCE_BITS) {
        return FAILSTOP_RC_SOFT; // machine.reset(), or another watchdog_reboot()
    }
    if (reason & WATCHDOG_REASON_TIMER_BITS) {
        return FAILSTOP_RC_WATCHDOG; // the program hung (or a lockup after a fault)
    }
    // REASON is 0 after a chip-level reset, which sets exactly one HAD_* bit. POR first:
    // the emulator does not model this register (it reads all ones).
    if (chip & VREG_AND_CHIP_RESET_CHIP_RESET_HAD_POR_BITS) {
        return FAILSTOP_RC_POWER_ON;
    }
    if (chip & VREG_AND_CHIP_RESET_CHIP_RESET_HAD_RUN_BITS) {
        return FAILSTOP_RC_PIN;
    }
    if (chip & VREG_AND_CHIP_RESET_CHIP_RESET_HAD_PSM_RESTART_BITS) {
        return FAILSTOP_RC_UNKNOWN; // a debugger's rescue reset
    }
    return FAILSTOP_RC_POWER_ON;
}

uint32_t failstop_hal_uptime_ms(void) {
    return (uint32_t)(time_us_64() / 1000u); // the timer restarts from 0 on every reset
}

#if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
// The core writes a banner line in pieces. With interrupts off (the fault path) only the
// first USB transfer goes out before the reset, so send whole lines: one line, one packet.
static char fs_line[64];
static size_t fs_line_len;

// The boot banner is written from mp_init, before main.c starts USB (mp_usbd_init, after
// boot.py), when the CDC write drops everything. Keep it until then: the CDC FIFO holds
// what is written before a host opens the port, so the host sees it when it connects.
static char fs_early[MICROPY_FAILSTOP_RP2_EARLY_BUF];
static size_t fs_early_len;

static void fs_line_flush(void) {
    // Not mp_hal_stdout_tx_strn: it may run dupterm (Python code). The CDC write
    // queues into tinyusb's FIFO; only a full FIFO with a host attached waits, and
    // that is bounded by MICROPY_HW_USB_CDC_TX_TIMEOUT.
    if (!tusb_inited()) {
        size_t n = MIN(fs_line_len, sizeof(fs_early) - fs_early_len);
        memcpy(fs_early + fs_early_len, fs_line, n); // the rest is lost, as on a UART
        fs_early_len += n;
    } else {
        mp_usbd_cdc_tx_strn(fs_line, fs_line_len);
    }
    fs_line_len = 0;
}

// The CDC TX FIFO's size: what it has free when empty, right after USB starts.
static uint32_t fs_cdc_tx_size;

void __real_mp_usbd_init(void);
void __wrap_mp_usbd_init(void) {
    __real_mp_usbd_init();
    if (!tusb_inited()) {
        return;
    }
    fs_cdc_tx_size = MAX(fs_cdc_tx_size, tud_cdc_n_write_available(0));
    if (fs_early_len) {
        mp_usbd_cdc_tx_strn(fs_early, fs_early_len);
        fs_early_len = 0;
    }
}
#endif

void failstop_hal_write(const char *str, size_t len) {
    #if MICROPY_HW_ENABLE_UART_REPL
    mp_uart_write_strn(str, len);
    #endif
    #if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
    for (size_t i = 0; i < len; ++i) {
        fs_line[fs_line_len++] = str[i];
        if (str[i] == '\n' || fs_line_len == sizeof(fs_line)) {
            fs_line_flush();
        }
    }
    #endif
}

// Run the USB device stack by polling for `us` microseconds, interrupts off: the fault
// banner queued behind a transfer still in flight leaves before the reset (and a halted
// board stays connected). A fault inside tinyusb itself makes this a double fault, which
// resets at once with the record kept.
static void fs_usb_poll(uint32_t us) {
    #if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
    if (!tusb_inited()) {
        return;
    }
    uint32_t t0 = time_us_32();
    do {
        if (usb_hw->ints) {
            tusb_int_handler(0, true);
        }
        tud_task_ext(0, false);
    } while (time_us_32() - t0 < us);
    #else
    busy_wait_us_32(us);
    #endif
}

// Before a reset: what the host has not got yet (the fault banner, and output written
// since boot, which MicroPython holds until a host opens the port) goes out, if a host
// takes it within MICROPY_FAILSTOP_RP2_USB_DRAIN_MS: a host still enumerating the board
// after its last reset gets that long to open the port. With nothing pending, or nobody
// reading (e.g. a power bank), what is not sent is lost, as on a UART.
static void fs_usb_drain(void) {
    #if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
    if (!tusb_inited()) {
        return;
    }
    uint32_t t0 = time_us_32();
    while (tud_cdc_n_write_available(0) < fs_cdc_tx_size
           && time_us_32() - t0 < MICROPY_FAILSTOP_RP2_USB_DRAIN_MS * 1000u) {
        if (tud_cdc_n_connected(0)) {
            tud_cdc_n_write_flush(0); // the host has the port open: no need to hold output
        }
        fs_usb_poll(500);
    }
    #endif
    fs_usb_poll(2000); // the last transfer, taken by the host at its next poll
}

void failstop_hal_irq_disable(void) {
    __asm volatile ("cpsid i" : : : "memory");
    syscfg_hw->proc0_nmi_mask = 0; // and no early-warning NMI in the fault path
}

void failstop_hal_reset(uint8_t cause) {
    failstop_hal_irq_disable();
    FS_SCRATCH = FS_SCRATCH_MAGIC | cause;
    // The program's watchdog must not bite during the drain (its cause would hide ours);
    // a fresh timeout still resets if the drain itself hangs.
    fs_warn_us = 0;
    __real_watchdog_enable(MICROPY_FAILSTOP_RP2_USB_DRAIN_MS + 100u, true);
    fs_usb_drain();

    watchdog_reboot(0, 0, 0); // TRIGGER: REASON reads FORCE after the reset
    for (;;) {
        __asm volatile ("" : : : "memory");
    }
}

void failstop_hal_halt(void) {
    failstop_hal_irq_disable();
    hw_clear_bits(&watchdog_hw->ctrl, WATCHDOG_CTRL_ENABLE_BITS); // a debugger's halt stops it too
    for (;;) {
        fs_usb_poll(1000); // keep the host connected: it sees the banner, the board stays put
    }
}

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
    __real_watchdog_enable(delay_ms, pause_on_debug);
    fs_fed_us = time_us_32();
    if (timeout_us <= slack) {
        fs_warn_us = 0; // too short to warn: the hardware resets (cause: watchdog)
        return;
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

// Feeding: failstop.feed() and machine.WDT.feed().
void __real_watchdog_update(void);
void __wrap_watchdog_update(void) {
    __real_watchdog_update();
    fs_fed_us = time_us_32();
}

void failstop_hal_wdt_arm(uint32_t timeout_ms) {
    watchdog_enable(timeout_ms, true);
}

void failstop_hal_wdt_feed(void) {
    watchdog_update();
}

uint32_t failstop_hal_wdt_max_ms(void) {
    return FS_WDT_MAX_MS;
}

// --- hard fault ------------------------------------------------------------------

// Cortex-M0+ has one fault (HardFault) and no fault status registers: record the
// stacked PC and LR (frame: r0-r3, r12, lr, pc, xpsr).
void failstop_rp2_hardfault(const uint32_t *frame);
void failstop_rp2_hardfault(const uint32_t *frame) {
    failstop_cpu_fault("hard fault at ", frame[6], "", frame[6], frame[5]);
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
    if (strcmp(file, "main.py") != 0) {
        return __real_pyexec_file_if_exists(file);
    }
    if (mp_import_stat(file) != MP_IMPORT_STAT_FILE) {
        return __real_pyexec_file_if_exists(file); // no main program: no healthy run either
    }
    if (failstop_region()->hdr.state & FAILSTOP_STATE_SAFE_MODE) {
        return 1; // safe mode: main.py does not run; go on to the REPL
    }
    failstop_main_active = true;
    int ret = __real_pyexec_file_if_exists(file);
    // It ended without a fail-stop fault (or under RAISE, as stock): a healthy run.
    failstop_healthy();
    failstop_main_active = false;
    return ret;
}
