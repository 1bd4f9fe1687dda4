// FAKE (host tests only): panic_exception_t as in ESP-IDF v5.2.2 / v5.4.1
// components/esp_system/include/esp_private/panic_internal.h.
#pragma once
typedef enum {
    PANIC_EXCEPTION_DEBUG,
    PANIC_EXCEPTION_IWDT,
    PANIC_EXCEPTION_TWDT,
    PANIC_EXCEPTION_ABORT,
    PANIC_EXCEPTION_FAULT,
} panic_exception_t;
