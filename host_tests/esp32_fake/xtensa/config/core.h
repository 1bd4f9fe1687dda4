// FAKE (host tests only): components/xtensa/<chip>/include/xtensa/config/core-isa.h
#pragma once
#define XCHAL_EXCM_LEVEL 3
