// failstop frames: the decoding of a shadow-stack frame's location, without allocating.
// (The stack's head is defined next to the wrapper that pushes onto it, failstop_hooks.c.)
#include "py/runtime.h"
#include "py/objfun.h"
#include "failstop.h"
#include "failstop_frames.h"

// The shadow frame stack follows bytecode calls through mp_execute_bytecode's C frames.
#if MICROPY_STACKLESS
#error "failstop: MICROPY_STACKLESS runs Python calls inside one mp_execute_bytecode: the shadow frame stack cannot follow them"
#endif
#if MICROPY_ENABLE_PYSTACK
#error "failstop: MICROPY_ENABLE_PYSTACK exhaustion is raised in py/pystack.c, outside the hooked stack check"
#endif

// Source line of a frame, decoded exactly as py/vm.c does for tracebacks.
size_t failstop_frame_decode(const mp_code_state_t *cs, qstr *file, qstr *block) {
    const byte *ip = cs->fun_bc->bytecode;
    MP_BC_PRELUDE_SIG_DECODE(ip);
    MP_BC_PRELUDE_SIZE_DECODE(ip);
    const byte *line_info_top = ip + n_info;
    const byte *bytecode_start = ip + n_info + n_cell;
    size_t bc = cs->ip - bytecode_start;
    qstr block_name = mp_decode_uint_value(ip);
    for (size_t i = 0; i < 1 + n_pos_args + n_kwonly_args; ++i) {
        ip = mp_decode_uint_skip(ip);
    }
    #if MICROPY_EMIT_BYTECODE_USES_QSTR_TABLE
    *block = cs->fun_bc->context->constants.qstr_table[block_name];
    *file = cs->fun_bc->context->constants.qstr_table[0];
    #else
    *block = block_name;
    *file = cs->fun_bc->context->constants.source_file;
    #endif
    (void)n_state;
    (void)n_exc_stack;
    (void)scope_flags;
    (void)n_def_pos_args;
    return mp_bytecode_get_source_line(ip, line_info_top, bc);
}

