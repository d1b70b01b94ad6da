#!/usr/bin/env bash
# Installs what the Kotlin, Swift and Python binding tests need, from the package registries
# only, idempotently (a second run only checks and takes a second or two):
#
#   - Debian: libjna-java (JNA for the Kotlin bindings) and debootstrap;
#   - npm: the `kotlin-compiler` package (a full kotlinc distribution, with kotlinx-coroutines),
#     unpacked into the cache (its npm "bin" is only the JS compiler, so it is never installed
#     globally);
#   - a Debian 13 (trixie) chroot with `swiftlang`: Debian 12 has no Swift toolchain, and
#     Debian 13's needs glibc 2.38. About 530 MB to download, 3.2 GB on disk.
#
# Everything lands in $RTC_BINDINGS_CACHE (default /var/cache/matrix-sdk-rtc), outside the
# repository, so it survives between runs on the same machine. Needs root (apt, debootstrap,
# chroot). Python needs nothing beyond the system python3.
#
# Usage: scripts/install-bindings-toolchains.sh [--kotlin] [--swift]   (default: both)
set -euo pipefail

CACHE="${RTC_BINDINGS_CACHE:-/var/cache/matrix-sdk-rtc}"
KOTLIN_VERSION="${RTC_KOTLIN_VERSION:-2.4.20}"
KOTLIN_DIR="$CACHE/kotlin-compiler-$KOTLIN_VERSION"
SWIFT_CHROOT="$CACHE/swift-chroot"
DEBIAN_MIRROR="${RTC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Inside the chroot: the toolchain, the C and C++ runtimes it links against, and the CA
# certificates matrix-sdk's HTTP client loads when it starts.
SWIFT_PACKAGES="swiftlang libc6-dev libstdc++-14-dev ca-certificates"

want_kotlin=0
want_swift=0
for arg in "$@"; do
    case "$arg" in
        --kotlin) want_kotlin=1 ;;
        --swift) want_swift=1 ;;
        *) echo "usage: $0 [--kotlin] [--swift]" >&2; exit 2 ;;
    esac
done
if [[ $want_kotlin == 0 && $want_swift == 0 ]]; then
    want_kotlin=1
    want_swift=1
fi

log() { echo "[install-bindings-toolchains] $*" >&2; }

if [[ $(id -u) != 0 ]]; then
    log "needs root (apt-get, debootstrap, chroot)"
    exit 1
fi
mkdir -p "$CACHE"

# --- Debian packages on the host -------------------------------------------------------------
apt_updated=0
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [[ ${#missing[@]} == 0 ]] && return 0
    if [[ $apt_updated == 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Kotlin: JNA and the kotlin-compiler npm package -----------------------------------------
if [[ $want_kotlin == 1 ]]; then
    apt_install libjna-java
    if ! command -v java >/dev/null; then
        apt_install default-jre-headless
    fi
    if [[ -x "$KOTLIN_DIR/package/bin/kotlinc" && -f "$KOTLIN_DIR/package/lib/kotlinx-coroutines-core-jvm.jar" ]]; then
        log "kotlinc $KOTLIN_VERSION: present"
    else
        command -v npm >/dev/null || apt_install npm
        log "kotlinc $KOTLIN_VERSION: fetching the npm package"
        partial="$KOTLIN_DIR.partial"
        rm -rf "$partial"
        mkdir -p "$partial"
        (cd "$partial" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null \
            && tar xzf "kotlin-compiler-$KOTLIN_VERSION.tgz" \
            && rm "kotlin-compiler-$KOTLIN_VERSION.tgz")
        chmod +x "$partial/package/bin/"*
        rm -rf "$KOTLIN_DIR"
        mv "$partial" "$KOTLIN_DIR"
    fi
fi

# --- Swift: a Debian 13 chroot with swiftlang -----------------------------------------------
swift_works() {
    [[ "$(cat "$SWIFT_CHROOT/.rtc-swift-ready" 2>/dev/null)" == "$SWIFT_PACKAGES" ]] \
        && "$(dirname "$0")/bindings/in-swift-chroot.sh" swift --version >/dev/null 2>&1
}

if [[ $want_swift == 1 ]]; then
    if swift_works; then
        log "swift chroot: present ($SWIFT_CHROOT)"
    else
        apt_install debootstrap
        if [[ ! -x "$SWIFT_CHROOT/usr/bin/apt-get" || ! -f "$SWIFT_CHROOT/.rtc-debootstrap-done" ]]; then
            log "swift chroot: debootstrap trixie into $SWIFT_CHROOT"
            rm -rf "$SWIFT_CHROOT"
            debootstrap --variant=minbase trixie "$SWIFT_CHROOT" "$DEBIAN_MIRROR" >/dev/null
            touch "$SWIFT_CHROOT/.rtc-debootstrap-done"
        fi
        cp /etc/resolv.conf "$SWIFT_CHROOT/etc/resolv.conf"
        log "swift chroot: apt-get install $SWIFT_PACKAGES"
        chroot "$SWIFT_CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive sh -c \
            "apt-get update -qq && apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends $SWIFT_PACKAGES >/dev/null && apt-get clean"
        echo "$SWIFT_PACKAGES" > "$SWIFT_CHROOT/.rtc-swift-ready"
        swift_works || { log "swift chroot: swift does not run"; exit 1; }
        log "swift chroot: ready"
    fi
fi
