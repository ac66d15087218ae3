#!/usr/bin/env bash
# Performance benchmark: ringdrop next to sendme, b3sum and iperf3 on the
# same data in the same run (loopback, relays and mDNS off). Builds the
# release binaries, installs the references if they are missing, then runs
# tests/bench/bench.py, which prints the table (see its header for the
# BENCH_* knobs), tests/bench/web.py (the page and the metrics), then, as root, tests/bench/swarm.py (1 owner and 8
# members in network namespaces with capped uplinks: star against swarm).
# Needs about 6 GiB free under $BENCH_DIR (/var/tmp/ringdrop-bench) and
# 2 GiB in /dev/shm; takes ~15 minutes on 2 cores (the swarm half 7).
set -euo pipefail
cd "$(dirname "$0")/../.."

SENDME_VERSION=${SENDME_VERSION:-0.37.1}
export PATH="$HOME/.cargo/bin:$PATH"

need_apt=()
command -v iperf3 >/dev/null || need_apt+=(iperf3)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi
if ! sendme --version 2>/dev/null | grep -q "$SENDME_VERSION"; then
    echo "== installing sendme $SENDME_VERSION" >&2
    cargo install --locked "sendme@$SENDME_VERSION" >&2
fi
command -v b3sum >/dev/null || { echo "== installing b3sum" >&2; cargo install --locked b3sum >&2; }
# Row 8 probes the control socket with a stock grpcio client.
python3 -c "import grpc, grpc_tools" 2>/dev/null || {
    echo "== installing grpcio" >&2
    python3 -m pip install --quiet grpcio grpcio-tools >&2 || python3 -m pip install --quiet --break-system-packages grpcio grpcio-tools >&2
}

echo "== building ringdrop (release)" >&2
cargo build --release --locked --workspace --bins --examples >&2

python3 tests/bench/bench.py
# The page (headless Chromium, selenium) and the metrics.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "== installing chromium" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
fi
python3 -c "import selenium" 2>/dev/null || python3 -m pip install --quiet selenium >&2
python3 tests/bench/web.py
# A ring as a swarm: network namespaces and tc need root.
if [ "$(id -u)" = 0 ]; then
    python3 tests/bench/swarm.py
else
    echo "== skipping tests/bench/swarm.py (network namespaces need root)" >&2
fi
