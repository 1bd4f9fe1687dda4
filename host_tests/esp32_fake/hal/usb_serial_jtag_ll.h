// FAKE (host tests only): components/hal/esp32c3/include/hal/usb_serial_jtag_ll.h
#pragma once
void usb_serial_jtag_ll_txfifo_flush(void);
