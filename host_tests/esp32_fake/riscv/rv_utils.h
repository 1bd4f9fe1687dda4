// FAKE (host tests only): components/riscv/include/riscv/rv_utils.h
#pragma once
static inline void rv_utils_intr_global_disable(void) {
}
