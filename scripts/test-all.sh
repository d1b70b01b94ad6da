#!/usr/bin/env bash
# The one command that runs every check and test of the project (README: "Quick start").
# It installs what the tests need (idempotently), then fails on any warning or failing test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test prerequisites (Synapse venv)"
bash scripts/install-synapse.sh

step "rustfmt"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "doc tests"
cargo test --workspace --doc --locked

step "fuzzing the sticky-event parser and map (bounded)"
bash scripts/fuzz-smoke.sh 30

step "tests (unit, property, integration against a local Synapse)"
cargo nextest run --workspace --locked --no-fail-fast

step "bindings: Python, Kotlin and Swift suites against a local Synapse"
bash scripts/bindings/test-all.sh
