#!/usr/bin/env bash
# A short, bounded run of the sticky-events fuzz target (the test command runs it; run it
# longer by hand as crates/matrix-sticky-events/fuzz/README.md shows).
# Usage: scripts/fuzz-smoke.sh [seconds]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --version '^0.13' --locked
fi

cd crates/matrix-sticky-events
# Fuzz a copy of the seed corpus, so that a run never changes the checked-in one.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r fuzz/corpus/parse_and_map "$work/corpus"
cargo fuzz run --sanitizer none parse_and_map "$work/corpus" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 25
