// FAKE (host tests only): components/riscv/include/riscv/rvruntime-frames.h (RvExcFrame,
// the fields the HAL reads; STRUCT_FIELD (long, 4, ...) there)
#pragma once
typedef struct {
    long mepc, ra, sp, gp, tp, t0, t1, t2, s0, s1, a0, a1, a2, a3, a4, a5, a6, a7;
    long s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, t3, t4, t5, t6;
    long mstatus, mtvec, mcause, mtval, mhartid;
} RvExcFrame;
