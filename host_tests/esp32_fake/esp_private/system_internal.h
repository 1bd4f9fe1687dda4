// FAKE (host tests only): components/esp_system/include/esp_private/system_internal.h
#pragma once
#include "esp_system.h"
void esp_restart_noos(void) __attribute__((noreturn));
void esp_reset_reason_set_hint(esp_reset_reason_t hint);
