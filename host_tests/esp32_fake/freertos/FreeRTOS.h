// FAKE (host tests only): components/freertos/.../FreeRTOS.h (what the HAL uses)
#pragma once
#include <stdint.h>
