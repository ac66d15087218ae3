#!/usr/bin/env bash
# The test command of the README: every unit and integration test of the
# workspace, on loopback, with relays and mDNS off; then (as root, with
# systemd-nspawn and debootstrap installed) the system service under
# systemd as PID 1, installed from a release build as the README says.
# Arguments are passed to `cargo test` as a filter (and skip the PID-1 test).
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked || exit 1
# --no-fail-fast: one failing test binary does not hide the others
cargo test --workspace --locked --no-fail-fast -- "$@"
rc=$?
if [ $# -gt 0 ]; then
    exit $rc
fi
if [ "$(id -u)" = 0 ] && command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null; then
    echo "== the system service under systemd as PID 1 (tests/systemd/pid1.sh)"
    # CI builds once on a clean clone: the debug test build is done with,
    # and its ~2.6 GB would sit beside the release build on a small disk.
    [ -z "${CI:-}" ] || rm -rf target/debug
    cargo build --release --locked --bins || exit 1
    ./tests/systemd/pid1.sh || rc=1
else
    [ -z "${CI:-}" ] || { echo "pid1: CI must run the PID-1 service test (root, systemd-nspawn, debootstrap)" >&2; exit 1; }
    echo "SKIPPED: the PID-1 service test needs root, systemd-nspawn (systemd-container) and debootstrap"
fi
exit $rc
