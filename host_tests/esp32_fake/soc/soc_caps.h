// FAKE (host tests only): components/soc/<chip>/include/soc/soc_caps.h (ESP32: 2 cores,
// 2 timer groups; the test passes -DFAKE_SINGLE_CORE for the C3)
#pragma once
#ifdef FAKE_SINGLE_CORE
#define SOC_CPU_CORES_NUM (1U)
#else
#define SOC_CPU_CORES_NUM (2U)
#endif
#define SOC_TIMER_GROUPS (2)
