// failstop integration glue for the unix port: the main program's bracket (the
// platform itself is in failstop_hal.c).
#include "py/lexer.h"
#include "py/mpthread.h"
#include "failstop.h"
#include "failstop_frames.h"

// The main script is the first file lexed with no Python frame active (imports
// always run inside one). In safe mode it is replaced by an empty program.
mp_lexer_t *__real_mp_lexer_new_from_file(qstr filename);
mp_lexer_t *__wrap_mp_lexer_new_from_file(qstr filename) {
    if (failstop_vm_top == NULL && !failstop_main_active) {
        if (!failstop_main_begin()) {
            return mp_lexer_new_from_str_len(filename, "", 0, 0); // safe mode
        }
    }
    return __real_mp_lexer_new_from_file(filename);
}

#if MICROPY_PY_THREAD
// The fault path stops the program's other threads: none until the first is started.
volatile unsigned char failstop_unix_threads_started;
mp_uint_t __real_mp_thread_create(void *(*entry)(void *), void *arg, size_t *stack_size);
mp_uint_t __wrap_mp_thread_create(void *(*entry)(void *), void *arg, size_t *stack_size) {
    failstop_unix_threads_started = 1; // before the thread exists: never too late
    return __real_mp_thread_create(entry, arg, stack_size);
}
#endif
