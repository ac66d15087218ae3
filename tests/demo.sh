#!/usr/bin/env bash
# The main job, end to end on one machine with no internet: builds ringdrop,
# starts two daemons on temp dirs (relays and mDNS off, loopback only),
# shares a file on one, fetches it on the other and checks the hash.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-64}
PROFILE=${PROFILE:-release}
echo "== building ringdrop ($PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build --release --bins --locked -q
else
    cargo build --bins --locked -q
fi
BIN=target/$PROFILE

WORK=$(mktemp -d /tmp/ringdrop-demo.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name
    local d=$WORK/$1
    mkdir -p "$d"
    "$BIN/ringdropd" --data-dir "$d/data" --socket "$d/sock" \
        --relay disabled --no-mdns --bind 127.0.0.1:0 2>"$d/log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        "$BIN/ringdropctl" --socket "$d/sock" status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "daemon $1 did not start:" >&2
    cat "$d/log" >&2
    exit 1
}

echo "== starting two daemons (alice, bob)"
start alice
start bob
ctl_a() { "$BIN/ringdropctl" --socket "$WORK/alice/sock" "$@"; }
ctl_b() { "$BIN/ringdropctl" --socket "$WORK/bob/sock" "$@"; }
echo "alice: $(ctl_a id)"
echo "bob:   $(ctl_b id)"

echo "== alice shares a ${SIZE_MB} MiB file"
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$WORK/hello.bin"
TICKET=$(ctl_a --json share "$WORK/hello.bin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
echo "ticket: ${TICKET:0:60}..."

echo "== bob fetches it"
mkdir -p "$WORK/downloads"
start_ns=$(date +%s%N)
ctl_b fetch "$TICKET" --out "$WORK/downloads"
end_ns=$(date +%s%N)
ms=$(( (end_ns - start_ns) / 1000000 ))

want=$(sha256sum < "$WORK/hello.bin" | cut -d' ' -f1)
got=$(sha256sum < "$WORK/downloads/hello.bin" | cut -d' ' -f1)
if [ "$want" != "$got" ]; then
    echo "FAIL: hashes differ ($want vs $got)" >&2
    exit 1
fi
ctl_b transfers ls
echo "OK: ${SIZE_MB} MiB moved alice -> bob in ${ms} ms, sha256 $got"
