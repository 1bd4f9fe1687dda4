// FAKE (host tests only): a minimal stand-in for MicroPython's ports/esp32/mpconfigport.h,
// enough for py/ headers to parse (types as on a 32-bit port, widened to the host's pointers).
#include <stdint.h>
#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)
#define MICROPY_STACK_CHECK (1)
#define MICROPY_GC_SPLIT_HEAP (1)
#define MICROPY_HW_BOARD_NAME "fake"
#define MICROPY_HW_MCU_NAME "fake"
typedef intptr_t mp_int_t;
typedef uintptr_t mp_uint_t;
typedef long mp_off_t;
#define MP_STATE_PORT MP_STATE_VM
