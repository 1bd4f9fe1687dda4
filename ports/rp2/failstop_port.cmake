# rp2: main.py runs through pyexec_file_if_exists (called from main.c, so --wrap
# reaches it). isr_hardfault needs no wrap: pico-sdk defines it weak.
list(APPEND FAILSTOP_WRAP pyexec_file_if_exists)
# Arming and feeding the watchdog, from failstop and from machine.WDT: the early warning
# follows both.
list(APPEND FAILSTOP_WRAP watchdog_enable watchdog_update)
# USB starts after boot.py (main.c): the boot banner written before waits for it.
list(APPEND FAILSTOP_WRAP mp_usbd_init)
# The USB CDC TX FIFO keeps what the board writes before a host opens the port: the boot
# banner and boot output after a fail-stop reboot. tinyusb's 256 B holds less than a
# reboot line, the safe-mode line and MicroPython's banner; 1 KiB holds them (+768 B RAM).
if(NOT DEFINED FAILSTOP_RP2_CDC_TX_BUFSIZE)
    set(FAILSTOP_RP2_CDC_TX_BUFSIZE 1024)
endif()
target_compile_definitions(usermod_failstop INTERFACE CFG_TUD_CDC_TX_BUFSIZE=${FAILSTOP_RP2_CDC_TX_BUFSIZE})
# pico-sdk's panic() (hard_assert, claims of hardware in use, ...) forwards to failstop:
# FATAL with its text, instead of stdio output and a breakpoint (a hang in the field).
target_compile_definitions(usermod_failstop INTERFACE PICO_PANIC_FUNCTION=failstop_rp2_panic)
