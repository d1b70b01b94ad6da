#!/usr/bin/env bash
# Runs the Swift bindings' XCTest suite (tests/swift) against a local Synapse through
# ffi-test-runner. The Swift toolchain lives in a Debian 13 chroot (see
# scripts/install-bindings-toolchains.sh --swift); the package is assembled inside it, at
# /build/matrix-sdk-rtc-swift, from tests/swift plus what generate.sh produced, and its .build
# folder is kept there so later runs only rebuild what changed. Expects generate.sh to have run
# and ffi-test-runner to be built.
#
# Prints `N passed, N failed` from XCTest's own count.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CHROOT="${RTC_BINDINGS_CACHE:-/var/cache/matrix-sdk-rtc}/swift-chroot"
PACKAGE_IN_CHROOT=/build/matrix-sdk-rtc-swift
PACKAGE="$CHROOT$PACKAGE_IN_CHROOT"
GENERATED="$ROOT/bindings/matrix-sdk-rtc-ffi/generated/swift"
SOURCES="$ROOT/bindings/matrix-sdk-rtc-ffi/tests/swift"

if [[ "${1:-}" == "--inside-runner" ]]; then
    # Called by ffi-test-runner, with the RTC_TEST_* environment: run XCTest in the chroot.
    stores="/tmp/rtc-swift-stores-$$"
    log="$(mktemp)"
    trap 'rm -f "$log"; rm -rf "$CHROOT$stores"' EXIT
    status=0
    "$ROOT/scripts/bindings/in-swift-chroot.sh" env RTC_TEST_STORE_DIR="$stores" \
        sh -c "cd $PACKAGE_IN_CHROOT && swift test --disable-swift-testing 2>&1" | tee "$log" \
        || status=$?
    summary="$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -n 1 || true)"
    if [[ -z "$summary" ]]; then
        echo "test-swift: XCTest printed no summary" >&2
        exit 1
    fi
    executed="$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")"
    failures="$(sed -E 's/.*with ([0-9]+) failures?.*/\1/' <<<"$summary")"
    # XCTest counts failed assertions; report failed tests as at most the tests run.
    failed_tests="$(grep -cE "^Test Case .* failed \(" "$log" || true)"
    echo "$((executed - failed_tests)) passed, $failed_tests failed"
    [[ $status == 0 && $failures == 0 ]]
    exit
fi

for file in "$CHROOT/usr/bin/swift" "$GENERATED/matrix_sdk_rtc_ffi.swift" "$TARGET_DIR/debug/libmatrix_sdk_rtc_ffi.so"; do
    [[ -e "$file" || -L "$file" ]] || { echo "test-swift: missing $file" >&2; exit 1; }
done

# Copy only what changed, so that SwiftPM's incremental build sees unchanged inputs.
install_file() {
    mkdir -p "$(dirname "$2")"
    cmp -s "$1" "$2" || cp "$1" "$2"
}
install_file "$SOURCES/Package.swift" "$PACKAGE/Package.swift"
install_file "$SOURCES/Tests/MatrixSdkRtcTests/BindingsTests.swift" \
    "$PACKAGE/Tests/MatrixSdkRtcTests/BindingsTests.swift"
install_file "$GENERATED/matrix_sdk_rtc_ffi.swift" "$PACKAGE/Sources/MatrixSdkRtc/matrix_sdk_rtc_ffi.swift"
install_file "$GENERATED/matrix_sdk_rtc_ffiFFI.h" "$PACKAGE/Sources/matrix_sdk_rtc_ffiFFI/matrix_sdk_rtc_ffiFFI.h"
install_file "$GENERATED/matrix_sdk_rtc_ffiFFI.modulemap" "$PACKAGE/Sources/matrix_sdk_rtc_ffiFFI/module.modulemap"
install_file "$TARGET_DIR/debug/libmatrix_sdk_rtc_ffi.so" "$PACKAGE/lib/libmatrix_sdk_rtc_ffi.so"

exec "$TARGET_DIR/debug/ffi-test-runner" "$0" --inside-runner
