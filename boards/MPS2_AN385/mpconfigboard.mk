# failstop board: ARM MPS2 AN385 (Cortex-M3) as QEMU's mps2-an385 emulates it.
# Build with the qemu port of MicroPython and BOARD_DIR pointing here (see the
# Makefile at the root of this repository):
#   make -C $(MICROPY_DIR)/ports/qemu BOARD=MPS2_AN385 BOARD_DIR=<this dir> \
#        USER_C_MODULES=<repo>/modules MICROPY_VFS_LFS2=1 FROZEN_MANIFEST=<this dir>/manifest.py
QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'
# DWARF for `failstop log --elf`: function and file:line of a record's pc/lr. Not loaded
# (no code or size change), as on the rp2 port's build.
CFLAGS += -g

# The stock memory map plus a NOLOAD region for the failstop record at the top of SSRAM1.
LDSCRIPT = $(BOARD_DIR)/mps2_failstop.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o

MPY_CROSS_FLAGS += -march=armv7m

# Board support: time module, flash filesystem, boot.py/main.py, machine.reset(), a REPL
# that sleeps while it waits for input.
SRC_C += $(BOARD_DIR)/board.c
LDFLAGS += -Wl,--wrap=pyexec_friendly_repl -Wl,--wrap=pyexec_raw_repl -Wl,--wrap=exit -Wl,--wrap=__assert_func \
	-Wl,--wrap=mp_hal_stdin_rx_chr
