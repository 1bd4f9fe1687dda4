// FAKE (host tests only): components/freertos/FreeRTOS-Kernel/include/freertos/task.h
#pragma once
typedef struct tskTaskControlBlock *TaskHandle_t;
TaskHandle_t xTaskGetCurrentTaskHandle(void);
