#!/usr/bin/env bash
# Installs ringdrop into temporary roots (system and --user layouts) and
# runs `systemd-analyze verify` on every installed unit. systemd-analyze
# wants ExecStart's binary to exist, so the verified copies point at the
# binaries inside the temporary root.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
command -v systemd-analyze >/dev/null || { echo "verify_units: systemd-analyze not installed" >&2; exit 1; }
WORK=$(mktemp -d /tmp/ringdrop-units.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

check() { # root unit-dir bindir [--user]
    local root=$1 units=$2 bindir=$3 flag=${4:-}
    mkdir -p "$WORK/verify$flag" "$WORK/rt"
    for u in ringdropd.service ringdropd.socket; do
        [ -f "$root$units/$u" ] || { echo "missing $root$units/$u" >&2; exit 1; }
        sed "s|$bindir|$root$bindir|g" "$root$units/$u" > "$WORK/verify$flag/$u"
    done
    XDG_RUNTIME_DIR=$WORK/rt systemd-analyze verify --man=no $flag \
        "$WORK/verify$flag/ringdropd.service" "$WORK/verify$flag/ringdropd.socket"
    echo "verified: $units/ringdropd.service $units/ringdropd.socket ${flag:-(system)}"
}

DESTDIR=$WORK/sys ./systemd/install.sh --bin-dir "$BIN" --no-build >/dev/null
check "$WORK/sys" /etc/systemd/system /usr/local/bin
DESTDIR=$WORK/user HOME=/home/alice XDG_CONFIG_HOME= ./systemd/install.sh --user --bin-dir "$BIN" --no-build >/dev/null
check "$WORK/user" /home/alice/.config/systemd/user /home/alice/.local/bin --user
# The page's user unit, in both layouts.
web() { # root unit-file bindir
    local root=$1 unit=$2 bindir=$3
    mkdir -p "$WORK/web" "$WORK/rt"
    sed "s|$bindir|$root$bindir|g" "$root$unit" > "$WORK/web/ringdrop-web.service"
    XDG_RUNTIME_DIR=$WORK/rt systemd-analyze verify --man=no --user "$WORK/web/ringdrop-web.service"
    echo "verified: $unit --user"
}
web "$WORK/sys" /etc/systemd/user/ringdrop-web.service /usr/local/bin
web "$WORK/user" /home/alice/.config/systemd/user/ringdrop-web.service /home/alice/.local/bin
echo "units: 4 passed, 0 failed"
