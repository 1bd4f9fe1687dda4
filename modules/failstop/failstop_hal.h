// failstop: the platform interface. Each port implements these in ports/<port>/.
// The portable module reaches the platform only through this header.
#ifndef MICROPY_INCLUDED_FAILSTOP_HAL_H
#define MICROPY_INCLUDED_FAILSTOP_HAL_H

#include <stddef.h>
#include <stdint.h>
#include "py/mpconfig.h"

// MicroPython 1.26 names the no-return attribute MP_NORETURN (NORETURN stays as an alias
// until MicroPython 2); 1.25 has only NORETURN. The module uses the new name.
#ifndef MP_NORETURN
#define MP_NORETURN NORETURN
#endif

// Port configuration: FAILSTOP_TLS (thread-local storage class for the shadow
// frame stack, empty on single-threaded ports), and optional overrides of the
// MICROPY_FAILSTOP_* defaults.
#include "failstop_port.h"

#ifndef FAILSTOP_TLS
#define FAILSTOP_TLS
#endif

// Map or locate the retained region; called once per boot before anything else.
// Returns its base address, and its size in *len (at least sizeof(failstop_region_t)).
uint8_t *failstop_hal_retained(size_t *len);

// Hardware reset cause of this boot (FAILSTOP_RC_*), or FAILSTOP_RC_UNKNOWN when
// the hardware has no such register; the core fuses it with its own pending cause.
uint8_t failstop_hal_reset_cause(void);

// Milliseconds since this boot started.
uint32_t failstop_hal_uptime_ms(void);

// Console output that neither allocates nor raises (may be called with IRQs off).
void failstop_hal_write(const char *str, size_t len);

// Interrupts off (fault path).
void failstop_hal_irq_disable(void);

// Reset the board: the retained region survives; `cause` is what the core
// recorded as pending_cause (FAILSTOP_RC_FAULT, _WATCHDOG or _SOFT).
MP_NORETURN void failstop_hal_reset(uint8_t cause);

// Stop for a debugger: interrupts off, never returns, no reset.
MP_NORETURN void failstop_hal_halt(void);

// Hardware watchdog: arm (cannot be disarmed), feed. Timeout limits are the
// port's; failstop_hal_wdt_max_ms() gives the largest allowed value.
void failstop_hal_wdt_arm(uint32_t timeout_ms);
void failstop_hal_wdt_feed(void);
uint32_t failstop_hal_wdt_max_ms(void);

#endif // MICROPY_INCLUDED_FAILSTOP_HAL_H
