// FAKE (host tests only): esp_reset_reason_t as in ESP-IDF v5.2.2 / v5.4.1
// components/esp_system/include/esp_system.h (same enumerators, same order).
#pragma once
typedef enum {
    ESP_RST_UNKNOWN,
    ESP_RST_POWERON,
    ESP_RST_EXT,
    ESP_RST_SW,
    ESP_RST_PANIC,
    ESP_RST_INT_WDT,
    ESP_RST_TASK_WDT,
    ESP_RST_WDT,
    ESP_RST_DEEPSLEEP,
    ESP_RST_BROWNOUT,
    ESP_RST_SDIO,
    ESP_RST_USB,
    ESP_RST_JTAG,
    ESP_RST_EFUSE,
    ESP_RST_PWR_GLITCH,
    ESP_RST_CPU_LOCKUP,
} esp_reset_reason_t;

// (used by the full HAL only)
esp_reset_reason_t esp_reset_reason(void);
void __attribute__((noreturn)) esp_system_abort(const char *details);
