#!/usr/bin/env bash
# What sharing with the caller's authority costs (issue 21): a directory of
# BENCH_FILES files of BENCH_FILE_KB KiB shared with a --system daemon
# running as a user of its own, once by that user (the daemon walks the
# path and imports by reference) and once by an operator in group
# `ringdrop` (ringdropctl opens every file as the operator and hands the
# descriptors over; the daemon copies them into its store). A fresh daemon
# each run, taken turn about; prints the medians and the ratio. Needs root
# (useradd, setpriv) and release binaries.
#
#   tests/bench/operator_share.sh      # BENCH_FILES=10000 BENCH_FILE_KB=4 BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${BENCH_FILES:-10000}
KB=${BENCH_FILE_KB:-4}
RUNS=${BENCH_RUNS:-3}
BIN=${BIN:-target/release}
[ "$(id -u)" = 0 ] || { echo "run as root (useradd, setpriv)" >&2; exit 2; }
[ -x "$BIN/ringdropd" ] || cargo build --release --locked --bins
getent group ringdrop >/dev/null || groupadd --system ringdrop
id rd-bench >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh -U rd-bench
usermod -aG ringdrop rd-bench
SVC=65534
GID=$(getent group ringdrop | cut -d: -f3)
WORK=$(mktemp -d /var/tmp/ringdrop-share-bench.XXXXXX)
chmod 0755 "$WORK"
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

# The tree: readable by the operator and by the service's user.
python3 - "$WORK/tree" "$FILES" "$KB" <<'PY'
import os, sys
root, n, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"d{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(kb * 1024))
PY
chmod -R a+rX "$WORK/tree"
sync

start() { # dir
    local dir=$1
    mkdir -p "$dir"
    chown "$SVC:$GID" "$dir"
    chmod 0755 "$dir"
    setpriv --reuid "$SVC" --regid "$GID" --clear-groups -- "$BIN/ringdropd" --system \
        --data-dir "$dir/data" --socket "$dir/d.sock" --download-dir "$dir/dl" \
        --relay disabled --no-mdns --bind 127.0.0.1:0 >"$dir/log" 2>&1 </dev/null &
    PID=$!
    for _ in $(seq 1 200); do
        "$BIN/ringdropctl" --socket "$dir/d.sock" status >/dev/null 2>&1 && break
        sleep 0.05
    done
}

timed() { # as-user socket -> seconds
    local who=$1 sock=$2 t0 t1
    t0=$(date +%s.%N)
    setpriv --reuid "$who" --regid "$who" --init-groups -- \
        "$BIN/ringdropctl" --socket "$sock" --json share "$WORK/tree" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

own=() op=()
for r in $(seq 1 "$RUNS"); do
    for who in own op; do
        dir="$WORK/run-$r-$who"
        start "$dir"
        if [ "$who" = own ]; then
            # The daemon's own user: setpriv by uid, with the group.
            t0=$(date +%s.%N)
            setpriv --reuid "$SVC" --regid "$GID" --clear-groups -- \
                "$BIN/ringdropctl" --socket "$dir/d.sock" --json share "$WORK/tree" >/dev/null
            t1=$(date +%s.%N)
            own+=("$(echo "$t1 - $t0" | bc -l)")
        else
            op+=("$(timed rd-bench "$dir/d.sock")")
        fi
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_own=$(median "${own[@]}")
m_op=$(median "${op[@]}")
printf 'share of %d x %d KiB, %d runs (medians):\n' "$FILES" "$KB" "$RUNS"
printf '  by the daemon'"'"'s own user (walk, by reference):  %6.2f s   runs: %s\n' "$m_own" "${own[*]}"
printf '  by an operator (handed descriptors, by copy):    %6.2f s   runs: %s\n' "$m_op" "${op[*]}"
printf '  operator / own: %.2fx (issue 21: <= 1.2x)\n' "$(echo "$m_op / $m_own" | bc -l)"
