#!/usr/bin/env bash
# Installs everything failstop builds and tests with, on Debian; cached outside
# the clone (FAILSTOP_CACHE, default ~/.cache/failstop) so a second run costs nothing.
#   - Debian packages (toolchains, QEMU, libffi, valgrind)
#   - MicroPython 1.25.0 from Debian trixie's `micropython` source package, fetched
#     with `apt-get source` through a private apt directory whose deb-src line reuses
#     the mirror URI this machine is already configured with; checksum verified
#   - a Python virtual environment with the host package and test tools
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
say "done"
