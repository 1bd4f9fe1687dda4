#!/usr/bin/env bash
# failstop firmware for the ESP32 boards: MicroPython's esp32 port, built with the user's
# ESP-IDF, with the failstop user C module.  `make firmware BOARD=ESP32_GENERIC` (also
# ESP32_GENERIC_S3, ESP32_GENERIC_C3) runs this as
#     build.sh BOARD OUTDIR
# with ROOT (this repository) and MICROPY_DIR (the MicroPython tree) in the environment.
# Without ESP-IDF it stops at once and says what to install.
#
# Environment: IDF_PATH (an ESP-IDF checkout; its export.sh is sourced when idf.py is not
# already on PATH), FAILSTOP_IDF_ANY=1 (build with an IDF version outside the supported
# range anyway), FAILSTOP_ESP32_DRY_RUN=1 (print the build command, run nothing).
set -euo pipefail

BOARD=${1:?usage: build.sh BOARD OUTDIR}
OUT=${2:?usage: build.sh BOARD OUTDIR}
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MICROPY_DIR=${MICROPY_DIR:-}

# The supported ESP-IDF versions: MicroPython 1.25's esp32 port supports IDF 5.2-5.4, and its
# ports/esp32/panichandler.c calls esp_panic_handler_reconfigure_wdts, which IDF v5.4.2
# renamed (esp_panic_handler_feed_wdts): 1.25 does not link with IDF 5.4.2 or later.
# MicroPython 1.26 calls the new name from IDF 5.4.2 on (and recommends 5.4.2).
IDF_MIN=5.2.0
IDF_MAX=5.4.1
SUPPORTED="ESP-IDF v5.2.x, v5.3.x, v5.4 or v5.4.1"
if [ -n "$MICROPY_DIR" ] && [ -f "$MICROPY_DIR/py/mpconfig.h" ]; then
    mp_minor=$(sed -n 's/^#define MICROPY_VERSION_MINOR (*\([0-9][0-9]*\))*$/\1/p' "$MICROPY_DIR/py/mpconfig.h")
    mp_major=$(sed -n 's/^#define MICROPY_VERSION_MAJOR (*\([0-9][0-9]*\))*$/\1/p' "$MICROPY_DIR/py/mpconfig.h")
    if [ "${mp_major:-1}" -gt 1 ] || [ "${mp_minor:-25}" -ge 26 ]; then
        IDF_MAX=5.4.2
        SUPPORTED="ESP-IDF v5.2.x, v5.3.x, v5.4, v5.4.1 or v5.4.2 (MicroPython ${mp_major}.${mp_minor})"
    fi
fi

say() { echo "[firmware] $*"; }

no_idf() {
    local where="IDF_PATH is not set"
    if [ -n "${IDF_PATH:-}" ]; then
        where="IDF_PATH=$IDF_PATH has no usable export.sh"
    fi
    cat <<EOF
[firmware] $BOARD: ESP-IDF not found (no idf.py on PATH; $where).
  The ESP32 boards are MicroPython's esp32 port, which only ESP-IDF (Espressif's SDK, with its
  Xtensa and RISC-V toolchains) can build; it is not in the package registries this project
  installs from, so \`make deps\` cannot install it.
  Supported: $SUPPORTED.
  (MicroPython 1.25 does not link with IDF 5.4.2 or later; 1.26 does.)
  Install it as Espressif's "ESP-IDF Get Started" guide says, for example:
      git clone -b v5.4.1 --recursive <esp-idf repository> ~/esp/esp-idf
      ~/esp/esp-idf/install.sh esp32,esp32s3,esp32c3
      . ~/esp/esp-idf/export.sh        (or: export IDF_PATH=~/esp/esp-idf)
  then run \`make firmware BOARD=$BOARD\` again. See docs/manual.md, "ESP32".
EOF
    exit 2
}

# --- ESP-IDF -------------------------------------------------------------------------
if ! command -v idf.py >/dev/null 2>&1; then
    if [ -n "${IDF_PATH:-}" ] && [ -f "$IDF_PATH/export.sh" ]; then
        say "sourcing $IDF_PATH/export.sh"
        # shellcheck disable=SC1091
        . "$IDF_PATH/export.sh" >/dev/null || no_idf
    elif [ -z "${IDF_PATH:-}" ] && [ -f "$HOME/esp/esp-idf/export.sh" ]; then
        say "sourcing $HOME/esp/esp-idf/export.sh"
        # shellcheck disable=SC1091
        . "$HOME/esp/esp-idf/export.sh" >/dev/null || no_idf
    fi
fi
command -v idf.py >/dev/null 2>&1 || no_idf

idf_version_text=$(idf.py --version 2>/dev/null | head -n 1 || true)
idf_version=$(printf '%s' "$idf_version_text" | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\(\.[0-9][0-9]*\)\{0,1\}\).*/\1/p')
if [ -z "$idf_version" ]; then
    echo "[firmware] $BOARD: cannot tell the ESP-IDF version (idf.py --version said: '${idf_version_text}')"
    exit 2
fi
case $idf_version in *.*.*) ;; *) idf_version=$idf_version.0 ;; esac
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }
if ! { version_le "$IDF_MIN" "$idf_version" && version_le "$idf_version" "$IDF_MAX"; }; then
    if [ "${FAILSTOP_IDF_ANY:-0}" = 1 ]; then
        say "ESP-IDF v$idf_version is outside $IDF_MIN..$IDF_MAX; building anyway (FAILSTOP_IDF_ANY=1)"
    else
        cat <<EOF
[firmware] $BOARD: ESP-IDF v$idf_version is not supported.
  Supported: $SUPPORTED. MicroPython 1.25's esp32 port does not link with IDF 5.4.2 or later
  (esp_panic_handler_reconfigure_wdts was renamed; 1.26 takes up to 5.4.2); 5.2 at least.
  Check out a supported IDF (git checkout v5.4.1 && git submodule update --init --recursive;
  ./install.sh; . ./export.sh), or FAILSTOP_IDF_ANY=1 to try anyway.
EOF
        exit 2
    fi
fi

# --- MicroPython tree -----------------------------------------------------------------
PORT_DIR=$MICROPY_DIR/ports/esp32
if [ ! -f "$PORT_DIR/Makefile" ] || [ ! -d "$PORT_DIR/boards/$BOARD" ]; then
    echo "[firmware] $BOARD: no MicroPython esp32 port with that board in MICROPY_DIR=$MICROPY_DIR"
    echo "  make deps fetches MicroPython 1.25.0; or point MICROPY_DIR at your own tree."
    exit 2
fi
# The esp32 port freezes packages from micropython-lib and builds btree from berkeley-db:
# git submodules, which the Debian source package that make deps fetches leaves empty.
missing=""
for sub in lib/berkeley-db-1.xx lib/micropython-lib; do
    if [ -z "$(ls -A "$MICROPY_DIR/$sub" 2>/dev/null)" ]; then
        missing="$missing $sub"
    fi
done
if [ -n "$missing" ]; then
    cat <<EOF
[firmware] $BOARD: the MicroPython tree in MICROPY_DIR=$MICROPY_DIR lacks the esp32 port's
  submodules:$missing
  (the Debian source package that make deps fetches has none). Use a git clone of MicroPython
  v1.25.0 (or v1.26.1) and fetch them once, ESP-IDF's environment loaded:
      git clone -b v1.25.0 <micropython repository> ~/micropython
      make -C ~/micropython/ports/esp32 submodules
  then: make firmware BOARD=$BOARD MICROPY_DIR=~/micropython
EOF
    exit 2
fi

# --- build ---------------------------------------------------------------------------
# MicroPython's own esp32 Makefile: `idf.py -D MICROPY_BOARD=$BOARD -D MICROPY_BOARD_DIR=...
# -D USER_C_MODULES=<failstop>/micropython.cmake -B $OUT/idf build`, then makeimg.py joins
# bootloader, partition table and app into firmware.bin (flashed at 0x1000 / 0x0).
mkdir -p "$OUT"
CMD=(make -C "$PORT_DIR" "BOARD=$BOARD" "BUILD=$OUT/idf"
    "USER_C_MODULES=$ROOT/modules/failstop/micropython.cmake")
say "esp32 port, board $BOARD + failstop, ESP-IDF v$idf_version -> $OUT/firmware.bin"
say "${CMD[*]}"
if [ "${FAILSTOP_ESP32_DRY_RUN:-0}" = 1 ]; then
    exit 0
fi
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "${CMD[@]}" > "$OUT/build.log" 2>&1; then
    grep -m 20 -B2 -A8 -i "error" "$OUT/build.log" | head -n 60 || tail -n 40 "$OUT/build.log"
    say "$BOARD build failed (log: $OUT/build.log)"
    exit 1
fi

# The hooks must be in the image: --wrap silently does nothing when a symbol is not
# called across files, and a weak handler stays IDF's when ours is not linked.
ELF=$OUT/idf/micropython.elf
NM=""
for nm in xtensa-esp32-elf-nm xtensa-esp32s3-elf-nm xtensa-esp-elf-nm riscv32-esp-elf-nm; do
    if command -v "$nm" >/dev/null 2>&1; then NM=$nm; break; fi
done
if [ -n "$NM" ] && [ -f "$ELF" ]; then
    syms=$("$NM" "$ELF")
    for s in __wrap_m_malloc_fail __wrap_mp_raise_recursion_depth __wrap_pyexec_file_if_exists \
        __wrap_panic_arch_fill_info __wrap_panic_soc_fill_info __wrap_panic_restart \
        __wrap_esp_system_abort esp_task_wdt_isr_user_handler; do
        if ! printf '%s\n' "$syms" | grep -q " [TtW] $s\$"; then
            say "$BOARD: hook $s missing from $ELF"
            exit 1
        fi
    done
fi
cp "$OUT/idf/firmware.bin" "$OUT/firmware.bin"
cp "$ELF" "$OUT/firmware.elf"
say "$OUT/firmware.bin ($(wc -c < "$OUT/firmware.bin") bytes) and firmware.elf"
