// FAKE (host tests only): components/esp_common/include/esp_err.h
#pragma once
#include <stdint.h>
typedef int esp_err_t;
#define ESP_OK 0
#define ESP_ERR_INVALID_STATE 0x103
