# esp32 (ESP32, ESP32-S3, ESP32-C3; ESP-IDF 5.2-5.4.1): the hooks the HAL needs, each
# defined in one file and called from another, so --wrap reaches it (see failstop_hal.c).
# MicroPython links usermod into its main component (esp32_common.cmake:
# target_link_libraries(${MICROPY_TARGET} usermod)), and IDF links that component into the
# ELF, so these INTERFACE link options reach the final link as MicroPython's own
# -Wl,--wrap=esp_panic_handler does. failstop does not wrap esp_panic_handler: MicroPython
# does (ports/esp32/panichandler.c), and a symbol can be wrapped once.
list(APPEND FAILSTOP_WRAP
    pyexec_file_if_exists                       # main.py: healthy runs, safe mode
    panic_arch_fill_info panic_soc_fill_info    # the record, inside IDF's panic handler
    panic_restart                               # failstop's action when IDF's panic is done
    esp_system_abort                            # abort()/assert: the caller's address
)
# esp_task_wdt_isr_user_handler is weak in IDF (esp_task_wdt.h): the HAL's definition wins
# without a wrap. No LTO in IDF or the esp32 port (the module's CMake refuses it anyway).
