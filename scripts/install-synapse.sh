#!/usr/bin/env bash
# Installs the pinned Synapse into a Python virtual environment for the local test homeserver
# (crates/rtc-test-homeserver), with the pinned LiveKit server library (`livekit-api`) that the
# harness's LiveKit JWT service stand-in (crates/rtc-test-homeserver/src/jwt_service.py) mints
# tokens with. Idempotent: when the venv already imports both pinned versions it does nothing; a
# venv with only Synapse gets the library added. Safe to run from several processes at once (the crate runs this script from
# every test process that finds no venv): the work happens under an flock(1) on "<venv>.lock".
#
# Usage: scripts/install-synapse.sh
# Environment:
#   RTC_SYNAPSE_VENV    where the venv lives (default: <repo>/.build/synapse-venv, git-ignored)
#   RTC_SYNAPSE_PYTHON  the interpreter that creates the venv (default: python3, needs >= 3.10)
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
LIVEKIT_API_VERSION="1.2.2"
# What the marker holds: the Rust crate compares it with its own constants.
STAMP="matrix-synapse==$SYNAPSE_VERSION livekit-api==$LIVEKIT_API_VERSION"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RTC_SYNAPSE_VENV:-$root/.build/synapse-venv}"
python="${RTC_SYNAPSE_PYTHON:-python3}"
# Written after a verified install; the Rust crate reads it as its fast path.
marker="$venv/.rtc-synapse-version"

# True when the venv imports Synapse and livekit-api at exactly the pinned versions.
# (synapse.__version__ is no use here: inside a git checkout it appends the checkout's branch and
# commit.)
check_py='import sys, importlib.metadata, synapse, livekit.api
sys.exit(importlib.metadata.version("matrix-synapse") != sys.argv[1]
         or importlib.metadata.version("livekit-api") != sys.argv[2])'
installed() {
    [ -x "$venv/bin/python" ] &&
        "$venv/bin/python" -c "$check_py" "$SYNAPSE_VERSION" "$LIVEKIT_API_VERSION" 2>/dev/null
}

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

if installed; then
    printf '%s\n' "$STAMP" >"$marker"
    echo "install-synapse: $STAMP already installed in $venv"
    exit 0
fi

if [ -e "$venv" ] && [ ! -e "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv")" ]; then
    echo "install-synapse: $venv exists and is not a Python venv; refusing to touch it" >&2
    exit 1
fi

echo "install-synapse: installing $STAMP into $venv"
start=$(date +%s)
rm -f "$marker"
"$python" -m venv "$venv"
# --compile: write the bytecode now, even when PYTHONDONTWRITEBYTECODE is set, so that every
# server start does not compile Synapse's sources again.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --compile \
    "matrix-synapse==$SYNAPSE_VERSION" "livekit-api==$LIVEKIT_API_VERSION"

if ! installed; then
    echo "install-synapse: the venv at $venv does not import $STAMP after installing;" \
        "delete it and try again" >&2
    exit 1
fi
printf '%s\n' "$STAMP" >"$marker"
echo "install-synapse: done in $(($(date +%s) - start)) s"
