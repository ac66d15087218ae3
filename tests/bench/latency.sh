#!/usr/bin/env bash
# The control-latency row on its own: builds the release binaries (unless
# RINGDROP_BIN_DIR names others), starts one ringdropd on loopback (relays
# and mDNS off) and runs tests/bench/latency.py against it: GetStatus every
# 5 ms idle, then while a 20,000-file share imports and rings churn.
# Needs python3 with grpcio and grpcio-tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${RINGDROP_BIN_DIR:-target/release}
if [ -z "${RINGDROP_BIN_DIR:-}" ]; then
    cargo build --release --locked --bins >&2
fi
WORK=$(mktemp -d /var/tmp/ringdrop-latency.XXXXXX)
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
"$BIN/ringdropd" --data-dir "$WORK/data" --socket "$WORK/sock" --relay disabled --no-mdns \
    --bind 127.0.0.1:0 2>"$WORK/log" &
PID=$!
for _ in $(seq 1 500); do
    "$BIN/ringdropctl" --socket "$WORK/sock" status >/dev/null 2>&1 && break
    sleep 0.01
done
python3 tests/bench/latency.py "$WORK/sock" "$BIN/ringdropctl" "$WORK"
