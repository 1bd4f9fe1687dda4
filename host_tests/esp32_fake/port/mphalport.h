// FAKE (host tests only): from MicroPython v1.25.0 ports/esp32/mphalport.h, only what the
// failstop HAL uses.
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
extern TaskHandle_t mp_main_task_handle;
