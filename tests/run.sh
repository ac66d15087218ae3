#!/usr/bin/env bash
# The test command of the README: every unit and integration test of the
# workspace, on loopback, with relays and mDNS off.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
# --no-fail-fast: one failing test binary does not hide the others
cargo test --workspace --locked --no-fail-fast -- "$@"
