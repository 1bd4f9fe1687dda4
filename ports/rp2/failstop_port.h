// failstop port configuration: rp2 (RP2040, Cortex-M0+).
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

// rp2's MICROPY_STACK_CHECK_MARGIN (256 bytes, set unconditionally in mpconfigport.h)
// is less than the STACK fault path needs; the HAL lowers the stack limit by this much
// more at boot.
#ifndef MICROPY_FAILSTOP_RP2_STACK_EXTRA
#define MICROPY_FAILSTOP_RP2_STACK_EXTRA (512)
#endif

#endif
