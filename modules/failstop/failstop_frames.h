// failstop: the shadow stack of active bytecode frames, and their decoding (private to
// the module and the port glue that needs to know whether Python code is running).
#ifndef MICROPY_INCLUDED_FAILSTOP_FRAMES_H
#define MICROPY_INCLUDED_FAILSTOP_FRAMES_H

#include "py/bc.h"
#include "failstop_hal.h"

// Shadow stack of active bytecode frames (one node per mp_execute_bytecode call).
typedef struct _failstop_vmframe_t {
    struct _failstop_vmframe_t *prev;
    mp_code_state_t *cs;
} failstop_vmframe_t;

#if FAILSTOP_NCORES > 1
extern failstop_vmframe_t *failstop_vm_tops[FAILSTOP_NCORES];
#define failstop_vm_top (failstop_vm_tops[FAILSTOP_CORE_ID()])
#else
extern FAILSTOP_TLS failstop_vmframe_t *failstop_vm_top;
#endif

// Source line, file and block name of a frame, decoded exactly as py/vm.c does.
size_t failstop_frame_decode(const mp_code_state_t *cs, qstr *file, qstr *block);

#endif // MICROPY_INCLUDED_FAILSTOP_FRAMES_H
