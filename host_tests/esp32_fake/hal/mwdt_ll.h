// FAKE (host tests only): components/hal/esp32/include/hal/mwdt_ll.h
#pragma once
#define MWDT_LL_DEFAULT_CLK_PRESCALER 40000
