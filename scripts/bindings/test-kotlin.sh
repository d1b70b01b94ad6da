#!/usr/bin/env bash
# Compiles the generated Kotlin bindings with the Kotlin test program (tests/kotlin) and runs it
# on the JVM, against a local Synapse through ffi-test-runner. Expects
# scripts/bindings/generate.sh and scripts/install-bindings-toolchains.sh --kotlin to have run,
# and ffi-test-runner to be built. The compiled jar is cached (rebuilt when a source changes).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CACHE="${RTC_BINDINGS_CACHE:-/var/cache/matrix-sdk-rtc}"
KOTLIN_HOME="$CACHE/kotlin-compiler-${RTC_KOTLIN_VERSION:-2.4.20}/package"
JNA=/usr/share/java/jna.jar
COROUTINES="$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar"
STDLIB="$KOTLIN_HOME/lib/kotlin-stdlib.jar"
GENERATED="$ROOT/bindings/matrix-sdk-rtc-ffi/generated/kotlin/uniffi/matrix_sdk_rtc_ffi/matrix_sdk_rtc_ffi.kt"
TEST="$ROOT/bindings/matrix-sdk-rtc-ffi/tests/kotlin/BindingsTest.kt"
BUILD="$TARGET_DIR/bindings-tests/kotlin"

for file in "$KOTLIN_HOME/bin/kotlinc" "$JNA" "$COROUTINES" "$GENERATED"; do
    [[ -e "$file" ]] || { echo "test-kotlin: missing $file" >&2; exit 1; }
done

mkdir -p "$BUILD"
inputs="$(cat "$GENERATED" "$TEST" | sha256sum | cut -c1-16)"
if [[ ! -f "$BUILD/tests-$inputs.jar" ]]; then
    rm -f "$BUILD"/tests-*.jar
    echo "test-kotlin: compiling" >&2
    "$KOTLIN_HOME/bin/kotlinc" -nowarn -cp "$JNA:$COROUTINES" "$GENERATED" "$TEST" \
        -d "$BUILD/tests-$inputs.jar" 2> >(grep -v "^warning: unable to find kotlin-stdlib.jar\|^OpenJDK" >&2)
fi

exec "$TARGET_DIR/debug/ffi-test-runner" java -Djna.library.path="$TARGET_DIR/debug" \
    -cp "$BUILD/tests-$inputs.jar:$JNA:$COROUTINES:$STDLIB" BindingsTestKt
