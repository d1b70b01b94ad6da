#!/usr/bin/env bash
# Builds the matrix-sdk-rtc-ffi library (debug) and the workspace's uniffi-bindgen, then
# generates the Kotlin, Swift and Python bindings into
# bindings/matrix-sdk-rtc-ffi/generated/{kotlin,swift,python} (git-ignored). The Python folder
# also gets a copy of the library, which the generated module loads from its own folder.
#
# Fails if an expected file is missing: uniffi-bindgen exits 0 even when it writes nothing
# (for example from a stripped library).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LIB="$TARGET_DIR/debug/libmatrix_sdk_rtc_ffi.so"
BINDGEN="$TARGET_DIR/debug/uniffi-bindgen"
OUT="$ROOT/bindings/matrix-sdk-rtc-ffi/generated"

# One build for both, so that uniffi is built with one feature set.
cargo build --quiet -p matrix-sdk-rtc-ffi -p uniffi-bindgen

rm -rf "$OUT/kotlin" "$OUT/swift" "$OUT/python"
for language in kotlin swift python; do
    "$BINDGEN" generate "$LIB" --language "$language" --out-dir "$OUT/$language" --no-format >/dev/null
done
cp "$LIB" "$OUT/python/"

missing=0
for file in \
    kotlin/uniffi/matrix_sdk_rtc_ffi/matrix_sdk_rtc_ffi.kt \
    swift/matrix_sdk_rtc_ffi.swift \
    swift/matrix_sdk_rtc_ffiFFI.h \
    swift/matrix_sdk_rtc_ffiFFI.modulemap \
    python/matrix_sdk_rtc_ffi.py \
    python/libmatrix_sdk_rtc_ffi.so; do
    if [[ ! -s "$OUT/$file" ]]; then
        echo "generate: missing $OUT/$file" >&2
        missing=1
    fi
done
[[ $missing == 0 ]] || exit 1
echo "generate: bindings in $OUT/{kotlin,swift,python}" >&2
