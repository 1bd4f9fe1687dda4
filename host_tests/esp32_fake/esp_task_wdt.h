// FAKE (host tests only): components/esp_system/include/esp_task_wdt.h (IDF v5.2.2)
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "esp_err.h"
typedef struct {
    uint32_t timeout_ms;
    uint32_t idle_core_mask;
    bool trigger_panic;
} esp_task_wdt_config_t;
typedef struct esp_task_wdt_user_handle_s *esp_task_wdt_user_handle_t;
esp_err_t esp_task_wdt_init(const esp_task_wdt_config_t *config);
esp_err_t esp_task_wdt_reconfigure(const esp_task_wdt_config_t *config);
esp_err_t esp_task_wdt_add_user(const char *user_name, esp_task_wdt_user_handle_t *user_handle_ret);
esp_err_t esp_task_wdt_reset_user(esp_task_wdt_user_handle_t user_handle);
void __attribute__((weak)) esp_task_wdt_isr_user_handler(void);
