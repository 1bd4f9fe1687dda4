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
#include "failstop_config.h"

#ifndef FAILSTOP_TLS
#define FAILSTOP_TLS
#endif

// Cores that run Python without a GIL (rp2: 2). With more than one, the port defines
// FAILSTOP_CORE_ID() (0..FAILSTOP_NCORES-1) and each core keeps its own frame stack.
#ifndef FAILSTOP_NCORES
#define FAILSTOP_NCORES (1)
#endif

// Map or locate the retained region; called once per boot before anything else.
// Returns its base address, and its size in *len (at least sizeof(failstop_region_t)).
uint8_t *failstop_hal_retained(size_t *len);

// Hardware reset cause of this boot (FAILSTOP_RC_*), or FAILSTOP_RC_UNKNOWN when
// the hardware has no such register; the core fuses it with its own pending cause.
uint8_t failstop_hal_reset_cause(void);

// Milliseconds since this boot started; saturates at UINT32_MAX (49.7 days), never wraps.
uint32_t failstop_hal_uptime_ms(void);

// Raw console output for the fault path: no allocation, no Python (no scheduler, no
// pending exceptions, no dupterm), bounded time; called with IRQs off.
void failstop_hal_write(const char *str, size_t len);

// Interrupts off (fault path). Synchronous CPU faults stay deliverable, so a fault
// inside the fault path is a double fault, not a hang.
void failstop_hal_irq_disable(void);

// Nonzero id of the calling core (or thread, on unix): who owns the fault path.
uint32_t failstop_hal_context(void);

// Atomic compare-and-swap across cores: if *p == expect, store desired. Returns the old
// value. (The core claims the fault path with it: a second fault of the owner is a
// double fault; another core's fault waits for the reset.)
uint32_t failstop_hal_cas(volatile uint32_t *p, uint32_t expect, uint32_t desired);

// With the fault path claimed: stop the other cores/threads so nothing of the program
// runs while the record is written (no-op on single-core ports).
void failstop_hal_stop_others(void);

// Fault-path entry: make the hardware watchdog bite after `ms` at the latest, whatever
// the program armed (if the port resets through the watchdog, it also arms it).
void failstop_hal_wdt_budget(uint32_t ms);

// Reset the board: the retained region survives; `cause` is what the core
// recorded as pending_cause (FAILSTOP_RC_FAULT, _WATCHDOG or _SOFT).
MP_NORETURN void failstop_hal_reset(uint8_t cause);

// Stop for a debugger: interrupts off, the watchdog stopped, never returns, no reset.
MP_NORETURN void failstop_hal_halt(void);

// Hardware watchdog: arm (cannot be disarmed), feed. Timeout limits are the
// port's; failstop_hal_wdt_max_ms() gives the largest allowed value.
void failstop_hal_wdt_arm(uint32_t timeout_ms);
void failstop_hal_wdt_feed(void);
uint32_t failstop_hal_wdt_max_ms(void);

#endif // MICROPY_INCLUDED_FAILSTOP_HAL_H
