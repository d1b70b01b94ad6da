#!/usr/bin/env bash
# Runs the Python bindings' suite (tests/python) against a local Synapse through
# ffi-test-runner. Expects scripts/bindings/generate.sh to have run (it puts the library next to
# the generated module) and ffi-test-runner to be built. Needs only python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
GENERATED="$ROOT/bindings/matrix-sdk-rtc-ffi/generated/python"
[[ -f "$GENERATED/matrix_sdk_rtc_ffi.py" ]] || { echo "test-python: run generate.sh first" >&2; exit 1; }

exec "$TARGET_DIR/debug/ffi-test-runner" python3 \
    "$ROOT/bindings/matrix-sdk-rtc-ffi/tests/python/test_bindings.py" "$GENERATED"
