// FAKE (host tests only): components/xtensa/include/xtensa_context.h (XtExcFrame, the
// fields the HAL reads; STRUCT_FIELD (long, 4, ...) there)
#pragma once
typedef struct {
    long exit, pc, ps, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15;
    long sar, exccause, excvaddr;
} XtExcFrame;
