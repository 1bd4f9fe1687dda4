# failstop — the front door.  `make demo`, `make test`; see README.md.
ROOT := $(abspath .)
FAILSTOP_CACHE ?= $(HOME)/.cache/failstop
export FAILSTOP_CACHE
# MicroPython: 1.25.0 (the default) or 1.26.1, Debian's sources that `make deps` caches;
# MICROPY_DIR=/your/tree builds against your own tree instead (MICROPY_VERSION says which
# version it is, for the build directory and the tests).  Every version but the default
# builds into <board>-mp<version>/.
MICROPY_VERSION ?= 1.25.0
MP_DEFAULT := 1.25.0
MP_VERSIONS := 1.25.0 1.26.1
ifeq ($(origin MICROPY_DIR),undefined)
MICROPY_DIR := $(FAILSTOP_CACHE)/src/micropython-$(MICROPY_VERSION)
OWN_TREE :=
else
OWN_TREE := 1
endif
MP_SUFFIX := $(if $(filter $(MP_DEFAULT),$(MICROPY_VERSION)),,-mp$(MICROPY_VERSION))
# The sources deps fetches: every pinned version (less the one your own tree stands for);
# for one board's firmware, just the version it builds.
DEPS_MP_ALL := $(if $(OWN_TREE),$(filter-out $(MICROPY_VERSION),$(MP_VERSIONS)),$(MP_VERSIONS))
DEPS_MP_ONE := $(if $(OWN_TREE),,$(MICROPY_VERSION))
# The other versions `make test` runs the corpus on (unix and MPS2_AN385 firmware).
MP_EXTRA := $(filter-out $(MP_DEFAULT),$(MP_VERSIONS))
BUILD ?= $(ROOT)/build
BOARD ?= unix
# FAILSTOP_PROFILE=lean: the lean module (panic, OOM, STACK, watchdog, the record, last();
# modules/failstop/failstop_config.h) for MPS2_AN385 and RPI_PICO, into <board>-lean/.
FAILSTOP_PROFILE ?= full
ifeq ($(filter full lean,$(FAILSTOP_PROFILE)),)
$(error FAILSTOP_PROFILE=$(FAILSTOP_PROFILE): full or lean)
endif
PROFILE_SUFFIX := $(if $(filter lean,$(FAILSTOP_PROFILE)),-lean,)
export FAILSTOP_PROFILE
VENV := $(FAILSTOP_CACHE)/venv
# The virtualenv's Python with this checkout's host package first (the venv is shared by every
# checkout that uses the same cache; its editable install may point at another one).
PY := PYTHONPATH=$(ROOT)/tools $(VENV)/bin/python
JOBS ?= 2

# unix port: no SSL/btree (their submodules are not in the source package), the
# system libffi, nothing frozen.  STRIP= keeps symbols for the measurements.
UNIX_FLAGS := VARIANT=standard MICROPY_PY_SSL=0 MICROPY_PY_BTREE=0 MICROPY_PY_FFI=1 \
	FROZEN_MANIFEST= STRIP= MICROPY_DIR=$(MICROPY_DIR)
UNIX_FW := $(BUILD)/unix$(MP_SUFFIX)/micropython
UNIX_STOCK := $(BUILD)/unix-stock$(MP_SUFFIX)/micropython

# qemu port, board MPS2_AN385 (Cortex-M3) from boards/: littlefs for the flash
# filesystem, our own frozen manifest (it needs nothing from micropython-lib, whose
# README mkrules.mk still wants to see: an empty stand-in directory).
QEMU_OUT := MPS2_AN385$(MP_SUFFIX)$(PROFILE_SUFFIX)
QEMU_FW := $(BUILD)/$(QEMU_OUT)/firmware.elf
QEMU_FLAGS := BOARD=MPS2_AN385 BOARD_DIR=$(ROOT)/boards/MPS2_AN385 MICROPY_VFS_LFS2=1 \
	FROZEN_MANIFEST=$(ROOT)/boards/MPS2_AN385/manifest.py MPY_LIB_DIR=$(BUILD)/no-micropython-lib \
	MICROPY_DIR=$(MICROPY_DIR)

# rp2 port, board RPI_PICO (RP2040): configured with cmake directly, in a private copy
# of the MicroPython tree whose lib/pico-sdk, lib/tinyusb and lib/mbedtls point at the
# Debian sources that `make deps-rp2` caches; our own frozen manifest; picotool (built
# by deps-rp2) for the UF2.
RP2_DEPS := $(FAILSTOP_CACHE)/rp2
RP2_BUILD := $(BUILD)/RPI_PICO
RP2_TREE := $(RP2_BUILD)/micropython
RP2_OUT := $(BUILD)/RPI_PICO$(PROFILE_SUFFIX)
RP2_FW := $(RP2_OUT)/firmware.uf2
# Configuring the port, with and without the module (-B and -DUSER_C_MODULES added).
RP2_CMAKE = GIT_CEILING_DIRECTORIES=$(RP2_BUILD) cmake -S $(RP2_TREE)/ports/rp2 -DMICROPY_BOARD=RPI_PICO \
	-DMICROPY_BOARD_DIR=$(RP2_TREE)/ports/rp2/boards/RPI_PICO -DPICO_BUILD_DOCS=0 \
	-Dpicotool_DIR=$(RP2_DEPS)/picotool/lib/cmake/picotool \
	-DMICROPY_FROZEN_MANIFEST=$(ROOT)/boards/RPI_PICO/manifest.py \
	-DMICROPY_LIB_DIR=$(BUILD)/no-micropython-lib

# ESP32 boards: MicroPython's esp32 port, built by ports/esp32/build.sh with the user's
# ESP-IDF (5.2-5.4.1; not installable from the package registries, so make deps does not).
# Without ESP-IDF the build stops at once and says what to install.
ESP32_BOARDS := ESP32_GENERIC ESP32_GENERIC_S3 ESP32_GENERIC_C3
ESP32_CHIP_ESP32_GENERIC := esp32
ESP32_CHIP_ESP32_GENERIC_S3 := esp32s3
ESP32_CHIP_ESP32_GENERIC_C3 := esp32c3

.PHONY: deps-rp2 deps-board firmware-RPI_PICO firmware-RPI_PICO-stock flash $(addprefix firmware-,$(ESP32_BOARDS))
.PHONY: demo-unix demo-pico all deps firmware firmware-unix firmware-unix-stock firmware-MPS2_AN385 test test-host lint demo bench clean help

all: firmware

help:
	@echo "make deps                 install everything make test needs (toolchains, QEMU, Node.js,"
	@echo "                          MicroPython 1.25.0 and 1.26.1 sources, rp2 SDK, Python tools)"
	@echo "make firmware BOARD=unix  build the firmware with the failstop module (MicroPython 1.25.0)"
	@echo "make firmware BOARD=unix MICROPY_VERSION=1.26.1   the same on 1.26.1 (build/unix-mp1.26.1/)"
	@echo "make test                 everything, from a fresh machine"
	@echo "make demo                 build, boot, fault, reboot, read the record back (QEMU board)"
	@echo "make demo-pico            the same on the emulated Raspberry Pi Pico (rp2040js)"
	@echo "make firmware BOARD=MPS2_AN385   the Cortex-M3 firmware for QEMU"
	@echo "make firmware BOARD=MPS2_AN385 FAILSTOP_PROFILE=lean   the lean module (also RPI_PICO; docs/config.md)"
	@echo "make firmware BOARD=RPI_PICO     the RP2040 firmware (UF2) for a Raspberry Pi Pico"
	@echo "make flash BOARD=RPI_PICO        copy it to a Pico in its bootloader (RPI-RP2 drive)"
	@echo "make firmware BOARD=ESP32_GENERIC  ESP32 firmware.bin (also _S3, _C3; needs ESP-IDF 5.2-5.4.1)"
	@echo "make flash BOARD=ESP32_GENERIC PORT=/dev/ttyUSB0   write it through esptool"
	@echo "make bench                fault-path cost, hot-path cost, sizes (figures in docs/)"

# Everything `make test` needs, rp2 included (deps-rp2: the same, its old name).
deps deps-rp2:
	@FAILSTOP_MP_VERSIONS="$(DEPS_MP_ALL)" bash firmware/deps.sh

# What one board's firmware needs: no rp2 part unless BOARD=RPI_PICO, one MicroPython.
deps-board:
	@FAILSTOP_RP2=$(if $(filter RPI_PICO,$(BOARD)),1,0) FAILSTOP_MP_VERSIONS="$(DEPS_MP_ONE)" bash firmware/deps.sh

ifneq ($(MP_SUFFIX),)
ifneq ($(filter RPI_PICO,$(BOARD)),)
$(error RPI_PICO builds with MicroPython $(MP_DEFAULT) only (pico-sdk 2.1.1 is pinned for it); unix and MPS2_AN385 build with $(MP_VERSIONS))
endif
endif

# ESP32 boards need only the user's ESP-IDF (checked by ports/esp32/build.sh).
firmware: $(if $(filter $(ESP32_BOARDS),$(BOARD)),,deps-board)
	@$(MAKE) --no-print-directory firmware-$(BOARD)

firmware-unix:
	@echo "[firmware] unix port + failstop (MicroPython $(MICROPY_VERSION)) -> $(UNIX_FW)"
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/unix -j$(JOBS) $(UNIX_FLAGS) \
		BUILD=$(BUILD)/unix$(MP_SUFFIX) USER_C_MODULES=$(ROOT)/modules > $(BUILD)/unix$(MP_SUFFIX).log 2>&1 \
		|| { tail -n 40 $(BUILD)/unix$(MP_SUFFIX).log; echo "[firmware] unix build failed (log: $(BUILD)/unix$(MP_SUFFIX).log)"; exit 1; }

# The same firmware without failstop, for differential tests and the hot-path benchmark.
firmware-unix-stock:
	@echo "[firmware] stock unix port (no failstop, MicroPython $(MICROPY_VERSION)) -> $(UNIX_STOCK)"
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/unix -j$(JOBS) $(UNIX_FLAGS) \
		BUILD=$(BUILD)/unix-stock$(MP_SUFFIX) > $(BUILD)/unix-stock$(MP_SUFFIX).log 2>&1 \
		|| { tail -n 40 $(BUILD)/unix-stock$(MP_SUFFIX).log; echo "[firmware] stock build failed"; exit 1; }

# mpy-cross (for frozen code), built in the MicroPython tree on its own: the variables
# of a port build (BUILD=...) must not leak into it.
MPY_CROSS := $(MICROPY_DIR)/mpy-cross/build/mpy-cross
$(MPY_CROSS):
	@echo "[firmware] mpy-cross"
	@cd $(MICROPY_DIR)/mpy-cross && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD \
		$(MAKE) -j$(JOBS) > $(BUILD)/mpy-cross$(MP_SUFFIX).log 2>&1 \
		|| { tail -n 40 $(BUILD)/mpy-cross$(MP_SUFFIX).log; echo "[firmware] mpy-cross build failed"; exit 1; }

firmware-MPS2_AN385: $(MPY_CROSS)
	@echo "[firmware] qemu port, board MPS2_AN385 + failstop $(FAILSTOP_PROFILE) (MicroPython $(MICROPY_VERSION)) -> $(QEMU_FW)"
	@mkdir -p $(BUILD)/no-micropython-lib && touch $(BUILD)/no-micropython-lib/README.md
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/qemu -j$(JOBS) $(QEMU_FLAGS) \
		BUILD=$(BUILD)/$(QEMU_OUT) USER_C_MODULES=$(ROOT)/modules > $(BUILD)/$(QEMU_OUT).log 2>&1 \
		|| { tail -n 40 $(BUILD)/$(QEMU_OUT).log; echo "[firmware] MPS2_AN385 build failed (log: $(BUILD)/$(QEMU_OUT).log)"; exit 1; }

# For the size figures (make bench): the stock qemu port's MPS2_AN385 board, without and
# with the failstop module (no board glue, no filesystem), so the difference is the module.
QEMU_STOCK_FLAGS := BOARD=MPS2_AN385 FROZEN_MANIFEST= MICROPY_DIR=$(MICROPY_DIR)
firmware-MPS2_AN385-sizes: $(MPY_CROSS)
	@echo "[firmware] stock MPS2_AN385, without and with the failstop module (size figures)"
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/qemu -j$(JOBS) $(QEMU_STOCK_FLAGS) \
		BUILD=$(BUILD)/MPS2_AN385-stock > $(BUILD)/MPS2_AN385-stock.log 2>&1 \
		|| { tail -n 40 $(BUILD)/MPS2_AN385-stock.log; exit 1; }
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/qemu -j$(JOBS) $(QEMU_STOCK_FLAGS) \
		BUILD=$(BUILD)/MPS2_AN385-module USER_C_MODULES=$(ROOT)/modules FAILSTOP_PROFILE=full \
		> $(BUILD)/MPS2_AN385-module.log 2>&1 \
		|| { tail -n 40 $(BUILD)/MPS2_AN385-module.log; exit 1; }
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/qemu -j$(JOBS) $(QEMU_STOCK_FLAGS) \
		BUILD=$(BUILD)/MPS2_AN385-module-lean USER_C_MODULES=$(ROOT)/modules FAILSTOP_PROFILE=lean \
		> $(BUILD)/MPS2_AN385-module-lean.log 2>&1 \
		|| { tail -n 40 $(BUILD)/MPS2_AN385-module-lean.log; exit 1; }

# The private tree: a copy of MICROPY_DIR (no build outputs) with the three rp2
# submodules as symlinks into the cache; the cached tree stays as the unix and qemu
# builds expect it.
$(RP2_TREE)/.failstop-tree:
	@echo "[firmware] private MicroPython tree for rp2 -> $(RP2_TREE)"
	@rm -rf $(RP2_TREE) && mkdir -p $(RP2_BUILD)
	@cp -a $(MICROPY_DIR) $(RP2_TREE)
	@rm -rf $(RP2_TREE)/mpy-cross/build $(RP2_TREE)/ports/*/build*
	@rm -rf $(RP2_TREE)/lib/pico-sdk $(RP2_TREE)/lib/tinyusb $(RP2_TREE)/lib/mbedtls
	@ln -s $(RP2_DEPS)/x/usr/src/pico-sdk $(RP2_TREE)/lib/pico-sdk
	@ln -s $(RP2_DEPS)/x/usr/src/tinyusb $(RP2_TREE)/lib/tinyusb
	@ln -s $(RP2_DEPS)/src/mbedtls-3.6.6 $(RP2_TREE)/lib/mbedtls
	@touch $@

firmware-RPI_PICO: $(RP2_TREE)/.failstop-tree
	@echo "[firmware] rp2 port, board RPI_PICO + failstop $(FAILSTOP_PROFILE) -> $(RP2_FW)"
	@mkdir -p $(BUILD)/no-micropython-lib $(RP2_OUT) && touch $(BUILD)/no-micropython-lib/README.md
	@$(RP2_CMAKE) -B $(RP2_OUT)/cmake -DUSER_C_MODULES=$(ROOT)/modules/failstop/micropython.cmake \
		-DFAILSTOP_PROFILE=$(FAILSTOP_PROFILE) > $(RP2_OUT)/cmake.log 2>&1 \
		|| { tail -n 40 $(RP2_OUT)/cmake.log; echo "[firmware] RPI_PICO configure failed (log: $(RP2_OUT)/cmake.log)"; exit 1; }
	@GIT_CEILING_DIRECTORIES=$(RP2_BUILD) $(MAKE) --no-print-directory -C $(RP2_OUT)/cmake -j$(JOBS) > $(RP2_OUT)/build.log 2>&1 \
		|| { grep -m 20 -B2 -A8 "error" $(RP2_OUT)/build.log | head -60; echo "[firmware] RPI_PICO build failed (log: $(RP2_OUT)/build.log)"; exit 1; }
	@for s in m_malloc_fail mp_raise_recursion_depth pyexec_file_if_exists watchdog_enable mp_usbd_init; do \
		arm-none-eabi-nm $(RP2_OUT)/cmake/firmware.elf | grep -q " T __wrap_$$s$$" \
		|| { echo "[firmware] RPI_PICO: hook $$s missing"; exit 1; }; done
	@cp $(RP2_OUT)/cmake/firmware.uf2 $(RP2_OUT)/cmake/firmware.elf $(RP2_OUT)/cmake/firmware.bin $(RP2_OUT)/
	@arm-none-eabi-size $(RP2_OUT)/firmware.elf | tail -n 1

# The same board without failstop (size figures for make bench).
firmware-RPI_PICO-stock: $(RP2_TREE)/.failstop-tree
	@echo "[firmware] stock RPI_PICO (no failstop) -> $(RP2_BUILD)/stock"
	@mkdir -p $(BUILD)/no-micropython-lib && touch $(BUILD)/no-micropython-lib/README.md
	@$(RP2_CMAKE) -B $(RP2_BUILD)/stock > $(RP2_BUILD)/stock.log 2>&1 \
		|| { tail -n 40 $(RP2_BUILD)/stock.log; exit 1; }
	@GIT_CEILING_DIRECTORIES=$(RP2_BUILD) $(MAKE) --no-print-directory -C $(RP2_BUILD)/stock -j$(JOBS) >> $(RP2_BUILD)/stock.log 2>&1 \
		|| { tail -n 40 $(RP2_BUILD)/stock.log; exit 1; }
	@arm-none-eabi-size $(RP2_BUILD)/stock/firmware.elf | tail -n 1

# ESP32, ESP32-S3, ESP32-C3 -> build/<BOARD>/firmware.bin and firmware.elf.
$(addprefix firmware-,$(ESP32_BOARDS)):
	@ROOT=$(ROOT) MICROPY_DIR=$(MICROPY_DIR) bash $(ROOT)/ports/esp32/build.sh \
		$(patsubst firmware-%,%,$@) $(BUILD)/$(patsubst firmware-%,%,$@)

$(BUILD):
	@mkdir -p $(BUILD)

firmware-unix firmware-unix-stock firmware-MPS2_AN385 firmware-MPS2_AN385-sizes $(MPY_CROSS) firmware-RPI_PICO: | $(BUILD)

# The firmware each backend runs (host_tests/conftest.py); FAILSTOP_<X>_FW_1_26_1 and so
# on for the other MicroPython versions (<board>-mp<version>/).
mp_var = $(subst .,_,$(1))
TEST_ENV := FAILSTOP_UNIX_FW=$(UNIX_FW) FAILSTOP_UNIX_STOCK=$(UNIX_STOCK) FAILSTOP_QEMU_FW=$(QEMU_FW) \
	FAILSTOP_QEMU_FW_LEAN=$(BUILD)/MPS2_AN385-lean/firmware.elf FAILSTOP_PICO_FW_LEAN=$(BUILD)/RPI_PICO-lean/firmware.uf2 \
	FAILSTOP_PICO_FW=$(RP2_FW) FAILSTOP_MICROPY_VERSION=$(MICROPY_VERSION) MICROPY_DIR=$(MICROPY_DIR) \
	$(foreach v,$(MP_EXTRA),FAILSTOP_UNIX_FW_$(call mp_var,$(v))=$(BUILD)/unix-mp$(v)/micropython \
		FAILSTOP_UNIX_STOCK_$(call mp_var,$(v))=$(BUILD)/unix-stock-mp$(v)/micropython \
		FAILSTOP_QEMU_FW_$(call mp_var,$(v))=$(BUILD)/MPS2_AN385-mp$(v)/firmware.elf)

# A test that hangs fails after 5 minutes (pytest-timeout) instead of holding CI.
test: deps
	@$(MAKE) --no-print-directory firmware-unix firmware-unix-stock firmware-MPS2_AN385 firmware-RPI_PICO
	@$(MAKE) --no-print-directory FAILSTOP_PROFILE=lean firmware-MPS2_AN385 firmware-RPI_PICO
	@$(foreach v,$(MP_EXTRA),$(MAKE) --no-print-directory MICROPY_VERSION=$(v) \
		MICROPY_DIR=$(FAILSTOP_CACHE)/src/micropython-$(v) firmware-unix firmware-unix-stock firmware-MPS2_AN385 &&) true
	@$(MAKE) --no-print-directory lint
	@echo "[test] pytest host_tests (backends: unix, qemu MPS2_AN385 on MicroPython $(MICROPY_VERSION) and $(MP_EXTRA); rp2 RPI_PICO in rp2040js; simulator; the lean profile on both boards)"
	@$(TEST_ENV) FAILSTOP_REQUIRE_ALL=1 $(PY) -m pytest host_tests -q -rs --timeout=300

lint:
	@echo "[lint] ruff + mypy"
	@$(VENV)/bin/ruff check tools host_tests firmware
	@$(VENV)/bin/mypy tools/failstop_host

# Flash a Raspberry Pi Pico: the UF2 onto its RPI-RP2 drive (found among the mounted file
# systems, or DRIVE=dir). BOOTLOADER=1 first restarts a board running MicroPython into its
# bootloader (mpremote bootloader; PORT=/dev/ttyACM0 to choose the board).
# ESP32 boards: build, then failstop flash writes firmware.bin through esptool at the chip's
# offset (PORT=/dev/ttyUSB0, BAUD= to change esptool's 460800).
flash:
ifneq ($(filter $(ESP32_BOARDS),$(BOARD)),)
	@[ -n "$(PORT)" ] || { echo "make flash BOARD=$(BOARD): give the board's serial port, PORT=/dev/ttyUSB0"; exit 2; }
	@$(MAKE) --no-print-directory firmware BOARD=$(BOARD)
	@$(PY) -m failstop_host flash $(BUILD)/$(BOARD)/firmware.bin --port "$(PORT)" \
		--chip $(ESP32_CHIP_$(BOARD)) $(if $(BAUD),--baud $(BAUD))
else
	@[ "$(BOARD)" = RPI_PICO ] || { echo "make flash: BOARD=RPI_PICO or $(ESP32_BOARDS) (the MPS2_AN385 board runs in QEMU: make demo)"; exit 2; }
	@$(MAKE) --no-print-directory firmware BOARD=RPI_PICO
	@$(PY) -m failstop_host flash $(RP2_FW) $(if $(DRIVE),--drive "$(DRIVE)") \
		$(if $(filter 1,$(BOOTLOADER)),--bootloader) $(if $(PORT),--port "$(PORT)")
endif

# The main job on the default emulated board (QEMU MPS2_AN385), through mpremote.
demo: deps-board
	@$(MAKE) --no-print-directory firmware-MPS2_AN385
	@FAILSTOP_QEMU_FW=$(QEMU_FW) $(PY) firmware/demo.py

# The same on the emulated Raspberry Pi Pico (rp2040js), through its USB serial.
demo-pico: deps
	@$(MAKE) --no-print-directory firmware-RPI_PICO
	@FAILSTOP_PICO_FW=$(RP2_FW) $(PY) firmware/demo.py RPI_PICO

# The same on the unix port (retained RAM is a file).
demo-unix: deps-board
	@$(MAKE) --no-print-directory firmware-unix
	@FAILSTOP_UNIX_FW=$(UNIX_FW) $(PY) firmware/demo_unix.py

bench: deps
	@$(MAKE) --no-print-directory firmware-unix firmware-unix-stock firmware-MPS2_AN385 \
		firmware-MPS2_AN385-sizes firmware-RPI_PICO firmware-RPI_PICO-stock
	@$(MAKE) --no-print-directory FAILSTOP_PROFILE=lean firmware-RPI_PICO
	@FAILSTOP_UNIX_FW=$(UNIX_FW) FAILSTOP_UNIX_STOCK=$(UNIX_STOCK) MICROPY_DIR=$(MICROPY_DIR) \
		$(PY) firmware/bench.py
	@echo "[bench] simulator: boots per second, OOM sweeps (docs/bench-sim.md)"
	@$(PY) firmware/bench_sim.py > /dev/null
	@echo "[bench] Cortex-M: module size, panic-to-reboot time (QEMU MPS2_AN385)"
	@FAILSTOP_BUILD=$(BUILD) $(PY) firmware/bench_qemu.py > /dev/null
	@echo "[bench] RP2040: module size, panic-to-REPL time (emulated Pico)"
	@FAILSTOP_BUILD=$(BUILD) $(PY) firmware/bench_rp2.py > /dev/null
	@echo "[bench] host decoder: 1,000,000 random and mutated regions"
	@$(PY) -m failstop_host.fuzz 1000000

clean:
	rm -rf $(BUILD)
