// failstop port configuration: qemu (Cortex-M, single-threaded).
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

#include <stdint.h>

// Microseconds since boot, from the HAL's SysTick clock (the board's time module).
uint64_t failstop_qemu_ticks_us(void);

#endif
