// failstop port configuration: esp32 (ESP32, ESP32-S3, ESP32-C3 under ESP-IDF 5.2-5.4.1).
#ifndef MICROPY_INCLUDED_FAILSTOP_PORT_H
#define MICROPY_INCLUDED_FAILSTOP_PORT_H

// MicroPython threads are FreeRTOS tasks, all on the Python core, under the GIL
// (ports/esp32/mpconfigport.h: MICROPY_PY_THREAD_GIL): one shadow frame stack per task,
// in ESP-IDF's thread-local storage (GCC __thread, kept by FreeRTOS per task).
// FAILSTOP_NCORES stays 1: one core runs Python.
#define FAILSTOP_TLS __thread

#endif
