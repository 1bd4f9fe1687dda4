// failstop: fail-stop fault handling for MicroPython — core types and API.
// The record layout is the contract of docs/record-format.md.
#ifndef MICROPY_INCLUDED_FAILSTOP_H
#define MICROPY_INCLUDED_FAILSTOP_H

#include <stdbool.h>
#include "py/obj.h"
#include "failstop_hal.h"

#define FAILSTOP_VERSION "0.1.0"

enum {
    FAILSTOP_KIND_PANIC = 1,
    FAILSTOP_KIND_OOM,
    FAILSTOP_KIND_STACK,
    FAILSTOP_KIND_UNHANDLED,
    FAILSTOP_KIND_WATCHDOG,
    FAILSTOP_KIND_HARDFAULT,
    FAILSTOP_KIND_FATAL,
    FAILSTOP_KIND_MAX = FAILSTOP_KIND_FATAL,
};

enum {
    FAILSTOP_ACTION_REBOOT = 1,
    FAILSTOP_ACTION_HALT,
    FAILSTOP_ACTION_RAISE,
};

enum {
    FAILSTOP_RC_UNKNOWN = 0,
    FAILSTOP_RC_POWER_ON,
    FAILSTOP_RC_FAULT,
    FAILSTOP_RC_WATCHDOG,
    FAILSTOP_RC_SOFT,
    FAILSTOP_RC_PIN,
    FAILSTOP_RC_BROWNOUT,
    FAILSTOP_RC_MAX = FAILSTOP_RC_BROWNOUT,
};

#define FAILSTOP_FLAG_DOUBLE_FAULT (1u << 0)
#define FAILSTOP_FLAG_MSG_TRUNCATED (1u << 1)
#define FAILSTOP_FLAG_TB_TRUNCATED (1u << 2)
#define FAILSTOP_FLAG_NAME_TRUNCATED (1u << 3)
#define FAILSTOP_FLAG_NO_PYTHON_FRAME (1u << 4)
#define FAILSTOP_FLAG_HEAP_LOCKED (1u << 5)
#define FAILSTOP_FLAG_POSTHOC (1u << 6)
#define FAILSTOP_FLAG_REASON_UNPRINTABLE (1u << 7)
#define FAILSTOP_FLAG_IN_KEEPER (1u << 8) // written while the keeper ran: never given to it

#define FAILSTOP_NFRAMES (3)
#define FAILSTOP_SLOT_MAGIC (0x43525346u) // "FSRC"
#define FAILSTOP_HDR_MAGIC (0x48525346u) // "FSRH"
#define FAILSTOP_FORMAT_VERSION (1) // slots
#define FAILSTOP_HDR_VERSION (2) // 2: the mark in its own CRC'd block
#define FAILSTOP_STATE_SAFE_MODE (1u << 0)

typedef struct _failstop_frame_t {
    uint32_t line;
    char file[24];
    char func[20];
} failstop_frame_t;

typedef struct _failstop_record_t {
    uint32_t magic;
    uint8_t version;
    uint8_t kind;
    uint8_t action;
    uint8_t reset_cause;
    uint32_t seq;
    uint32_t boot;
    uint32_t uptime_ms;
    uint32_t flags;
    uint32_t heap_free;
    uint32_t alloc_size;
    uint32_t stack_used;
    uint32_t pc;
    uint32_t lr;
    uint8_t nframes;
    uint8_t depth;
    uint16_t reserved0;
    char mark[16];
    char firmware[16];
    char exc_type[24];
    char message[64];
    failstop_frame_t frames[FAILSTOP_NFRAMES];
    uint32_t reserved1;
    uint32_t crc;
} failstop_record_t;

typedef struct _failstop_header_t {
    uint32_t magic;
    uint8_t version;
    uint8_t nslots;
    uint16_t slot_size;
    uint32_t boot_count;
    uint32_t next_seq;
    uint32_t seen_seq;
    uint8_t pending_cause;
    uint8_t boot_cause;
    uint8_t loop_count;
    uint8_t loop_limit;
    uint32_t loop_window_ms;
    uint32_t loop_uptime_ms;
    uint8_t state;
    uint8_t reserved[7];
    uint32_t crc; // over the bytes before it
    // The breadcrumb block, CRC'd on its own: mark() never rewrites the header, and a
    // torn mark update loses only the mark.
    char mark[16];
    uint32_t mark_crc;
} failstop_header_t;

typedef struct _failstop_region_t {
    failstop_header_t hdr;
    failstop_record_t slot[MICROPY_FAILSTOP_NSLOTS];
} failstop_region_t;

// The byte layout is the same on every port (docs/record-format.md).
_Static_assert(sizeof(failstop_frame_t) == 48, "failstop record layout");
_Static_assert(sizeof(failstop_record_t) == 320, "failstop record layout");
_Static_assert(sizeof(failstop_header_t) == 64, "failstop record layout");
_Static_assert(offsetof(failstop_record_t, frames) == 168, "failstop record layout");
_Static_assert(offsetof(failstop_header_t, crc) == 40, "failstop record layout");
_Static_assert(offsetof(failstop_header_t, mark) == 44, "failstop record layout");
_Static_assert(MP_ENDIANNESS_LITTLE, "failstop records are little-endian");

// What a hook knows about a fault; everything else the core captures itself.
typedef struct _failstop_fault_t {
    uint8_t kind;
    uint32_t flags;
    uint32_t alloc_size;
    uint32_t pc;
    uint32_t lr;
    qstr exc_type;             // MP_QSTRnull: none
    const char *msg;           // message text (NULL: none)
    size_t msg_len;
    mp_obj_t exc;              // exception whose traceback gives the frames (MP_OBJ_NULL: none)
} failstop_fault_t;


// Names of the kinds and actions (qstrs, index = code; 0: none), one table each for the
// console, the banner and the Python API.
extern const qstr_short_t failstop_kind_names[FAILSTOP_KIND_MAX + 1];
extern const qstr_short_t failstop_action_names[FAILSTOP_ACTION_RAISE + 1];

// True while the main program (main.py / the unix script) runs.
extern bool failstop_main_active;
// The port glue's bracket around the main program: begin returns false in safe mode (the
// glue skips the program); end after it returned without a fail-stop fault (a healthy
// run ends a crash loop).
bool failstop_main_begin(void);
void failstop_main_end(void);

// Core (failstop_core.c).
void failstop_boot(void);
failstop_region_t *failstop_region(void);
#if MICROPY_FAILSTOP_POLICY
uint8_t failstop_policy_get(uint8_t kind);
bool failstop_policy_allowed(uint8_t kind, uint8_t action);
void failstop_policy_set(uint8_t kind, uint8_t action);
#else
static inline uint8_t failstop_policy_get(uint8_t kind) {
    (void)kind;
    return FAILSTOP_ACTION_REBOOT; // no policy(): every fault is fail-stop
}
#endif
// Record the fault and carry out its policy; returns only when the action is RAISE.
void failstop_fault(const failstop_fault_t *f);
// The two halves of failstop_fault: record (returns the action, 0 if not recorded),
// then stop the board (REBOOT or HALT).
uint8_t failstop_record(const failstop_fault_t *f);
MP_NORETURN void failstop_stop(uint8_t kind, uint8_t action);
void failstop_header_commit(void);
void failstop_mark_set(const char *tag, size_t len);
// The current mark (16 bytes, NUL-padded); all zero when its block is torn.
void failstop_mark_get(char *out);
bool failstop_slot_valid(const failstop_record_t *r);
void failstop_clear(void);
void failstop_healthy(void);
MP_NORETURN void failstop_soft_reset(void);
// The watchdog's early warning, from the port's handler: record WATCHDOG, apply the policy.
void failstop_watchdog_timeout(void);
// A CPU fault from a port's handler: message "<what> 0x<value><suffix>", stacked PC/LR.
MP_NORETURN void failstop_cpu_fault(const char *what, uint32_t value, const char *suffix, uint32_t pc, uint32_t lr);
// FATAL from C (a failed assert, an SDK panic), with its text; never returns.
MP_NORETURN void failstop_fatal(const char *msg, size_t len);
MP_NORETURN void failstop_fatal_assert(const char *file, int line, const char *expr);
uint32_t failstop_crc32(const void *data, size_t len);
void failstop_print_banner(void);
// Nonzero while panic() converts its reason: the OOM/stack hooks then raise as stock.
extern volatile uint8_t failstop_converting;
// Nesting depth of `with failstop.recoverable(kind)` for OOM and STACK ([kind - OOM]).
extern uint8_t failstop_recoverable[2];
// True while failstop.keeper() runs its callback: records get FAILSTOP_FLAG_IN_KEEPER.
extern bool failstop_keeper_active;
// Test hook (_inject('DOUBLE', addr)): the next fault path stores to addr mid-record.
extern uintptr_t failstop_inject_addr;
// Test hook (_inject('MARK')): the next mark() is interrupted half way through its copy.
extern bool failstop_inject_mark;
// An UNHANDLED traceback from the record of the fault being handled (raw output, no Python).
void failstop_print_traceback(void);

// Decimal digits of v, written backwards ending at `end` (no allocation, any context).
char *failstop_utoa(char *end, mp_uint_t v);

// Message of an exception without running Python code: its first argument when
// that is a str or a small int (formatted into buf). Sets *out; returns the length.
size_t failstop_exc_message(mp_obj_t exc, char *buf, size_t cap, const char **out);


#endif // MICROPY_INCLUDED_FAILSTOP_H
