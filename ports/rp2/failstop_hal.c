// failstop HAL for the rp2 port on RP2040 (RPI_PICO; also the rp2040js emulated board).
//  - retained RAM: a region in .uninitialized_data in main SRAM, which crt0 neither
//    copies nor zeroes. Not in SCRATCH_X/Y: the bootrom uses the top of SCRATCH_Y
//    (boot2 and its stack) on every reset;
//  - reset: through the RP2040 watchdog (TRIGGER), with the cause left in SCRATCH0;
//  - reset cause: the watchdog's REASON register, SCRATCH0 and the chip-reset
//    register, fused with the record by the core;
//  - watchdog: the RP2040 watchdog (its early warning, and everything that wraps
//    MicroPython and pico-sdk, is in failstop_glue.c);
//  - two cores (_thread runs Python on core 1, no GIL): each has its own frame stack
//    (failstop_port.h), the fault path is claimed through a hardware spin lock, and
//    the other core is forced off through the PSM before the record is written;
//  - console output in the fault path is raw: tinyusb's CDC FIFO and its device task
//    polled with interrupts off, never MicroPython's stdout (scheduler, pending
//    KeyboardInterrupt, dupterm).
#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "failstop.h"
#include "failstop_rp2.h"

#include "hardware/irq.h"
#include "hardware/structs/psm.h"
#include "hardware/structs/sio.h"
#include "hardware/structs/syscfg.h"
#include "hardware/structs/timer.h"
#include "hardware/structs/vreg_and_chip_reset.h"
#include "hardware/structs/watchdog.h"
#include "hardware/sync.h"
#include "hardware/sync/spin_lock.h"
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
uint32_t tud_cdc_n_write(uint8_t itf, const void *buffer, uint32_t bufsize);
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

#define FS_WDT_MAX_MS FAILSTOP_RP2_WDT_MAX_MS

#define fs_warn_us failstop_rp2_warn_us
volatile uint32_t failstop_rp2_warn_us;

__attribute__((section(".uninitialized_data.failstop"), aligned(8)))
static failstop_region_t fs_retained;

// The hardware spin lock that makes failstop_hal_cas atomic across the two cores.
static int fs_spin = -1;

uint8_t *failstop_hal_retained(size_t *len) {
    // Called once per boot, after main.c set the stack limit (MICROPY_STACK_CHECK_MARGIN
    // is 256 bytes on rp2, less than the fault path needs): widen the margin here,
    // without patching the port.
    MP_STATE_THREAD(stack_limit) -= MICROPY_FAILSTOP_RP2_STACK_EXTRA;
    if (fs_spin < 0) {
        fs_spin = spin_lock_claim_unused(false);
        if (fs_spin < 0) {
            fs_spin = PICO_SPINLOCK_ID_OS2; // none left to claim: the one kept for system software
        }
    }
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
        return scratch & 0xff; // failstop's own reset (or its drain backstop), with its cause
    }
    if (reason & WATCHDOG_REASON_FORCE_BITS) {
        return FAILSTOP_RC_SOFT; // machine.reset(), or another watchdog_reboot()
    }
    if (reason & WATCHDOG_REASON_TIMER_BITS) {
        // The hardware bit and nobody asked for it: the program hung with no early
        // warning taken (too short a timeout, a lockup), or the fault path overran its
        // budget. SCRATCH0 is written only just before failstop's own reset.
        return FAILSTOP_RC_WATCHDOG;
    }
    // REASON is 0 after a chip-level reset, which sets exactly one HAD_* bit.
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
    // The timer restarts from 0 on every reset; 64 bits never wrap, the record's 32 do:
    // saturate at 49.7 days, so a long run never looks like a short one.
    uint64_t ms = time_us_64() / 1000u;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

// --- cores ---------------------------------------------------------------------------

uint32_t failstop_hal_context(void) {
    return get_core_num() + 1;
}

// Cortex-M0+ has no exclusive loads/stores: a hardware spin lock, with this core's
// interrupts off around it (an interrupt taking the same lock would never get it).
uint32_t failstop_hal_cas(volatile uint32_t *p, uint32_t expect, uint32_t desired) {
    spin_lock_t *lock = spin_lock_instance(fs_spin < 0 ? PICO_SPINLOCK_ID_OS2 : (uint)fs_spin);
    uint32_t irq = save_and_disable_interrupts();
    spin_lock_unsafe_blocking(lock);
    uint32_t old = *p;
    if (old == expect) {
        *p = desired;
    }
    spin_unlock_unsafe(lock);
    restore_interrupts(irq);
    return old;
}

// The core forced off by failstop_hal_stop_others (its PSM FRCE_OFF bit), 0 if none.
static uint32_t fs_stopped_core;

// With the fault path claimed: force the other core off through the power-on state
// machine, as multicore_reset_core1() does for core 1 (for core 0 the same register
// has a PROC0 bit). It stops wherever it is, interrupts off or not. Spin locks it held
// (pico-sdk's, tinyusb's critical sections) are released: the fault path's USB output
// must not wait for a core that will never let go. Its code never runs again before the
// reset, which restarts both cores (failstop_hal_reset lets go of the bit first).
void failstop_hal_stop_others(void) {
    uint32_t bit = get_core_num() == 0 ? PSM_FRCE_OFF_PROC1_BITS : PSM_FRCE_OFF_PROC0_BITS;
    hw_set_bits(&psm_hw->frce_off, bit);
    while (!(psm_hw->frce_off & bit)) {
        tight_loop_contents();
    }
    fs_stopped_core = bit;
    __mem_fence_release();
    for (uint i = 0; i < NUM_SPIN_LOCKS; ++i) {
        spin_unlock_unsafe(spin_lock_instance(i));
    }
}

// Before the watchdog resets the chip: the PSM's force-off bits are not among the
// domains the watchdog resets, so a core left forced off would stay off after it.
static void fs_release_stopped_core(void) {
    if (fs_stopped_core) {
        hw_clear_bits(&psm_hw->frce_off, fs_stopped_core);
        fs_stopped_core = 0;
    }
}

// --- console -------------------------------------------------------------------------

#if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
// The core writes a banner line in pieces: send whole lines, one line one packet.
static char fs_line[64];
static size_t fs_line_len;

// The boot banner is written from mp_init, before main.c starts USB (mp_usbd_init, after
// boot.py), when the CDC write drops everything. Keep it until then: the CDC FIFO holds
// what is written before a host opens the port, so the host sees it when it connects.
static char fs_early[MICROPY_FAILSTOP_RP2_EARLY_BUF];
static size_t fs_early_len;

// How long, in all, this fault path's output may still wait for a host that has the port
// open but does not read (the CDC FIFO full). Once spent, what does not fit is lost, as
// on a UART nobody listens to.
static uint32_t fs_tx_wait_us = MICROPY_FAILSTOP_RP2_TX_WAIT_MS * 1000u;

// The tinyusb device task runs class callbacks. MicroPython's own (CDC) schedule and
// queue only: a Ctrl-C from the host becomes a pending KeyboardInterrupt that nothing
// raises, because the fault path never returns to Python. A machine.USBDevice the
// program defined has Python callbacks: its tinyusb task must not run here.
static bool fs_usb_pollable(void) {
    #if MICROPY_HW_ENABLE_USB_RUNTIME_DEVICE
    return MP_STATE_VM(usbd) == MP_OBJ_NULL;
    #else
    return true;
    #endif
}

// One round of the USB device stack, by polling (interrupts are off): the controller's
// pending events, then tinyusb's task. A fault inside tinyusb makes this a double fault,
// which resets at once with the record kept.
static void fs_usb_poll_once(void) {
    if (usb_hw->ints) {
        tusb_int_handler(0, true);
    }
    tud_task_ext(0, false);
}

// Raw: tinyusb's FIFO, and while a host that has the port open lets it stay full, the
// USB stack polled within the budget above. Nothing of MicroPython's stdout
// (mp_usbd_cdc_tx_strn waits through mp_event_wait_ms, i.e. the scheduler and pending
// exceptions; mp_hal_stdout_tx_strn also feeds dupterm streams).
static void fs_cdc_write(const char *s, size_t len) {
    bool poll = fs_usb_pollable();
    while (len > 0) {
        uint32_t n = tud_cdc_n_write(0, s, len); // with no host on the port: always all
        s += n;
        len -= n;
        tud_cdc_n_write_flush(0);
        if (len == 0 || !poll || fs_tx_wait_us == 0) {
            break;
        }
        uint32_t t0 = time_us_32();
        fs_usb_poll_once();
        uint32_t dt = time_us_32() - t0 + 1;
        fs_tx_wait_us = dt < fs_tx_wait_us ? fs_tx_wait_us - dt : 0;
    }
}

static void fs_line_flush(void) {
    if (!tusb_inited()) {
        size_t n = MIN(fs_line_len, sizeof(fs_early) - fs_early_len);
        memcpy(fs_early + fs_early_len, fs_line, n); // the rest is lost, as on a UART
        fs_early_len += n;
    } else {
        fs_cdc_write(fs_line, fs_line_len);
    }
    fs_line_len = 0;
}

// The CDC TX FIFO's size: what it has free when empty, right after USB starts.
static uint32_t fs_cdc_tx_size;

void failstop_rp2_usb_started(void) {
    if (!tusb_inited()) {
        return;
    }
    fs_cdc_tx_size = MAX(fs_cdc_tx_size, tud_cdc_n_write_available(0));
    if (fs_early_len) {
        // The program's context (after boot.py), not the fault path: MicroPython's
        // writer is fine here.
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
// board stays connected).
static void fs_usb_poll(uint32_t us) {
    #if MICROPY_HW_ENABLE_USBDEV && MICROPY_HW_USB_CDC
    if (!tusb_inited()) {
        return;
    }
    #if MICROPY_HW_ENABLE_USB_RUNTIME_DEVICE
    // The board is going down: a USB device the program defined in Python is abandoned
    // (its callbacks are Python), tinyusb serves the built-in CDC only.
    MP_STATE_VM(usbd) = MP_OBJ_NULL;
    #endif
    uint32_t t0 = time_us_32();
    do {
        fs_usb_poll_once();
    } while (time_us_32() - t0 < us);
    #else
    busy_wait_us_32(us);
    #endif
}

// Before a reset: what the host has not got yet (the fault banner, and output written
// since boot, which MicroPython holds until a host opens the port) goes out, if a host
// takes it within MICROPY_FAILSTOP_RP2_USB_DRAIN_MS: a host still enumerating the board
// after its last reset gets that long to open the port. With nothing pending, or nobody
// reading (e.g. a power bank, or a host that has the port open and does not read), what
// is not sent is lost, as on a UART.
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
    // The record is written: a fresh timeout for the drain (the program's watchdog or
    // the fault path's budget would read as a hang); it still resets if the drain hangs.
    fs_warn_us = 0;
    __real_watchdog_enable(MICROPY_FAILSTOP_RP2_USB_DRAIN_MS + 100u, true);
    fs_usb_drain();

    fs_release_stopped_core();
    watchdog_reboot(0, 0, 0); // TRIGGER: REASON reads FORCE after the reset
    for (;;) {
        __asm volatile ("" : : : "memory");
    }
}

void failstop_hal_halt(void) {
    failstop_hal_irq_disable();
    fs_warn_us = 0;
    hw_clear_bits(&watchdog_hw->ctrl, WATCHDOG_CTRL_ENABLE_BITS); // a debugger's halt stops it too
    for (;;) {
        fs_usb_poll(1000); // keep the host connected: it sees the banner, the board stays put
    }
}

// Fault-path entry: whatever the program armed (or nothing), the hardware now bites
// `ms` from here, so the record is finished (a short program timeout cannot bite
// mid-record) and a hang in the fault path still resets. No early warning from here on:
// the fault is already being handled.
void failstop_hal_wdt_budget(uint32_t ms) {
    fs_warn_us = 0;
    syscfg_hw->proc0_nmi_mask = 0;
    __real_watchdog_enable(MIN(ms, FS_WDT_MAX_MS), true);
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

