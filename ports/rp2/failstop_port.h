// failstop port configuration: rp2 (RP2040, Cortex-M0+).
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

// rp2's MICROPY_STACK_CHECK_MARGIN (256 bytes, set unconditionally in mpconfigport.h)
// is less than the STACK fault path needs; the HAL lowers the stack limit by this much
// more at boot.
#ifndef MICROPY_FAILSTOP_RP2_STACK_EXTRA
#define MICROPY_FAILSTOP_RP2_STACK_EXTRA (512)
#endif

// Boot banner bytes written before main.c starts USB, kept until it does.
#ifndef MICROPY_FAILSTOP_RP2_EARLY_BUF
#define MICROPY_FAILSTOP_RP2_EARLY_BUF (256)
#endif

// Before a fault reset, how long a host gets to open the port and take what the board
// wrote (only while output is pending).
#ifndef MICROPY_FAILSTOP_RP2_USB_DRAIN_MS
#define MICROPY_FAILSTOP_RP2_USB_DRAIN_MS (50)
#endif

#endif
