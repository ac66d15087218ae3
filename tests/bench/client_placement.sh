#!/usr/bin/env bash
# What placing the files through the client costs (issue 13): a 1 GiB fetch
# by a daemon running as a user of its own (as the system service does),
# once written by the daemon itself (the caller is the daemon's user) and
# once placed by the caller's ringdropctl (the daemon fetches into its
# data dir, the client copies the verified files from descriptors the
# daemon hands it, in the kernel). Fresh fetching daemons each run, taken turn about;
# prints the medians. Needs root (setpriv) and release binaries.
#
#   tests/bench/client_placement.sh        # BENCH_SIZE_MB=1024 BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MB=${BENCH_SIZE_MB:-1024}
RUNS=${BENCH_RUNS:-3}
BIN=${BIN:-target/release}
[ "$(id -u)" = 0 ] || { echo "run as root (setpriv)" >&2; exit 2; }
[ -x "$BIN/ringdropd" ] || cargo build --release --locked --bins
WORK=$(mktemp -d /var/tmp/ringdrop-place-bench.XXXXXX)
chmod 0755 "$WORK"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

start() { # dir as-uid(or empty) -> socket path on stdout
    local dir=$1 uid=$2
    mkdir -p "$dir"
    local wrap=()
    local system=()
    if [ -n "$uid" ]; then
        # As the system service runs: its own user, group ringdrop, --system
        # (the handoff socket the client copies the verified files through).
        getent group ringdrop >/dev/null || groupadd --system ringdrop
        local gid
        gid=$(getent group ringdrop | cut -d: -f3)
        chown "$uid:$gid" "$dir"
        wrap=(setpriv --reuid "$uid" --regid "$gid" --clear-groups --)
        system=(--system --download-dir "$dir/dl")
    fi
    "${wrap[@]}" "$BIN/ringdropd" "${system[@]}" --data-dir "$dir/data" --socket "$dir/d.sock" \
        --relay disabled --no-mdns --bind 127.0.0.1:0 >"$dir/log" 2>&1 </dev/null &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        "$BIN/ringdropctl" --socket "$dir/d.sock" status >/dev/null 2>&1 && break
        sleep 0.05
    done
}

start "$WORK/provider" ""
head -c $((SIZE_MB * 1048576)) /dev/urandom >"$WORK/src.bin"
TICKET=$("$BIN/ringdropctl" --socket "$WORK/provider/d.sock" --json share "$WORK/src.bin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')

secs() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }
daemon_runs=()
client_runs=()
for i in $(seq 1 "$RUNS"); do
    for mode in daemon client; do
        f="$WORK/f-$mode-$i"
        start "$f" 65534
        out="$WORK/out-$mode-$i"
        mkdir -p "$out"
        if [ "$mode" = daemon ]; then
            chown 65534:65534 "$out"
            t0=$(date +%s.%N)
            setpriv --reuid 65534 --regid "$(getent group ringdrop | cut -d: -f3)" --clear-groups -- \
                "$BIN/ringdropctl" --socket "$f/d.sock" fetch "$TICKET" --out "$out/x.bin" >/dev/null
            t1=$(date +%s.%N)
            daemon_runs+=("$(secs "$t0" "$t1")")
        else
            chmod 0700 "$out"
            t0=$(date +%s.%N)
            "$BIN/ringdropctl" --socket "$f/d.sock" fetch "$TICKET" --out "$out/x.bin" >/dev/null
            t1=$(date +%s.%N)
            client_runs+=("$(secs "$t0" "$t1")")
        fi
        cmp -s "$WORK/src.bin" "$out/x.bin" || { echo "$mode run $i: bytes differ" >&2; exit 1; }
        rm -rf "$out" "$f"
    done
done
python3 - "$SIZE_MB" "${daemon_runs[*]}" "${client_runs[*]}" <<'PY'
import statistics, sys
mb = int(sys.argv[1]) * 1048576 / 1e6
d = statistics.median(map(float, sys.argv[2].split()))
c = statistics.median(map(float, sys.argv[3].split()))
print(f"| fetch {sys.argv[1]} MiB | seconds (median) | MB/s |")
print("|---|---|---|")
print(f"| written by the daemon itself | {d:.2f} | {mb / d:.0f} |")
print(f"| placed by the caller's client | {c:.2f} | {mb / c:.0f} |")
print(f"client / daemon throughput: {d / c:.2f}x")
PY
