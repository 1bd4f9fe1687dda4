// FAKE (host tests only): the sdkconfig.h options the failstop HAL reads (an ESP32 with a
// UART console; the test adds -D for the other configurations).
#pragma once
#define CONFIG_ESP_CONSOLE_UART 1
