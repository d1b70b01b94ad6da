#!/usr/bin/env bash
# Runs a command inside the Swift chroot (see scripts/install-bindings-toolchains.sh) with
# /proc mounted (the toolchain finds its libraries through $ORIGIN, which needs /proc), and
# unmounts /proc afterwards if this script mounted it. Extra environment: pass NAME=VALUE
# pairs through `env` in the command.
#
# Usage: scripts/bindings/in-swift-chroot.sh COMMAND [ARGS...]
set -euo pipefail

CHROOT="${RTC_BINDINGS_CACHE:-/var/cache/matrix-sdk-rtc}/swift-chroot"
if [[ ! -x "$CHROOT/usr/bin/env" ]]; then
    echo "no swift chroot at $CHROOT: run scripts/install-bindings-toolchains.sh --swift" >&2
    exit 1
fi

mounted=0
if ! mountpoint -q "$CHROOT/proc"; then
    mount -t proc proc "$CHROOT/proc"
    mounted=1
fi
cleanup() {
    if [[ $mounted == 1 ]]; then
        umount "$CHROOT/proc" 2>/dev/null || umount -l "$CHROOT/proc" 2>/dev/null || true
    fi
}
trap cleanup EXIT

status=0
chroot "$CHROOT" /usr/bin/env PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@" || status=$?
exit $status
