// FAKE (host tests only): esp_cpu_compare_and_set with the signature of ESP-IDF v5.2.2
// components/esp_hw_support/include/esp_cpu.h, implemented with the host's atomics.
// fake_cas_spurious > 0 makes that many calls fail without storing (as a contended
// S32C1I / lr-sc can), so the caller's retry is exercised.
#pragma once
#include <stdbool.h>
#include <stdint.h>
static int fake_cas_spurious;
static int fake_cas_calls;
static inline bool esp_cpu_compare_and_set(volatile uint32_t *addr, uint32_t compare_value, uint32_t new_value) {
    ++fake_cas_calls;
    if (fake_cas_spurious > 0) {
        --fake_cas_spurious;
        return false;
    }
    return __atomic_compare_exchange_n(addr, &compare_value, new_value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

// (used by the full HAL only)
static inline int esp_cpu_get_core_id(void) {
    return 1;
}
void esp_cpu_stall(int core_id);
