// FAKE (host tests only): components/xtensa/include/xtensa/corebits.h
#pragma once
#define EXCCAUSE_LOAD_STORE_ERROR 3
#define EXCCAUSE_UNALIGNED 9
#define EXCCAUSE_LOAD_PROHIBITED 28
#define EXCCAUSE_STORE_PROHIBITED 29
