// FAKE (host tests only): panic_exception_t as in ESP-IDF v5.2.2 / v5.4.1
// components/esp_system/include/esp_private/panic_internal.h.
#pragma once
#include <stdbool.h>
typedef enum {
    PANIC_EXCEPTION_DEBUG,
    PANIC_EXCEPTION_IWDT,
    PANIC_EXCEPTION_TWDT,
    PANIC_EXCEPTION_ABORT,
    PANIC_EXCEPTION_FAULT,
} panic_exception_t;

// (used by the full HAL only)
extern bool g_panic_abort;
extern char *g_panic_abort_details;
typedef void (*panic_info_dump_fn_t)(const void *frame);
typedef struct {
    int core;
    panic_exception_t exception;
    const char *reason;
    const char *description;
    panic_info_dump_fn_t details;
    panic_info_dump_fn_t state;
    const void *addr;
    const void *frame;
    bool pseudo_excause;
} panic_info_t;
void panic_print_char(char c);
