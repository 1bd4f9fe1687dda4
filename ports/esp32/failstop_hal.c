// failstop HAL for MicroPython's esp32 port: ESP32 and ESP32-S3 (Xtensa LX6/LX7, two
// cores; Python runs on core 1, Wi-Fi/BT on core 0) and ESP32-C3 (RISC-V, one core), with
// ESP-IDF 5.2 to 5.4.1. Written against MicroPython v1.25.0 (ports/esp32) and ESP-IDF
// v5.2.2 / v5.4.1; each IDF declaration used is named below with the header it comes from.
// NOT BUILT HERE: no ESP-IDF or Xtensa/RISC-V toolchain is reachable from this project's
// machines. Its pure logic (failstop_esp32_logic.h) is compiled and tested on the host.
//
//  - retained RAM: the region in RTC_NOINIT_ATTR (RTC slow memory on the ESP32/S3, RTC
//    fast memory on the C3): kept across software, panic and watchdog resets and deep
//    sleep; lost at power-on;
//  - reset: esp_reset_reason_set_hint(PANIC / TASK_WDT) + esp_restart_noos(), as IDF's
//    own panic_restart does (no shutdown handlers, safe with interrupts off); inside IDF's
//    panic handler, through IDF's panic_restart itself;
//  - reset cause: esp_reset_reason(), mapped by fs_esp32_reset_cause();
//  - CPU faults: IDF's panic handler runs first (other core stalled, flash cache on); the
//    wrappers of panic_arch_fill_info / panic_soc_fill_info write the record (PC, return
//    address, reason, the faulting data address), IDF then prints its usual register dump
//    and backtrace, and the wrapper of panic_restart applies failstop's action. NOT
//    esp_panic_handler: MicroPython wraps that one already (ports/esp32/panichandler.c);
//  - abort(), failed asserts, FreeRTOS stack overflow: esp_system_abort is wrapped only to
//    note its caller; the record is written in the panic that follows (FATAL, the abort
//    text as message);
//  - watchdog: failstop.watchdog() and machine.WDT both use the task watchdog's user API
//    (as ports/esp32/machine_wdt.c does); its interrupt, at the timeout, calls
//    esp_task_wdt_isr_user_handler(), which records WATCHDOG (mark, Python location) and
//    resets; a hang with interrupts off ends in the interrupt watchdog's panic (WATCHDOG);
//  - console: IDF's panic console (panic_print_char: the console UART, or the
//    USB-Serial-JTAG, polled, no FreeRTOS), flushed on the USB-Serial-JTAG;
//  - main.py: the main program's bracket is in failstop_glue.c, as on rp2.
#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/builtin.h"
#include "shared/runtime/pyexec.h"
#include "failstop.h"
#include "failstop_frames.h"

#include "sdkconfig.h"
#include "soc/soc_caps.h"                  // SOC_CPU_CORES_NUM, SOC_TIMER_GROUPS
#include "esp_attr.h"                      // RTC_NOINIT_ATTR, IRAM_ATTR
#include "esp_err.h"
#include "esp_system.h"                    // esp_reset_reason, esp_reset_reason_t, esp_system_abort
#include "esp_timer.h"                     // esp_timer_get_time
#include "esp_cpu.h"                       // esp_cpu_get_core_id, esp_cpu_stall, esp_cpu_compare_and_set
#include "esp_task_wdt.h"                  // esp_task_wdt_*; esp_task_wdt_isr_user_handler (weak)
#include "esp_private/system_internal.h"   // esp_restart_noos, esp_reset_reason_set_hint
#include "esp_private/panic_internal.h"    // panic_info_t, panic_exception_t, panic_print_char, g_panic_abort(_details)
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"                 // xTaskGetCurrentTaskHandle
#include "hal/wdt_hal.h"                   // wdt_hal_* (as components/esp_system/panic.c)
#include "hal/mwdt_ll.h"                   // MWDT_LL_DEFAULT_CLK_PRESCALER
#include "soc/timer_group_struct.h"        // TIMERG0, TIMERG1
#if CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG || CONFIG_ESP_CONSOLE_SECONDARY_USB_SERIAL_JTAG
#include "hal/usb_serial_jtag_ll.h"        // usb_serial_jtag_ll_txfifo_flush
#endif
#if __XTENSA__
#include "xtensa_context.h"                // XtExcFrame (components/xtensa/include)
#include "xtensa/corebits.h"               // EXCCAUSE_*
#include "xtensa/xtruntime.h"              // XTOS_SET_MIN_INTLEVEL
#include "xtensa/config/core.h"            // XCHAL_EXCM_LEVEL
#define FS_XTENSA (true)
#else
#include "riscv/rvruntime-frames.h"        // RvExcFrame (components/riscv/include)
#include "riscv/rv_utils.h"                // rv_utils_intr_global_disable
#define FS_XTENSA (false)
#endif

#include "failstop_esp32_logic.h"

// Hooks on IDF's panic path are in IRAM when IDF's panic handler is
// (CONFIG_ESP_PANIC_HANDLER_IRAM), as MicroPython's own panichandler.c does. The core they
// call is in flash: IDF re-enables the flash cache before it fills the panic info.
#ifdef CONFIG_ESP_PANIC_HANDLER_IRAM
#define FS_PANIC_FN(f) IRAM_ATTR f
#else
#define FS_PANIC_FN(f) f
#endif

// MWDT ticks: MWDT_LL_DEFAULT_CLK_PRESCALER gives 500 us (MWDT_DEFAULT_TICKS_PER_US in
// components/esp_system/panic.c, a private macro there).
#define FS_MWDT_US_PER_TICK (500u)

RTC_NOINIT_ATTR static failstop_region_t fs_retained;

// The main Python task's frame-stack slot (its thread-local failstop_vm_top), for the task
// watchdog's interrupt, which runs on core 0 on the ESP32/S3 (where the watchdog was
// initialised), in the thread-local storage of whatever task it interrupted.
static failstop_vmframe_t **fs_main_vm_slot;
static volatile bool fs_twdt_warning; // the task watchdog's interrupt is recording
static volatile bool fs_in_panic; // inside IDF's panic handler, record written
static volatile uint8_t fs_panic_kind;
static volatile uint8_t fs_panic_action; // what failstop_record returned there (0: none)
static volatile uint32_t fs_abort_caller; // who called esp_system_abort (0: nobody)
static esp_task_wdt_user_handle_t fs_twdt_user;

uint8_t *failstop_hal_retained(size_t *len) {
    // Called once per boot, from mp_init in mp_task (or from a fault before it).
    if (xTaskGetCurrentTaskHandle() == mp_main_task_handle) { // ports/esp32/mphalport.h
        fs_main_vm_slot = &failstop_vm_top;
    }
    *len = sizeof(fs_retained);
    return (uint8_t *)&fs_retained;
}

uint8_t failstop_hal_reset_cause(void) {
    return fs_esp32_reset_cause(esp_reset_reason());
}

uint32_t failstop_hal_uptime_ms(void) {
    return fs_esp32_uptime_ms(esp_timer_get_time());
}

void failstop_hal_write(const char *str, size_t len) {
    (void)str; // panic_print_char is an empty macro under CONFIG_ESP_SYSTEM_PANIC_SILENT_REBOOT
    for (size_t i = 0; i < len; ++i) {
        panic_print_char(str[i]);
    }
    #if CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG || CONFIG_ESP_CONSOLE_SECONDARY_USB_SERIAL_JTAG
    usb_serial_jtag_ll_txfifo_flush(); // a short line would otherwise wait for 64 bytes
    #endif
}

// Interrupts up to the kernel's level off on this core. Xtensa: PS.INTLEVEL raised to
// XCHAL_EXCM_LEVEL, never lowered (the panic handler may run at a higher level); the
// interrupt watchdog (level 4) and debug exceptions stay deliverable. RISC-V: MSTATUS.MIE
// cleared. CPU exceptions are always taken: a fault in the fault path is a double fault,
// and the budget watchdog (a reset, no interrupt) ends a fault path that hangs.
void failstop_hal_irq_disable(void) {
    #if __XTENSA__
    (void)XTOS_SET_MIN_INTLEVEL(XCHAL_EXCM_LEVEL); // xtensa/xtruntime.h
    #else
    rv_utils_intr_global_disable(); // riscv/rv_utils.h
    #endif
}

// The calling task (a fault in an interrupt belongs to the task it interrupted), or the
// core before the scheduler runs. xTaskGetCurrentTaskHandle only reads pxCurrentTCBs.
uint32_t failstop_hal_context(void) {
    TaskHandle_t t = xTaskGetCurrentTaskHandle();
    return t != NULL ? (uint32_t)(uintptr_t)t : (uint32_t)esp_cpu_get_core_id() + 1u;
}

uint32_t failstop_hal_cas(volatile uint32_t *p, uint32_t expect, uint32_t desired) {
    return fs_esp32_cas(p, expect, desired);
}

void failstop_hal_stop_others(void) {
    #if SOC_CPU_CORES_NUM > 1 && !CONFIG_FREERTOS_UNICORE
    // Python runs on one core; the other runs Wi-Fi, BT and IDF tasks. Stalled (as IDF's
    // panic handler stalls it), it writes no flash and touches no Python object while
    // the record is written; esp_restart_noos resets both.
    uint32_t me = (uint32_t)esp_cpu_get_core_id();
    for (uint32_t i = 0; i < SOC_CPU_CORES_NUM; ++i) { // SOC_CPU_CORES_NUM is unsigned (2U)
        if (i != me) {
            esp_cpu_stall((int)i);
        }
    }
    #endif
    // The watchdog's interrupt runs in another task's thread-local storage (core 0, or
    // the idle task while Python sleeps): with the Python core stalled, the main task's
    // frame stack is still and can be read, so the record says where the program hung.
    if (fs_twdt_warning && failstop_vm_top == NULL && fs_main_vm_slot != NULL) {
        failstop_vm_top = *fs_main_vm_slot;
    }
}

// What IDF's esp_panic_handler_reconfigure_wdts does (not called: IDF 5.4.2 renamed it):
// timer group 0's watchdog (the task watchdog's timer) resets the chip after `ms`, timer
// group 1's (the interrupt watchdog) is off.
void failstop_hal_wdt_budget(uint32_t ms) {
    wdt_hal_context_t tg0 = {.inst = WDT_MWDT0, .mwdt_dev = &TIMERG0};
    wdt_hal_init(&tg0, WDT_MWDT0, MWDT_LL_DEFAULT_CLK_PRESCALER, false);
    wdt_hal_write_protect_disable(&tg0);
    wdt_hal_config_stage(&tg0, WDT_STAGE0, ms * 1000u / FS_MWDT_US_PER_TICK, WDT_STAGE_ACTION_RESET_SYSTEM);
    wdt_hal_enable(&tg0);
    wdt_hal_write_protect_enable(&tg0);
    #if SOC_TIMER_GROUPS >= 2
    wdt_hal_context_t tg1 = {.inst = WDT_MWDT1, .mwdt_dev = &TIMERG1};
    wdt_hal_write_protect_disable(&tg1);
    wdt_hal_disable(&tg1);
    wdt_hal_write_protect_enable(&tg1);
    #endif
}

void __real_panic_restart(void);

void failstop_hal_reset(uint8_t cause) {
    failstop_hal_irq_disable();
    esp_reset_reason_t hint = fs_esp32_reset_hint(cause);
    if (hint != ESP_RST_UNKNOWN) {
        esp_reset_reason_set_hint(hint); // read back by esp_reset_reason() after the reset
    }
    if (fs_in_panic) {
        __real_panic_restart(); // IDF's way out of a panic (an ESP32 cache error needs it)
    }
    esp_restart_noos(); // esp_private/system_internal.h: IRAM, no shutdown handlers
}

// All three watchdogs off (as disable_all_wdts() in components/esp_system/panic.c), then
// stop: the interrupt watchdog would otherwise panic after 300 ms.
void failstop_hal_halt(void) {
    failstop_hal_irq_disable();
    wdt_hal_context_t tg0 = {.inst = WDT_MWDT0, .mwdt_dev = &TIMERG0};
    wdt_hal_write_protect_disable(&tg0);
    wdt_hal_disable(&tg0);
    wdt_hal_write_protect_enable(&tg0);
    #if SOC_TIMER_GROUPS >= 2
    wdt_hal_context_t tg1 = {.inst = WDT_MWDT1, .mwdt_dev = &TIMERG1};
    wdt_hal_write_protect_disable(&tg1);
    wdt_hal_disable(&tg1);
    wdt_hal_write_protect_enable(&tg1);
    #endif
    wdt_hal_context_t rtc = RWDT_HAL_CONTEXT_DEFAULT();
    wdt_hal_write_protect_disable(&rtc);
    wdt_hal_disable(&rtc);
    wdt_hal_write_protect_enable(&rtc);
    for (;;) {
        __asm__ volatile ("" : : : "memory");
    }
}

// --- watchdog ---------------------------------------------------------------------
// The task watchdog (timer group 0): stage 0 interrupts at the timeout, stage 1 resets the
// chip at twice the timeout. machine.WDT reconfigures the same watchdog (the last timeout
// set wins) and adds its own user; the early warning below covers both.

void failstop_hal_wdt_arm(uint32_t timeout_ms) {
    esp_task_wdt_config_t config = {
        .timeout_ms = timeout_ms,
        .idle_core_mask = 0, // the program's feeding only, not the idle tasks'
        .trigger_panic = true, // if the early warning does not reset, IDF's panic does
    };
    esp_err_t err = esp_task_wdt_reconfigure(&config);
    if (err == ESP_ERR_INVALID_STATE) {
        err = esp_task_wdt_init(&config); // CONFIG_ESP_TASK_WDT_INIT=n: not started at boot
    }
    if (err == ESP_OK && fs_twdt_user == NULL) {
        err = esp_task_wdt_add_user("failstop", &fs_twdt_user);
    }
    if (err != ESP_OK) {
        mp_raise_OSError(err);
    }
    esp_task_wdt_reset_user(fs_twdt_user);
}

void failstop_hal_wdt_feed(void) {
    if (fs_twdt_user != NULL) {
        esp_task_wdt_reset_user(fs_twdt_user);
    }
}

uint32_t failstop_hal_wdt_max_ms(void) {
    return FS_ESP32_TWDT_MAX_MS;
}

// The task watchdog's interrupt calls this (components/esp_system/task_wdt/task_wdt.c,
// weak in esp_task_wdt.h) before its own timeout handling: the program hung. Record
// WATCHDOG and reset (the policy's REBOOT or HALT never returns here).
void esp_task_wdt_isr_user_handler(void) {
    if (failstop_region() == NULL) {
        return; // before mp_init: IDF's panic follows, and records it (FATAL)
    }
    fs_twdt_warning = true;
    failstop_watchdog_timeout();
    fs_twdt_warning = false;
}

// --- panics -----------------------------------------------------------------------

static void FS_PANIC_FN(fs_panic_record)(void *frame, panic_info_t *info) {
    if (fs_in_panic) {
        return; // once per panic (both fill functions may run)
    }
    fs_in_panic = true;
    uint32_t pc = (uint32_t)(uintptr_t)info->addr;
    uint32_t ra;
    uint32_t vaddr = 0;
    bool has_vaddr = false;
    #if __XTENSA__
    const XtExcFrame *xf = frame;
    ra = fs_esp32_return_address((uint32_t)xf->a0, FS_XTENSA);
    if (!info->pseudo_excause) {
        uint32_t cause = (uint32_t)xf->exccause;
        has_vaddr = cause == EXCCAUSE_LOAD_STORE_ERROR || cause == EXCCAUSE_UNALIGNED
            || cause == EXCCAUSE_LOAD_PROHIBITED || cause == EXCCAUSE_STORE_PROHIBITED;
        vaddr = (uint32_t)xf->excvaddr;
    }
    #else
    const RvExcFrame *rf = frame;
    ra = fs_esp32_return_address((uint32_t)rf->ra, FS_XTENSA);
    if (!info->pseudo_excause) {
        uint32_t cause = (uint32_t)rf->mcause;
        has_vaddr = cause >= 4 && cause <= 7; // load/store misaligned or access fault
        vaddr = (uint32_t)rf->mtval;
    }
    #endif
    bool abort = g_panic_abort; // set by panic_abort before the exception it raises
    failstop_fault_t f = {
        .kind = fs_esp32_panic_kind(info->exception, abort),
        .pc = pc,
        .lr = ra,
    };
    char msg[96];
    if (abort) {
        // "abort() was called at PC 0x... on core 1", "assert failed: ...", "***ERROR***
        // A stack overflow in task ... has been detected."
        const char *d = g_panic_abort_details != NULL ? g_panic_abort_details : "abort";
        f.msg = d;
        f.msg_len = strlen(d);
        if (fs_abort_caller != 0) {
            f.lr = fs_abort_caller;
        }
    } else {
        f.msg = msg;
        f.msg_len = fs_esp32_fault_message(msg, sizeof(msg), info->reason, pc, has_vaddr, vaddr, info->core);
    }
    fs_panic_kind = f.kind;
    fs_panic_action = failstop_record(&f);
}

// components/esp_system/port/panic_handler.c calls these from frame_to_panic_info (CPU
// exceptions / pseudo exceptions: interrupt watchdog, cache error, debug), defined in
// port/arch/{xtensa,riscv}/panic_arch.c: other files, so --wrap reaches them.
void __real_panic_arch_fill_info(void *frame, panic_info_t *info);
void FS_PANIC_FN(__wrap_panic_arch_fill_info)(void *frame, panic_info_t *info) {
    __real_panic_arch_fill_info(frame, info);
    fs_panic_record(frame, info);
}

void __real_panic_soc_fill_info(void *frame, panic_info_t *info);
void FS_PANIC_FN(__wrap_panic_soc_fill_info)(void *frame, panic_info_t *info) {
    __real_panic_soc_fill_info(frame, info);
    fs_panic_record(frame, info);
}

// IDF's panic handler, done printing, resets through here (components/esp_system/panic.c
// -> port/panic_handler.c): failstop's action now. Not reached when IDF is set to halt
// or to start the GDB stub after a panic; the record is written by then.
void FS_PANIC_FN(__wrap_panic_restart)(void) {
    uint8_t action = fs_panic_action;
    if (action == FAILSTOP_ACTION_REBOOT || action == FAILSTOP_ACTION_HALT) {
        failstop_stop(fs_panic_kind, action); // prints "failstop: KIND -> ACTION"; never returns
    }
    __real_panic_restart();
}

// abort(), assert failures and FreeRTOS's stack-overflow hook end here
// (components/esp_system/port/esp_system_chip.c; called from newlib's abort.c, assert.c
// and the FreeRTOS port): keep the caller for the record, then IDF's panic.
NORETURN void __real_esp_system_abort(const char *details);
NORETURN void FS_PANIC_FN(__wrap_esp_system_abort)(const char *details) {
    fs_abort_caller = fs_esp32_return_address((uint32_t)(uintptr_t)__builtin_return_address(0), FS_XTENSA);
    __real_esp_system_abort(details);
}
