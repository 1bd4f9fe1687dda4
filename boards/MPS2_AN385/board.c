// failstop board MPS2_AN385: what the stock qemu port lacks to behave like a board
// in the field, added without patching the port:
//  - boot: the frozen _boot.py mounts the flash filesystem, then boot.py and main.py
//    run (main.py only from the friendly REPL, and not in failstop's safe mode);
//  - a `time` module (ticks, sleep) on the failstop HAL's SysTick clock;
//  - machine.reset() resets the board (the stock port exits QEMU);
//  - a console driven by the UART's receive interrupt: Ctrl-C stops a running program
//    (KeyboardInterrupt), and the REPL sleeps while it waits for input (the stock port
//    polls the UART).
#include "py/runtime.h"
#include "py/builtin.h"
#include "py/mphal.h"
#include "py/smallint.h"
#include "shared/runtime/pyexec.h"
#include "shared/runtime/interrupt_char.h"
#include "failstop.h"

// --- boot sequence -----------------------------------------------------------------

static void board_console_init(void);

static bool board_booted; // boot scripts ran in this VM instance (bss: false after a reset)

static void board_boot_scripts(void) {
    if (board_booted) {
        return;
    }
    board_booted = true;
    board_console_init();
    pyexec_frozen_module("_boot.py", false);
    pyexec_file_if_exists("boot.py");
    if (pyexec_mode_kind != PYEXEC_MODE_FRIENDLY_REPL
        || mp_import_stat("main.py") != MP_IMPORT_STAT_FILE
        || !failstop_main_begin()) {
        return; // no main program, or safe mode
    }
    pyexec_file_if_exists("main.py");
    // It ended without a fail-stop fault (or under RAISE, as stock): a healthy run.
    failstop_main_end();
}

// main.c runs the REPL in a loop after each mp_init; a nonzero return is a soft reset.
int __real_pyexec_friendly_repl(void);
int __wrap_pyexec_friendly_repl(void) {
    board_boot_scripts();
    int ret = __real_pyexec_friendly_repl();
    if (ret != 0) {
        board_booted = false;
    }
    return ret;
}

int __real_pyexec_raw_repl(void);
int __wrap_pyexec_raw_repl(void) {
    board_boot_scripts();
    int ret = __real_pyexec_raw_repl();
    if (ret != 0) {
        board_booted = false;
    }
    return ret;
}

// exit() would end QEMU through semihosting; on a board machine.reset() (exit(0))
// resets it, and any other exit is MicroPython giving up: FATAL.
void __wrap_exit(int status) {
    if (status != 0) {
        static const char msg[] = "exit(nonzero)";
        failstop_fatal(msg, sizeof(msg) - 1);
    }
    failstop_soft_reset();
}

// A failed assert in a debug build (the port's own prints and exit(1)s).
void __wrap___assert_func(const char *file, int line, const char *func, const char *expr) {
    (void)func;
    failstop_fatal_assert(file, line, expr);
}

// --- console input ---------------------------------------------------------------

// The CMSDK UART the port uses (0x40004000) and its RX interrupt, IRQ 0 on AN385.
#define BOARD_UART_DATA (*(volatile uint32_t *)0x40004000)
#define BOARD_UART_STATE (*(volatile uint32_t *)0x40004004)
#define BOARD_UART_CTRL (*(volatile uint32_t *)0x40004008)
#define BOARD_UART_INTCLEAR (*(volatile uint32_t *)0x4000400c)
#define BOARD_UART_RXFULL (1u << 1)
#define BOARD_UART_RX_INTEN (1u << 3)
#define BOARD_UART_RX_INT (1u << 1)
#define BOARD_NVIC_ISER0 (*(volatile uint32_t *)0xe000e100)
#define BOARD_NVIC_ICPR0 (*(volatile uint32_t *)0xe000e280)
#define BOARD_SCB_VTOR (*(volatile uint32_t *)0xe000ed08)
#define BOARD_UART_RX_IRQ (1u << 0)

// The console as a real board's UART driver runs it (stm32, rp2): the receive interrupt
// moves each character into a buffer, except the interrupt character (Ctrl-C while a
// program runs), which schedules KeyboardInterrupt, so mpremote and `failstop log` can
// stop a running main.py. The port's vector table (in flash) has no IRQ entries: a copy
// in RAM with the UART's entry added takes over (VTOR) at the first boot step. A full
// buffer leaves the next character in the UART (RX interrupt off), so QEMU holds the rest
// back: nothing is lost. The REPL sleeps in WFI while it waits (the stock port spins).
#define BOARD_VECTORS (16 + 32) // the Cortex-M3 exceptions, then AN385's 32 IRQs
#define BOARD_RXBUF (512)
static uint32_t board_vectors[BOARD_VECTORS] __attribute__((aligned(256)));
static volatile uint8_t board_rxbuf[BOARD_RXBUF];
static volatile uint32_t board_rx_head, board_rx_tail; // head: ISR writes; tail: reader

static void board_uart_rx_irq(void) {
    BOARD_UART_INTCLEAR = BOARD_UART_RX_INT;
    while (BOARD_UART_STATE & BOARD_UART_RXFULL) {
        uint32_t next = (board_rx_head + 1) % BOARD_RXBUF;
        if (next == board_rx_tail) {
            BOARD_UART_CTRL &= ~BOARD_UART_RX_INTEN; // the reader turns it back on
            return;
        }
        int c = BOARD_UART_DATA & 0xff;
        if (c == mp_interrupt_char) {
            mp_sched_keyboard_interrupt();
            continue;
        }
        board_rxbuf[board_rx_head] = (uint8_t)c;
        board_rx_head = next;
    }
}

static void board_console_init(void) {
    if (BOARD_SCB_VTOR == (uint32_t)board_vectors) {
        return;
    }
    const uint32_t *stock = (const uint32_t *)BOARD_SCB_VTOR;
    for (size_t i = 0; i < 16; ++i) {
        board_vectors[i] = stock[i];
    }
    for (size_t i = 16; i < BOARD_VECTORS; ++i) {
        board_vectors[i] = stock[3]; // HardFault: an unexpected IRQ is a fault, not a hang
    }
    board_vectors[16 + 0] = (uint32_t)board_uart_rx_irq;
    board_rx_head = board_rx_tail = 0;
    __asm volatile ("dsb" : : : "memory");
    BOARD_SCB_VTOR = (uint32_t)board_vectors;
    __asm volatile ("dsb\n isb" : : : "memory");
    BOARD_UART_INTCLEAR = BOARD_UART_RX_INT;
    BOARD_NVIC_ICPR0 = BOARD_UART_RX_IRQ;
    BOARD_UART_CTRL |= BOARD_UART_RX_INTEN;
    BOARD_NVIC_ISER0 = BOARD_UART_RX_IRQ;
}

int __real_mp_hal_stdin_rx_chr(void);
int __wrap_mp_hal_stdin_rx_chr(void) {
    board_console_init();
    for (;;) {
        __asm volatile ("cpsid i" : : : "memory");
        if (board_rx_tail != board_rx_head) {
            int c = board_rxbuf[board_rx_tail];
            board_rx_tail = (board_rx_tail + 1) % BOARD_RXBUF;
            BOARD_UART_CTRL |= BOARD_UART_RX_INTEN; // room again (after a full buffer)
            __asm volatile ("cpsie i" : : : "memory");
            return c;
        }
        // WFI wakes on a pending interrupt even while masked; the UART's or SysTick's
        // handler runs as soon as the mask opens.
        __asm volatile ("dsb\n wfi" : : : "memory");
        __asm volatile ("cpsie i" : : : "memory");
    }
}

// --- time ------------------------------------------------------------------------

mp_uint_t mp_hal_ticks_ms(void) {
    return failstop_hal_uptime_ms();
}

mp_uint_t mp_hal_ticks_us(void) {
    return (mp_uint_t)failstop_qemu_ticks_us();
}

// No RTC: file times (littlefs) count from boot.
uint64_t mp_hal_time_ns(void) {
    return failstop_qemu_ticks_us() * 1000u;
}

static void board_sleep_us(uint64_t us) {
    uint64_t t0 = failstop_qemu_ticks_us();
    while (failstop_qemu_ticks_us() - t0 < us) {
        mp_handle_pending(true);
        if (us - (failstop_qemu_ticks_us() - t0) > 1000) {
            __asm volatile ("wfi"); // SysTick wakes us every millisecond
        }
    }
}

static mp_obj_t board_ticks_ms(void) {
    return MP_OBJ_NEW_SMALL_INT(mp_hal_ticks_ms() & (MICROPY_PY_TIME_TICKS_PERIOD - 1));
}
static MP_DEFINE_CONST_FUN_OBJ_0(board_ticks_ms_obj, board_ticks_ms);

static mp_obj_t board_ticks_us(void) {
    return MP_OBJ_NEW_SMALL_INT(mp_hal_ticks_us() & (MICROPY_PY_TIME_TICKS_PERIOD - 1));
}
static MP_DEFINE_CONST_FUN_OBJ_0(board_ticks_us_obj, board_ticks_us);

static mp_obj_t board_ticks_diff(mp_obj_t end_in, mp_obj_t start_in) {
    // Same arithmetic as extmod/modtime.c: wrap-around in the ticks period.
    mp_uint_t start = MP_OBJ_SMALL_INT_VALUE(start_in);
    mp_uint_t end = MP_OBJ_SMALL_INT_VALUE(end_in);
    mp_int_t diff = ((end - start + MICROPY_PY_TIME_TICKS_PERIOD / 2) & (MICROPY_PY_TIME_TICKS_PERIOD - 1))
        - MICROPY_PY_TIME_TICKS_PERIOD / 2;
    return MP_OBJ_NEW_SMALL_INT(diff);
}
static MP_DEFINE_CONST_FUN_OBJ_2(board_ticks_diff_obj, board_ticks_diff);

static mp_obj_t board_ticks_add(mp_obj_t ticks_in, mp_obj_t delta_in) {
    mp_uint_t ticks = MP_OBJ_SMALL_INT_VALUE(ticks_in);
    mp_uint_t delta = mp_obj_get_int(delta_in);
    return MP_OBJ_NEW_SMALL_INT((ticks + delta) & (MICROPY_PY_TIME_TICKS_PERIOD - 1));
}
static MP_DEFINE_CONST_FUN_OBJ_2(board_ticks_add_obj, board_ticks_add);

static mp_obj_t board_sleep_ms(mp_obj_t ms_in) {
    mp_int_t ms = mp_obj_get_int(ms_in);
    if (ms > 0) {
        board_sleep_us((uint64_t)ms * 1000);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(board_sleep_ms_obj, board_sleep_ms);

static mp_obj_t board_sleep_us_fn(mp_obj_t us_in) {
    mp_int_t us = mp_obj_get_int(us_in);
    if (us > 0) {
        board_sleep_us((uint64_t)us);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(board_sleep_us_obj, board_sleep_us_fn);

static mp_obj_t board_sleep(mp_obj_t s_in) {
    mp_float_t s = mp_obj_get_float(s_in);
    if (s > 0) {
        board_sleep_us((uint64_t)(s * 1000000));
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(board_sleep_obj, board_sleep);

static mp_obj_t board_time(void) {
    return mp_obj_new_int_from_uint(mp_hal_ticks_ms() / 1000); // seconds since boot: no RTC
}
static MP_DEFINE_CONST_FUN_OBJ_0(board_time_obj, board_time);

static const mp_rom_map_elem_t board_time_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_time) },
    { MP_ROM_QSTR(MP_QSTR_ticks_ms), MP_ROM_PTR(&board_ticks_ms_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_us), MP_ROM_PTR(&board_ticks_us_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_diff), MP_ROM_PTR(&board_ticks_diff_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_add), MP_ROM_PTR(&board_ticks_add_obj) },
    { MP_ROM_QSTR(MP_QSTR_sleep), MP_ROM_PTR(&board_sleep_obj) },
    { MP_ROM_QSTR(MP_QSTR_sleep_ms), MP_ROM_PTR(&board_sleep_ms_obj) },
    { MP_ROM_QSTR(MP_QSTR_sleep_us), MP_ROM_PTR(&board_sleep_us_obj) },
    { MP_ROM_QSTR(MP_QSTR_time), MP_ROM_PTR(&board_time_obj) },
};
static MP_DEFINE_CONST_DICT(board_time_globals, board_time_globals_table);

const mp_obj_module_t board_time_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&board_time_globals,
};

MP_REGISTER_MODULE(MP_QSTR_time, board_time_module);
