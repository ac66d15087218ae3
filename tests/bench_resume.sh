#!/usr/bin/env bash
# Resume figures on loopback: a fetch of SIZE_MB is killed with -9 at about
# half way, the fetching daemon is started again, and the script prints
# bytes_received / size, the provider's bytes_served / size and the time
# from the restart to the transfer moving again. Release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
cargo build --release --bins --locked -q
BIN=target/release
WORK=$(mktemp -d /tmp/ringdrop-resume.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

start() { # name -> pid in $PID
    local d=$WORK/$1
    mkdir -p "$d"
    "$BIN/ringdropd" --data-dir "$d/data" --socket "$d/sock" --relay disabled --no-mdns \
        --bind 127.0.0.1:0 2>>"$d/log" &
    PID=$!
    PIDS+=($PID)
    for _ in $(seq 200); do
        "$BIN/ringdropctl" --socket "$d/sock" status >/dev/null 2>&1 && return 0
        sleep 0.02
    done
    echo "daemon $1 did not start" >&2; exit 1
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
now_ms() { date +%s%3N; }

start a
start b
B_PID=$PID
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$WORK/big.bin"
SIZE=$(stat -c %s "$WORK/big.bin")
SHARE=$("$BIN/ringdropctl" --socket "$WORK/a/sock" --json share "$WORK/big.bin")
TICKET=$(echo "$SHARE" | json '["ticket"]')
mkdir -p "$WORK/out"
ID=$("$BIN/ringdropctl" --socket "$WORK/b/sock" --json fetch "$TICKET" --out "$WORK/out" --detach | json '["id"]')

done_bytes() { "$BIN/ringdropctl" --socket "$WORK/b/sock" --json transfers show "$ID" | json '["bytes_done"]'; }
while :; do
    d=$(done_bytes)
    if [ "$d" -ge $((SIZE / 2)) ]; then break; fi
    sleep 0.02
done
kill -9 "$B_PID"
wait "$B_PID" 2>/dev/null || true
killed_at=$d

restart_ms=$(now_ms)
start b
ready_ms=$(now_ms)
# Moving again: verified bytes beyond the point of the kill.
while :; do
    d=$(done_bytes)
    if [ "$d" -gt "$killed_at" ]; then break; fi
    sleep 0.01
done
moving_ms=$(now_ms)
"$BIN/ringdropctl" --socket "$WORK/b/sock" transfers wait "$ID" >/dev/null
ROW=$("$BIN/ringdropctl" --socket "$WORK/b/sock" --json transfers show "$ID")
RECEIVED=$(echo "$ROW" | json '["bytes_received"]')
# The provider counts a request when it ends; the one the kill cut off ends
# when its connection times out. Wait until the count settles.
SERVED=0
for _ in $(seq 120); do
    SERVED=$("$BIN/ringdropctl" --socket "$WORK/a/sock" --json status | json '["bytes_served"]')
    [ "$SERVED" -ge "$SIZE" ] && break
    sleep 0.5
done
cmp "$WORK/big.bin" "$WORK/out/big.bin"
python3 - "$SIZE" "$killed_at" "$RECEIVED" "$SERVED" "$restart_ms" "$ready_ms" "$moving_ms" <<'PY'
import sys
size, killed, rec, served, t0, t1, t2 = map(int, sys.argv[1:])
print(f"size                      {size} bytes")
print(f"killed at                 {killed/size:.1%} done")
print(f"bytes_received / size     {rec/size:.4f}")
print(f"provider bytes_served/size {served/size:.4f}")
print(f"restart -> serving        {t1-t0} ms")
print(f"restart -> moving again   {t2-t0} ms (verified bytes past the point of the kill)")
PY
