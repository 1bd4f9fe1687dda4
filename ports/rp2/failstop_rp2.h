// failstop rp2: what the port's HAL (failstop_hal.c) and its integration glue
// (failstop_glue.c) share. Private to ports/rp2.
#ifndef MICROPY_INCLUDED_FAILSTOP_RP2_H
#define MICROPY_INCLUDED_FAILSTOP_RP2_H

#include <stdbool.h>
#include <stdint.h>

// pico-sdk: the largest watchdog_enable() delay (24-bit counter at 2 ticks/us, RP2040-E1).
#define FAILSTOP_RP2_WDT_MAX_MS (8388u)

// The watchdog's early warning: 0 (off), or how long after feeding its alarm fires. The
// glue arms it; the HAL turns it off on fault-path entry, reset and halt.
extern volatile uint32_t failstop_rp2_warn_us;

// pico-sdk's watchdog_enable itself (the glue wraps it).
void __real_watchdog_enable(uint32_t delay_ms, bool pause_on_debug);

// USB has started (main.c's mp_usbd_init): send the banner kept since boot.
void failstop_rp2_usb_started(void);

#endif
