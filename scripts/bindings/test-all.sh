#!/usr/bin/env bash
# Installs the binding toolchains (idempotent), generates the bindings, and runs the Python,
# Kotlin and Swift suites against a local Synapse. Prints each suite's `N passed, N failed`
# line (prefixed with its language), how long each step took, and a final combined
# `N passed, N failed` line. Exits non-zero if any step or suite fails.
#
# Usage: scripts/bindings/test-all.sh [python] [kotlin] [swift]   (default: all three)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LOGS="$TARGET_DIR/bindings-tests/logs"
mkdir -p "$LOGS"

suites=("$@")
[[ ${#suites[@]} == 0 ]] && suites=(python kotlin swift)

log() { echo "[bindings] $*"; }
timed() {
    local name="$1"
    shift
    local start=$SECONDS
    "$@"
    local status=$?
    log "$name: $((SECONDS - start)) s (exit $status)"
    return $status
}

toolchains=()
for suite in "${suites[@]}"; do
    case "$suite" in
        kotlin | swift) toolchains+=("--$suite") ;;
        python) ;;
        *) echo "unknown suite $suite (python, kotlin, swift)" >&2; exit 2 ;;
    esac
done
if [[ ${#toolchains[@]} -gt 0 ]]; then
    timed "toolchains" scripts/install-bindings-toolchains.sh "${toolchains[@]}" || exit 1
fi
timed "generate" scripts/bindings/generate.sh || exit 1
timed "build ffi-test-runner" cargo build --quiet -p ffi-test-runner || exit 1

total_passed=0
total_failed=0
summaries=()
for suite in "${suites[@]}"; do
    output="$LOGS/$suite.log"
    timed "$suite suite" bash -c "scripts/bindings/test-$suite.sh 2>&1 | tee '$output'; exit \${PIPESTATUS[0]}"
    status=$?
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$output" | tail -n 1)"
    if [[ -z "$line" ]]; then
        line="0 passed, 1 failed"
        log "$suite: no summary line (exit $status); log in $output"
    elif [[ $status != 0 && "$line" == *", 0 failed" ]]; then
        line="${line%%,*}, 1 failed"
        log "$suite: exited $status; log in $output"
    fi
    passed="${line%% passed*}"
    failed="${line##*, }"
    failed="${failed%% failed}"
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summaries+=("$suite: $line")
done

for summary in "${summaries[@]}"; do
    echo "$summary"
done
echo "$total_passed passed, $total_failed failed"
[[ $total_failed == 0 ]]
