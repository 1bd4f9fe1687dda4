// failstop HAL for the esp32 port: its pure logic, in one header so that the host tests can
// compile it with gcc against a minimal fake of the IDF declarations it uses
// (host_tests/esp32_fake/, exercised by host_tests/test_esp32_hal.py). Include it after
// failstop.h (FAILSTOP_RC_*, FAILSTOP_KIND_*), esp_system.h (esp_reset_reason_t),
// esp_private/panic_internal.h (panic_exception_t) and esp_cpu.h (esp_cpu_compare_and_set).
// Nothing here touches hardware.
#ifndef MICROPY_INCLUDED_FAILSTOP_ESP32_LOGIC_H
#define MICROPY_INCLUDED_FAILSTOP_ESP32_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The task watchdog counts in 500 us ticks and its stage 1 (the reset) is at twice the
// timeout: timeout_ms * 4 ticks must fit in 32 bits
// (components/esp_system/task_wdt/task_wdt_impl_timergroup.c, IDF 5.2-5.4).
#define FS_ESP32_TWDT_MAX_MS (UINT32_MAX / 4u)

// esp_reset_reason() (components/esp_system/include/esp_system.h; the same enumerators in
// IDF 5.2, 5.3 and 5.4) -> failstop's fused cause. A software reset reads as the hint
// that was set before it when that hint is PANIC, BROWNOUT, TASK_WDT or INT_WDT
// (port/soc/*/reset_reason.c), which is how failstop's own resets come back.
static inline uint8_t fs_esp32_reset_cause(esp_reset_reason_t r) {
    switch (r) {
        case ESP_RST_POWERON: // also the EN pin on these chips (a chip reset)
            return FAILSTOP_RC_POWER_ON;
        case ESP_RST_EXT:
        case ESP_RST_USB: // the USB-Serial-JTAG's reset (esptool, a host's DTR/RTS)
        case ESP_RST_JTAG:
            return FAILSTOP_RC_PIN;
        case ESP_RST_SW:
        case ESP_RST_DEEPSLEEP: // a wake from deep sleep: the program asked for it
            return FAILSTOP_RC_SOFT;
        case ESP_RST_PANIC:
        case ESP_RST_CPU_LOCKUP:
            return FAILSTOP_RC_FAULT;
        case ESP_RST_INT_WDT:
        case ESP_RST_TASK_WDT:
        case ESP_RST_WDT:
            return FAILSTOP_RC_WATCHDOG;
        case ESP_RST_BROWNOUT:
            return FAILSTOP_RC_BROWNOUT;
        default: // ESP_RST_UNKNOWN, ESP_RST_SDIO, ESP_RST_EFUSE, ESP_RST_PWR_GLITCH
            return FAILSTOP_RC_UNKNOWN;
    }
}

// The hint failstop leaves before esp_restart_noos() for the cause it records, so that
// esp_reset_reason() (failstop's and MicroPython's machine.reset_cause()) agrees with the
// record. ESP_RST_UNKNOWN: no hint (a soft reset reads as ESP_RST_SW).
static inline esp_reset_reason_t fs_esp32_reset_hint(uint8_t cause) {
    switch (cause) {
        case FAILSTOP_RC_FAULT:
            return ESP_RST_PANIC;
        case FAILSTOP_RC_WATCHDOG:
            return ESP_RST_TASK_WDT;
        default:
            return ESP_RST_UNKNOWN;
    }
}

// A return address as a debugger shows it. Xtensa's windowed ABI keeps the caller's
// window increment in the top two bits of a0 (call4/8/12 -> 01/10/11); the code lives at
// 0x4xxxxxxx on the ESP32 and S3 (IRAM, flash), so the real address is
// (a0 & 0x3fffffff) | 0x40000000 (as IDF's esp_cpu_process_stack_pc does). RISC-V's ra
// is the address itself.
static inline uint32_t fs_esp32_return_address(uint32_t ra, bool xtensa) {
    if (!xtensa || ra == 0) {
        return ra;
    }
    return (ra & 0x3fffffffu) | 0x40000000u;
}

// esp_timer_get_time() (microseconds since boot, int64) as failstop's uptime: saturates at
// UINT32_MAX ms (49.7 days) instead of wrapping.
static inline uint32_t fs_esp32_uptime_ms(int64_t us) {
    if (us <= 0) {
        return 0;
    }
    uint64_t ms = (uint64_t)us / 1000u;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

// The failstop kind of an IDF panic: abort() (also a failed assert and FreeRTOS's stack
// overflow check, through esp_system_abort) is FATAL; the interrupt and task watchdogs
// are WATCHDOG; CPU exceptions, cache errors and debug exceptions (the stack canary
// watchpoint) are HARDFAULT.
static inline uint8_t fs_esp32_panic_kind(panic_exception_t exc, bool abort) {
    if (abort || exc == PANIC_EXCEPTION_ABORT) {
        return FAILSTOP_KIND_FATAL;
    }
    if (exc == PANIC_EXCEPTION_IWDT || exc == PANIC_EXCEPTION_TWDT) {
        return FAILSTOP_KIND_WATCHDOG;
    }
    return FAILSTOP_KIND_HARDFAULT;
}

static inline size_t fs_esp32_put(char *buf, size_t cap, size_t n, const char *s) {
    while (s != NULL && *s != '\0' && n < cap) {
        buf[n++] = *s++;
    }
    return n;
}

static inline size_t fs_esp32_put_hex(char *buf, size_t cap, size_t n, uint32_t v) {
    n = fs_esp32_put(buf, cap, n, "0x");
    for (int sh = 28; sh >= 0 && n < cap; sh -= 4) {
        buf[n++] = "0123456789abcdef"[(v >> sh) & 0xf];
    }
    return n;
}

// The record message of a CPU exception, without printf: "<reason> at 0x<pc>", then
// ", addr 0x<vaddr>" for a faulting data address (Xtensa EXCVADDR, RISC-V MTVAL), then
// " (core N)". Returns the length (at most cap); the core cuts it to the record's 64 bytes
// and flags the cut.
static inline size_t fs_esp32_fault_message(char *buf, size_t cap, const char *reason, uint32_t pc,
    bool has_vaddr, uint32_t vaddr, int core) {
    size_t n = fs_esp32_put(buf, cap, 0, reason != NULL && *reason ? reason : "CPU exception");
    n = fs_esp32_put(buf, cap, n, " at ");
    n = fs_esp32_put_hex(buf, cap, n, pc);
    if (has_vaddr) {
        n = fs_esp32_put(buf, cap, n, ", addr ");
        n = fs_esp32_put_hex(buf, cap, n, vaddr);
    }
    if (core >= 0 && core <= 9) {
        char tail[] = " (core 0)";
        tail[7] = (char)('0' + core);
        n = fs_esp32_put(buf, cap, n, tail);
    }
    return n;
}

// Compare-and-swap returning the old value (failstop_hal_cas) from IDF's
// esp_cpu_compare_and_set (components/esp_hw_support/include/esp_cpu.h), which says only
// whether it stored. A failed attempt that then reads `expect` raced with a store and
// tries again, so a returned `expect` always means this call stored `desired`.
static inline uint32_t fs_esp32_cas(volatile uint32_t *p, uint32_t expect, uint32_t desired) {
    for (;;) {
        if (esp_cpu_compare_and_set(p, expect, desired)) {
            return expect;
        }
        uint32_t seen = *p;
        if (seen != expect) {
            return seen;
        }
    }
}

#endif // MICROPY_INCLUDED_FAILSTOP_ESP32_LOGIC_H
