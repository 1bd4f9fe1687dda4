// FAKE (host tests only): components/hal/include/hal/wdt_hal.h and hal/wdt_types.h (IDF v5.2.2)
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "soc/timer_group_struct.h"
typedef enum { WDT_MWDT0, WDT_MWDT1, WDT_RWDT } wdt_inst_t;
typedef enum { WDT_STAGE0 = 0, WDT_STAGE1 = 1, WDT_STAGE2 = 2, WDT_STAGE3 = 3 } wdt_stage_t;
typedef enum {
    WDT_STAGE_ACTION_OFF = 0,
    WDT_STAGE_ACTION_INT = 1,
    WDT_STAGE_ACTION_RESET_CPU = 2,
    WDT_STAGE_ACTION_RESET_SYSTEM = 3,
} wdt_stage_action_t;
typedef struct {
    wdt_inst_t inst;
    union {
        timg_dev_t *mwdt_dev;
        void *rwdt_dev;
    };
} wdt_hal_context_t;
#define RWDT_HAL_CONTEXT_DEFAULT() {.inst = WDT_RWDT, .rwdt_dev = (void *)0}
void wdt_hal_init(wdt_hal_context_t *hal, wdt_inst_t wdt_inst, uint32_t prescaler, bool enable_intr);
void wdt_hal_config_stage(wdt_hal_context_t *hal, wdt_stage_t stage, uint32_t timeout, wdt_stage_action_t behavior);
void wdt_hal_write_protect_disable(wdt_hal_context_t *hal);
void wdt_hal_write_protect_enable(wdt_hal_context_t *hal);
void wdt_hal_enable(wdt_hal_context_t *hal);
void wdt_hal_disable(wdt_hal_context_t *hal);
