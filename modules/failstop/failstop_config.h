// failstop: every configuration option of the portable module, with its default.
// Set one with -D (CFLAGS / target_compile_definitions) or in the port's failstop_port.h,
// which is included first. Each option is documented once, on its FAILSTOP_CONFIG: line
// (the list in docs/config.md is checked against these lines).
#ifndef MICROPY_INCLUDED_FAILSTOP_CONFIG_H
#define MICROPY_INCLUDED_FAILSTOP_CONFIG_H

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_LEAN, the lean profile (make FAILSTOP_PROFILE=lean): panic, OOM, STACK, FATAL, the watchdog, the record, mark() and last() only; the feature options below default to off, type=bool, default=0
#ifndef MICROPY_FAILSTOP_LEAN
#define MICROPY_FAILSTOP_LEAN (0)
#endif
#define FAILSTOP_FULL (!MICROPY_FAILSTOP_LEAN)

// --- the retained region and the crash-loop breaker ----------------------------------

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_NSLOTS, record slots in the retained region (320 bytes each, plus a 64-byte header), type=int, default=3
#ifndef MICROPY_FAILSTOP_NSLOTS
#define MICROPY_FAILSTOP_NSLOTS (3)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_LOOP_LIMIT, more fail-stop reboots than this within the window put the next boot in safe mode (failstop.crash_loop() changes it at run time), type=int, default=3
#ifndef MICROPY_FAILSTOP_LOOP_LIMIT
#define MICROPY_FAILSTOP_LOOP_LIMIT (3)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_LOOP_WINDOW_MS, the crash-loop window, in ms of uptime summed over the faulting boots, type=int, default=60000
#ifndef MICROPY_FAILSTOP_LOOP_WINDOW_MS
#define MICROPY_FAILSTOP_LOOP_WINDOW_MS (60000)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_FIRMWARE_ID, the firmware field of every record (16 bytes kept), type=string, default=MICROPY_VERSION_STRING "+fs" FAILSTOP_VERSION
#ifndef MICROPY_FAILSTOP_FIRMWARE_ID
#define MICROPY_FAILSTOP_FIRMWARE_ID MICROPY_VERSION_STRING "+fs" FAILSTOP_VERSION
#endif

// --- the fault path ------------------------------------------------------------------

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_HEAP_FREE, the free-heap figure in the record: a scan of the GC allocation table, a word at a time (cost grows with the heap), type=bool, default=1
#ifndef MICROPY_FAILSTOP_HEAP_FREE
#define MICROPY_FAILSTOP_HEAP_FREE (1)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_FAST, the fault path for speed: CRC32 with a 256-entry table (1 KiB) two words a step, the free-heap scan three words a step, a recursion's repeated frame decoded once, the frames past the third counted four a step; without it the smallest code (a 16-entry table, a byte and a word at a time, every frame decoded): about twice the fault-path time for ~1.3 KiB less flash, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_FAST
#define MICROPY_FAILSTOP_FAST (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_WDT_BUDGET_MS, on fault-path entry the hardware watchdog is re-armed to bite after this many ms at the latest, so the record is always finished, type=int, default=500
#ifndef MICROPY_FAILSTOP_WDT_BUDGET_MS
#define MICROPY_FAILSTOP_WDT_BUDGET_MS (500)
#endif

// --- features (off in the lean profile) ----------------------------------------------

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_UNHANDLED, an exception escaping the main program is an UNHANDLED fault, its traceback printed from the record, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_UNHANDLED
#define MICROPY_FAILSTOP_UNHANDLED (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_OOM_TEXT, an OOM record's message is MicroPython's ("memory allocation failed, allocating N bytes"); without it the message is empty and the host tools write it from alloc_size and the HEAP_LOCKED flag, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_OOM_TEXT
#define MICROPY_FAILSTOP_OOM_TEXT (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_CPU_FAULT_TEXT, a HARDFAULT record's message says what the CPU reported ("bus fault at 0x..."); without it the message is empty and `failstop log --elf` decodes its PC and LR, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_CPU_FAULT_TEXT
#define MICROPY_FAILSTOP_CPU_FAULT_TEXT (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_POLICY, failstop.policy(): the HALT and RAISE actions (without it every fault reboots), type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_POLICY
#define MICROPY_FAILSTOP_POLICY (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_KEEPER, failstop.keeper(fn): fn(record) once per record on the next boot, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_KEEPER
#define MICROPY_FAILSTOP_KEEPER (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_FRAGILE, with failstop.fragile(): an exception escaping the block is a PANIC, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_FRAGILE
#define MICROPY_FAILSTOP_FRAGILE (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_RECOVERABLE, with failstop.recoverable(kind): OOM or STACK inside behave as stock MicroPython, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_RECOVERABLE
#define MICROPY_FAILSTOP_RECOVERABLE (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_BANNER, the boot lines "failstop: reboot after ..." and "failstop: safe mode ...", type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_BANNER
#define MICROPY_FAILSTOP_BANNER (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_REGION_API, records(), clear(), dump(), boot_count(), reset_cause(), safe_mode(), crash_loop(), the kind and action constants, FIRMWARE and Record's repr, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_REGION_API
#define MICROPY_FAILSTOP_REGION_API (FAILSTOP_FULL)
#endif

// FAILSTOP_CONFIG: MICROPY_FAILSTOP_INJECT, failstop._inject(): the test hooks for FATAL, the double fault and a mark() interrupted half way, type=bool, default=!MICROPY_FAILSTOP_LEAN
#ifndef MICROPY_FAILSTOP_INJECT
#define MICROPY_FAILSTOP_INJECT (FAILSTOP_FULL)
#endif

#endif // MICROPY_INCLUDED_FAILSTOP_CONFIG_H
