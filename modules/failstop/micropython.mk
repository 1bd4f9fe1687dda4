# failstop user C module (make-based ports: unix, qemu, ...).
# The platform half lives in ports/<port>/ of this repository; the port is the
# directory make runs in (ports/unix, ports/qemu), or FAILSTOP_PORT=... .
FAILSTOP_MOD_DIR := $(USERMOD_DIR)
FAILSTOP_ROOT := $(abspath $(FAILSTOP_MOD_DIR)/../..)
FAILSTOP_PORT ?= $(notdir $(CURDIR))
FAILSTOP_PORT_DIR := $(FAILSTOP_ROOT)/ports/$(FAILSTOP_PORT)

ifeq ($(wildcard $(FAILSTOP_PORT_DIR)/failstop_hal.c),)
$(error failstop: no HAL for port '$(FAILSTOP_PORT)' in $(FAILSTOP_ROOT)/ports (set FAILSTOP_PORT))
endif

SRC_USERMOD_C += \
	$(FAILSTOP_MOD_DIR)/failstop_core.c \
	$(FAILSTOP_MOD_DIR)/failstop_frames.c \
	$(FAILSTOP_MOD_DIR)/failstop_hooks.c \
	$(FAILSTOP_MOD_DIR)/modfailstop.c \
	$(FAILSTOP_PORT_DIR)/failstop_hal.c \
	$(wildcard $(FAILSTOP_PORT_DIR)/failstop_glue.c)

CFLAGS_USERMOD += -I$(FAILSTOP_MOD_DIR) -I$(FAILSTOP_PORT_DIR)
# FAILSTOP_PROFILE=lean: the lean module (failstop_config.h); every file that includes
# failstop.h (port glue, board code) sees the same configuration.
ifeq ($(FAILSTOP_PROFILE),lean)
CFLAGS_USERMOD += -DMICROPY_FAILSTOP_LEAN=1
endif

# The fault paths of py/ (see docs/internals.md). --wrap only redirects calls from
# other translation units, which is where all of these are called from; LTO would
# bypass it.
FAILSTOP_WRAP = m_malloc_fail mp_raise_recursion_depth nlr_jump_fail \
	mp_execute_bytecode mp_obj_print_exception mp_init mp_deinit
FAILSTOP_COMMA := ,

-include $(FAILSTOP_PORT_DIR)/failstop_port.mk

LDFLAGS_USERMOD += $(addprefix -Wl$(FAILSTOP_COMMA)--wrap=,$(FAILSTOP_WRAP))
