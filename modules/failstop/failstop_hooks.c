// failstop hooks: the fault paths of py/, intercepted with ld --wrap (no patch to
// MicroPython): only the __wrap_* shims, which hand each fault to the core. Every
// hooked symbol is called only from other translation units; LTO would bypass --wrap,
// so these builds keep it off.
#include <string.h>
#include "py/runtime.h"
#include "py/gc.h"
#include "py/objfun.h"
#include "failstop.h"
#include "failstop_frames.h"


// The shadow stack's head, one per core or thread. Defined here, in the unit of its one hot
// user: the compiler then addresses a thread-local head directly (%fs:offset on x86-64),
// which takes 3 of the wrapper's 14 instructions off every bytecode call.
#if FAILSTOP_NCORES > 1
failstop_vmframe_t *failstop_vm_tops[FAILSTOP_NCORES];
#else
FAILSTOP_TLS failstop_vmframe_t *failstop_vm_top;
#endif

// Shadow stack: every bytecode frame pushes a node on the C stack. The VM catches
// everything it runs, so it always returns here and the list stays consistent.
mp_vm_return_kind_t __real_mp_execute_bytecode(mp_code_state_t *code_state, volatile mp_obj_t inject_exc);
// (inject_exc is volatile only inside the VM: passed on here, it need not live in memory.)
mp_vm_return_kind_t __wrap_mp_execute_bytecode(mp_code_state_t *code_state, mp_obj_t inject_exc) {
    #if FAILSTOP_NCORES > 1
    // The head's address once: a thread stays on its core (rp2 reads the core id from SIO).
    failstop_vmframe_t **top = &failstop_vm_top;
    #define FS_TOP (*top)
    #else
    #define FS_TOP failstop_vm_top
    #endif
    failstop_vmframe_t f;
    f.prev = FS_TOP;
    f.cs = code_state;
    __atomic_signal_fence(__ATOMIC_SEQ_CST); // node complete before it is visible to a signal/NMI
    FS_TOP = &f;
    mp_vm_return_kind_t ret = __real_mp_execute_bytecode(code_state, inject_exc);
    FS_TOP = f.prev;
    return ret;
    #undef FS_TOP
}

static void fs_fault_text(uint8_t kind, qstr exc_type, const char *msg, size_t len, uint32_t flags, uint32_t size) {
    failstop_fault_t f = { .kind = kind, .flags = flags, .alloc_size = size, .exc_type = exc_type, .msg = msg, .msg_len = len };
    failstop_fault(&f);
}

// Every MemoryError from an allocation, heap-locked included, ends here.
MP_NORETURN void __real_m_malloc_fail(size_t num_bytes);
MP_NORETURN void __wrap_m_malloc_fail(size_t num_bytes) {
    // The core writes MicroPython's text into the record (no buffer on this stack).
    fs_fault_text(FAILSTOP_KIND_OOM, MP_QSTR_MemoryError, NULL, 0, gc_is_locked() ? FAILSTOP_FLAG_HEAP_LOCKED : 0, num_bytes);
    __real_m_malloc_fail(num_bytes);
}

// Every stack-check failure ("maximum recursion depth exceeded") ends here.
MP_NORETURN void __real_mp_raise_recursion_depth(void);
MP_NORETURN void __wrap_mp_raise_recursion_depth(void) {
    static const char msg[] = "maximum recursion depth exceeded";
    fs_fault_text(FAILSTOP_KIND_STACK, MP_QSTR_RuntimeError, msg, sizeof(msg) - 1, 0, 0);
    __real_mp_raise_recursion_depth();
}

// An exception with no handler at all: MicroPython cannot go on.
MP_NORETURN void __real_nlr_jump_fail(void *val);
MP_NORETURN void __wrap_nlr_jump_fail(void *val) {
    static const char msg[] = "uncaught NLR";
    fs_fault_text(FAILSTOP_KIND_FATAL, MP_QSTRnull, msg, sizeof(msg) - 1, 0, 0);
    __real_nlr_jump_fail(val);
}

#if MICROPY_FAILSTOP_UNHANDLED
static uint32_t fs_main_context; // the core/thread that runs the main program (mp_init's)
#endif

// The top level reports an exception that escaped the program: an UNHANDLED fault
// when it escaped the main program (no bytecode frame active; sys.print_exception
// always runs inside one). SystemExit never gets here; KeyboardInterrupt is the
// user stopping the program, not a fault.
void __real_mp_obj_print_exception(const mp_print_t *print, mp_obj_t exc);
void __wrap_mp_obj_print_exception(const mp_print_t *print, mp_obj_t exc) {
    // An exception escaping a thread (its entry prints it) is the thread's end, printed
    // as stock; only the main program's is UNHANDLED.
    #if MICROPY_FAILSTOP_UNHANDLED
    if (failstop_vm_top == NULL && failstop_main_active && failstop_hal_context() == fs_main_context
        && mp_obj_is_exception_instance(exc)
        && !mp_obj_exception_match(exc, MP_OBJ_FROM_PTR(&mp_type_KeyboardInterrupt))) {
        char num[24];
        failstop_fault_t f = { .kind = FAILSTOP_KIND_UNHANDLED, .exc = exc };
        f.exc_type = mp_obj_get_type(exc)->name;
        f.msg_len = failstop_exc_message(exc, num, sizeof(num), &f.msg);
        uint8_t action = failstop_record(&f);
        if (action != 0 && action != FAILSTOP_ACTION_RAISE) {
            // Recorded; the traceback from the record (the exception's own printing
            // could run Python code), then the board goes down.
            failstop_print_traceback();
            failstop_stop(FAILSTOP_KIND_UNHANDLED, action);
        }
    }
    #endif
    __real_mp_obj_print_exception(print, exc);
}

// Boot: the first mp_init after a real reset.
void __real_mp_init(void);
void __wrap_mp_init(void) {
    static bool booted;
    #if MICROPY_FAILSTOP_UNHANDLED
    fs_main_context = failstop_hal_context();
    #endif
    __real_mp_init();
    if (!booted) {
        booted = true;
        failstop_boot();
    }
}

// The main program ran and ended without a fail-stop fault (then a soft reset, or
// the unix process exits): a healthy run ends a crash loop. A safe-mode boot that
// skipped the main program is not one.
void __real_mp_deinit(void);
void __wrap_mp_deinit(void) {
    if (failstop_main_active) {
        failstop_main_end();
    }
    __real_mp_deinit();
}
