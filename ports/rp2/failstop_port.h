// failstop port configuration: rp2 (RP2040, Cortex-M0+).
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

// rp2's MICROPY_STACK_CHECK_MARGIN (256 bytes, set unconditionally in mpconfigport.h)
// is less than the STACK fault path needs.
// FAILSTOP_CONFIG: MICROPY_FAILSTOP_RP2_STACK_EXTRA, rp2: bytes by which the HAL lowers the stack limit at boot, so the STACK fault path has room, type=int, default=512
#ifndef MICROPY_FAILSTOP_RP2_STACK_EXTRA
#define MICROPY_FAILSTOP_RP2_STACK_EXTRA (512)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_RP2_EARLY_BUF, rp2: boot banner bytes written before main.c starts USB, kept until it does, type=int, default=256
#ifndef MICROPY_FAILSTOP_RP2_EARLY_BUF
#define MICROPY_FAILSTOP_RP2_EARLY_BUF (256)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_RP2_TX_WAIT_MS, rp2: how long, in all, fault-path console output may wait for a host that has the USB serial open but does not read; then what does not fit is lost, type=int, default=20
#ifndef MICROPY_FAILSTOP_RP2_TX_WAIT_MS
#define MICROPY_FAILSTOP_RP2_TX_WAIT_MS (20)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_RP2_TEST_HOOKS, rp2: the _failstop_rp2 module, test hooks that reach pico-sdk's panic() and the C assert handler from Python (the emulated-Pico tests), type=bool, default=1
#ifndef MICROPY_FAILSTOP_RP2_TEST_HOOKS
#define MICROPY_FAILSTOP_RP2_TEST_HOOKS (1)
#endif

// Two cores run Python (_thread starts a thread on core 1, no GIL): one shadow frame
// stack each, indexed by the SIO CPUID register (0 or 1; a load, no header needed).
#define FAILSTOP_NCORES (2)
#define FAILSTOP_CORE_ID() (*(volatile const uint32_t *)0xd0000000u) // SIO_BASE + CPUID

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_RP2_USB_DRAIN_MS, rp2: before a fault reset, how long a host gets to open the port and take what the board wrote (only while output is pending), type=int, default=50
#ifndef MICROPY_FAILSTOP_RP2_USB_DRAIN_MS
#define MICROPY_FAILSTOP_RP2_USB_DRAIN_MS (50)
#endif

#endif
