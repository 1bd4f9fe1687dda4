# rp2: main.py runs through pyexec_file_if_exists (called from main.c, so --wrap
# reaches it). isr_hardfault needs no wrap: pico-sdk defines it weak.
list(APPEND FAILSTOP_WRAP pyexec_file_if_exists)
# Arming and feeding the watchdog, from failstop and from machine.WDT: the early warning
# follows both.
list(APPEND FAILSTOP_WRAP watchdog_enable watchdog_update)
