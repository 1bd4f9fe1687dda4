// FAKE (host tests only): components/xtensa/include/xtensa/xtruntime.h
#pragma once
#define XTOS_SET_MIN_INTLEVEL(intlevel) ((unsigned)(intlevel))
