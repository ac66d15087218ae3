#!/usr/bin/env bash
# Tests the ringdrop system service (and the user unit) under systemd as
# PID 1, the way an operator installs it: a Debian 12 container booted with
# systemd-nspawn, the repository bind-mounted read-only at /src, the README's
# "Install as a service" steps run inside, and a provider ringdropd on the
# host reached over the shared loopback. Runs as root; relays and mDNS are
# off everywhere, so the only network traffic is debootstrap's (once, when
# the rootfs cache is missing).
#
#   sudo tests/systemd/pid1.sh
#
# Environment:
#   RINGDROP_BIN_DIR       take ringdropd/ringdropctl from here (passed to
#                          install.sh as --bin-dir; default: target/release,
#                          as the README does)
#   RINGDROP_ROOTFS_CACHE  the debootstrapped rootfs, built when missing
#                          (default /var/cache/ringdrop-ci/rootfs-bookworm)
#   RINGDROP_DEBIAN_MIRROR Debian mirror for debootstrap (default: the one
#                          in /etc/apt/sources.list.d/*.sources)
#   PID1_BIG_MB            size of the file fetched across a restart (256)
#   PID1_UPLOAD_RATE       the host provider's --max-upload-rate (64M)
#   PID1_KEEP=1            keep the work directory (logs) after the run
#
# Prints progress lines "pid1: ..." and ends with "pid1: N passed, M failed";
# exits 1 when anything failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${RINGDROP_ROOTFS_CACHE:-/var/cache/ringdrop-ci/rootfs-bookworm}
BIG_MB=${PID1_BIG_MB:-256}
UPLOAD_RATE=${PID1_UPLOAD_RATE:-64M}
SMALL_MB=32
PKGS=systemd,systemd-sysv,dbus,libpam-systemd,python3,procps,iproute2,passwd,login,util-linux
STARTED=$(date +%s)

say() { echo "pid1: $*"; }
PASSED=0
FAILED=0
FAILS=()
pass() { PASSED=$((PASSED + 1)); say "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); FAILS+=("$1"); say "FAIL $*"; }
# Setup that cannot go on: counted as a failure, then the summary.
die() { fail "$*"; finish; }
now_ms() { date +%s%3N; }

finish() {
    local secs=$(($(date +%s) - STARTED))
    [ ${#FAILS[@]} -eq 0 ] || say "failed: $(printf '%s; ' "${FAILS[@]}")"
    say "run took ${secs}s"
    say "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && exit 0
    exit 1
}

[ "$(id -u)" = 0 ] || { echo "pid1: run as root (debootstrap, systemd-nspawn, nsenter)" >&2; exit 2; }
for tool in debootstrap systemd-nspawn nsenter jq sha256sum timeout flock; do
    command -v "$tool" >/dev/null || { echo "pid1: $tool not installed" >&2; exit 2; }
done

# Binaries: the host provider runs the same ones the container installs.
if [ -n "${RINGDROP_BIN_DIR:-}" ]; then
    BIN_DIR=$(cd "$RINGDROP_BIN_DIR" && pwd) || exit 2
else
    BIN_DIR=$REPO/target/release
fi
for b in ringdropd ringdropctl; do
    [ -x "$BIN_DIR/$b" ] || { echo "pid1: $BIN_DIR/$b not found (cargo build --release --bins, or set RINGDROP_BIN_DIR)" >&2; exit 2; }
done
# Where the container sees them: under /src when they are in the repo.
EXTRA_BIND=()
INSTALL_ARGS=
if [ -n "${RINGDROP_BIN_DIR:-}" ]; then
    case "$BIN_DIR/" in
        "$REPO"/*) CT_BIN_DIR=/src/${BIN_DIR#"$REPO"/} ;;
        *) CT_BIN_DIR=/opt/ringdrop-bin; EXTRA_BIND=(--bind-ro="$BIN_DIR:$CT_BIN_DIR") ;;
    esac
    INSTALL_ARGS="--bin-dir $CT_BIN_DIR"
fi

# ---------------------------------------------------------------- rootfs
mirror() {
    if [ -n "${RINGDROP_DEBIAN_MIRROR:-}" ]; then echo "$RINGDROP_DEBIAN_MIRROR"; return; fi
    local m
    m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
    [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}

build_rootfs() {
    local parent tmp m t0
    parent=$(dirname "$CACHE")
    mkdir -p "$parent"
    # One builder at a time; a second run waits and then finds the cache.
    exec 8>"$CACHE.lock"
    flock -w 1200 8 || die "timed out waiting for another run building $CACHE"
    if [ -x "$CACHE/usr/lib/systemd/systemd" ]; then exec 8>&-; return; fi
    m=$(mirror)
    # Left by a build that was killed (we hold the lock: nobody is building).
    for old in "$parent/.$(basename "$CACHE").build."*; do
        [ -e "$old" ] || continue
        umount -R "$old/root/proc" "$old/root/sys" 2>/dev/null
        rm -rf --one-file-system "$old"
    done
    tmp=$(mktemp -d "$parent/.$(basename "$CACHE").build.XXXXXX")
    say "building the Debian 12 rootfs with debootstrap from $m (2-3 minutes; log $tmp.log)"
    t0=$(date +%s)
    if ! timeout 1200 debootstrap --variant=minbase --include="$PKGS" bookworm "$tmp/root" "$m" >"$tmp.log" 2>&1; then
        tail -n 20 "$tmp.log" | sed 's/^/pid1:   /'
        rm -rf --one-file-system "$tmp" "$tmp.log"
        die "debootstrap failed"
    fi
    # Smaller copies per run (each run writes its own machine id).
    rm -f "$tmp/root"/var/cache/apt/archives/*.deb
    rm -rf "$tmp/root"/var/lib/apt/lists/*
    rm -rf "$CACHE"
    mv "$tmp/root" "$CACHE"
    rm -rf "$tmp" "$tmp.log"
    exec 8>&-
    say "rootfs cached at $CACHE ($(($(date +%s) - t0))s)"
}

if [ -x "$CACHE/usr/lib/systemd/systemd" ]; then
    say "rootfs cache: $CACHE"
else
    build_rootfs
fi

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /var/tmp/ringdrop-pid1.XXXXXX)
ROOT=$WORK/root
HOST=$WORK/host
MACHINE=ringdrop-pid1-$$
NSPAWN_PID=
CPID=
HOST_PID=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        [ -n "$CPID" ] && timeout 10 nsenter -t "$CPID" -a -r -w systemctl poweroff >/dev/null 2>&1
        for _ in $(seq 1 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            say "container did not power off; killing systemd-nspawn $NSPAWN_PID"
            kill -TERM "$NSPAWN_PID" 2>/dev/null
            for _ in $(seq 1 20); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$NSPAWN_PID" 2>/dev/null
            [ -n "$CPID" ] && kill -KILL "$CPID" 2>/dev/null
        fi
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    if [ -n "$HOST_PID" ] && kill -0 "$HOST_PID" 2>/dev/null; then
        kill -TERM "$HOST_PID" 2>/dev/null
        for _ in $(seq 1 20); do kill -0 "$HOST_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$HOST_PID" 2>/dev/null
        wait "$HOST_PID" 2>/dev/null
    fi
    if [ "${PID1_KEEP:-0}" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

T_COPY=$(date +%s)
cp -a "$CACHE" "$ROOT" || die "copying the rootfs"
# A machine id of its own (an empty one would make the boot a "first boot").
tr -d '-' </proc/sys/kernel/random/uuid >"$ROOT/etc/machine-id"
say "fresh rootfs copy in $WORK ($(($(date +%s) - T_COPY))s)"
mkdir -p "$HOST/files" "$HOST/got"

# ---------------------------------------------------------------- host provider
HOSTSOCK=$HOST/ringdropd.sock
hctl() { timeout 300 "$BIN_DIR/ringdropctl" --socket "$HOSTSOCK" "$@"; }
"$BIN_DIR/ringdropd" --data-dir "$HOST/data" --socket "$HOSTSOCK" --relay disabled --no-mdns \
    --bind 127.0.0.1:0 --max-upload-rate "$UPLOAD_RATE" >"$HOST/ringdropd.log" 2>&1 </dev/null &
HOST_PID=$!
for _ in $(seq 1 300); do
    hctl status >/dev/null 2>&1 && break
    kill -0 "$HOST_PID" 2>/dev/null || break
    sleep 0.1
done
hctl status >/dev/null 2>&1 || { tail -n 20 "$HOST/ringdropd.log"; die "host ringdropd did not start"; }
say "host provider up (upload limit $UPLOAD_RATE/s, socket $HOSTSOCK)"

dd if=/dev/urandom of="$HOST/files/small.bin" bs=1M count="$SMALL_MB" status=none
dd if=/dev/urandom of="$HOST/files/big.bin" bs=1M count="$BIG_MB" status=none
dd if=/dev/urandom of="$HOST/files/big2.bin" bs=1M count="$BIG_MB" status=none
SUM_SMALL=$(sha256sum <"$HOST/files/small.bin" | cut -d' ' -f1)
SUM_BIG=$(sha256sum <"$HOST/files/big.bin" | cut -d' ' -f1)
SUM_BIG2=$(sha256sum <"$HOST/files/big2.bin" | cut -d' ' -f1)
share_ticket() { # file -> ticket
    local out
    out=$(hctl share "$1" --json) || return 1
    jq -er .ticket <<<"$out"
}
T_SMALL=$(share_ticket "$HOST/files/small.bin") || die "host share of small.bin"
T_BIG=$(share_ticket "$HOST/files/big.bin") || die "host share of big.bin"
T_BIG2=$(share_ticket "$HOST/files/big2.bin") || die "host share of big2.bin"
say "host shares: small.bin ${SMALL_MB} MiB, big.bin ${BIG_MB} MiB"

# ---------------------------------------------------------------- boot
T_BOOT=$(date +%s)
systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --machine="$MACHINE" \
    --bind-ro="$REPO:/src" "${EXTRA_BIND[@]}" >"$WORK/nspawn.log" 2>&1 </dev/null &
NSPAWN_PID=$!
for _ in $(seq 1 100); do
    for c in $(pgrep -P "$NSPAWN_PID"); do
        # The container's PID 1: its pid in the innermost namespace is 1.
        if awk '/^NSpid:/ { exit !($NF == 1) }' "/proc/$c/status" 2>/dev/null; then CPID=$c; fi
    done
    [ -n "$CPID" ] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$CPID" ] || { tail -n 20 "$WORK/nspawn.log"; die "no PID 1 under systemd-nspawn $NSPAWN_PID"; }

CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# A command inside the container (all its namespaces, a clean environment).
ct() {
    timeout --kill-after=5 "${CT_TIMEOUT:-60}" nsenter -t "$CPID" -a -r -w \
        env -i PATH="$CT_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
as_alice() { ct runuser -u alice -- "$@"; }
# The same, its output indented under the progress lines (exit status kept).
ctq() { ct "$@" 2>&1 | sed 's/^/pid1:   /'; }
# The message of a failed ringdropctl call (its --json error or its last lines).
errmsg() { jq -er .error <<<"$1" 2>/dev/null || tail -n 3 <<<"$1" | tr '\n' ' '; }

STATE=
for _ in $(seq 1 240); do
    STATE=$(ct systemctl is-system-running 2>/dev/null)
    case "$STATE" in running | degraded) break ;; esac
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.5
done
case "$STATE" in
    running) pass "boot: systemd $(ct systemctl --version | head -n1 | cut -d' ' -f2) is PID 1, system running ($(($(date +%s) - T_BOOT))s)" ;;
    degraded)
        pass "boot: system degraded ($(($(date +%s) - T_BOOT))s); failed units: $(ct systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')" ;;
    *) tail -n 30 "$WORK/nspawn.log" | sed 's/^/pid1:   /'; die "boot: system state '${STATE:-none}' after 120s" ;;
esac

# ---------------------------------------------------------------- install (README)
# Users as they would exist on the machine already; Debian's adduser makes
# homes 0700.
for u in alice bob; do ct useradd -m -s /bin/bash "$u" && ct chmod 0700 "/home/$u" || die "useradd $u"; done
ALICE_UID=$(ct id -u alice)

say "install: cd /src && ./systemd/install.sh $INSTALL_ARGS"
if out=$(ct sh -c "cd /src && ./systemd/install.sh $INSTALL_ARGS" 2>&1); then
    pass "install.sh (system) from the read-only /src"
else
    echo "$out" | sed 's/^/pid1:   /'
    die "install.sh (system) from the read-only /src"
fi
ctq systemd-sysusers || die "systemd-sysusers"
ctq systemctl daemon-reload || die "systemctl daemon-reload"
ct getent passwd ringdrop >/dev/null || die "systemd-sysusers did not create user ringdrop"
# Offline: no relays, no mDNS (the installed file has every key commented).
ct sh -c 'printf "\n# pid1.sh: offline\nrelay = \"disabled\"\nmdns = false\n" >> /etc/ringdrop/ringdropd.toml' ||
    die "writing /etc/ringdrop/ringdropd.toml"
if out=$(ct /usr/local/bin/ringdropd --system --print-config 2>&1) &&
    grep -q '^relay = "disabled"' <<<"$out" && grep -q '^mdns = false' <<<"$out"; then
    pass "config: ringdropd --system --print-config shows relay disabled, mdns off"
else
    echo "$out" | sed 's/^/pid1:   /'
    fail "config: /etc/ringdrop/ringdropd.toml not taken (relay/mdns)"
fi

# ---------------------------------------------------------------- a: socket activation
T0=$(now_ms)
ctq systemctl enable --now ringdropd.socket || die "systemctl enable --now ringdropd.socket"
ct usermod -aG ringdrop alice || die "usermod -aG ringdrop alice"
BEFORE=$(ct systemctl is-active ringdropd.service)
if [ "$BEFORE" = inactive ]; then
    pass "a: ringdropd.service inactive before first use (socket $(ct systemctl is-active ringdropd.socket))"
else
    fail "a: ringdropd.service is '$BEFORE' before any client call (want inactive)"
fi
ALICE_STATUS_OUT=$(as_alice ringdropctl status 2>&1)
ALICE_STATUS_RC=$?
T_FIRST=$(now_ms)
FIRST_BY=alice
if [ "$ALICE_STATUS_RC" != 0 ]; then
    # Alice refused: time the first status that root gets answered instead.
    ct ringdropctl status >/dev/null 2>&1
    T_FIRST=$(now_ms)
    FIRST_BY="root (alice was refused)"
fi
AFTER=$(ct systemctl is-active ringdropd.service)
if [ "$AFTER" = active ]; then
    pass "a: first ringdropctl call started ringdropd.service; enable --now socket -> first answered status: $((T_FIRST - T0)) ms (by $FIRST_BY)"
else
    fail "a: ringdropd.service is '$AFTER' after the first client call (want active)"
fi

# ---------------------------------------------------------------- b: who may use the socket
if [ "$ALICE_STATUS_RC" = 0 ]; then
    pass "b: ringdropctl status as alice (supplementary group ringdrop)"
else
    fail "b: ringdropctl status as alice (supplementary group ringdrop) exit $ALICE_STATUS_RC: $ALICE_STATUS_OUT"
fi
BOB_OUT=$(ct runuser -u bob -- ringdropctl status 2>&1)
BOB_RC=$?
if [ "$BOB_RC" != 0 ] && grep -qiE 'not allowed|permission denied' <<<"$BOB_OUT"; then
    pass "b: non-member bob refused (exit $BOB_RC): $BOB_OUT"
else
    fail "b: non-member bob not refused as expected (exit $BOB_RC): $BOB_OUT"
fi

ct_sum() { ct sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
check_file() { # label path want-sum [owner]
    local label=$1 path=$2 want=$3 owner=${4:-} got who
    got=$(ct_sum "$path")
    if [ -z "$got" ]; then fail "$label: $path missing"; return 1; fi
    if [ "$got" != "$want" ]; then fail "$label: $path sha256 differs from the source"; return 1; fi
    if [ -n "$owner" ]; then
        who=$(ct stat -c %U "$path")
        if [ "$who" != "$owner" ]; then fail "$label: $path owned by $who, want $owner"; return 1; fi
    fi
    pass "$label: $path bytes equal${owner:+, owned by $owner}"
}

# ---------------------------------------------------------------- c: fetch into alice's home
if out=$(CT_TIMEOUT=300 as_alice sh -c "cd ~ && ringdropctl fetch '$T_SMALL' --out got.bin" 2>&1); then
    check_file "c: fetch as alice into her 0700 home" /home/alice/got.bin "$SUM_SMALL" alice
else
    fail "c: fetch as alice into her 0700 home: $(errmsg "$out")"
fi

# ---------------------------------------------------------------- d: fetch as root into the service's download dir
if out=$(CT_TIMEOUT=300 ct ringdropctl fetch "$T_SMALL" --out /var/lib/ringdrop-downloads/x.bin 2>&1); then
    check_file "d: fetch as root into /var/lib/ringdrop-downloads" /var/lib/ringdrop-downloads/x.bin "$SUM_SMALL"
else
    fail "d: fetch as root into /var/lib/ringdrop-downloads: $(errmsg "$out")"
fi
MODE=$(ct stat -c %a /var/lib/ringdrop)
if [ "$MODE" = 700 ]; then
    pass "d: the data dir /var/lib/ringdrop is 0700 (the daemon's alone)"
else
    fail "d: the data dir /var/lib/ringdrop is $MODE, want 700"
fi

# ---------------------------------------------------------------- e: restart mid-transfer
e_check() {
    local out id row bdone total state caught=
    out=$(ct ringdropctl --json fetch "$T_BIG" --out /var/lib/ringdrop-downloads/big.bin --detach 2>&1) ||
        { fail "e: detached fetch of big.bin: $out"; return; }
    id=$(jq -er .id <<<"$out") || { fail "e: no transfer id in: $out"; return; }
    for _ in $(seq 1 1200); do # 0.05 s steps, 60 s at most
        row=$(ct ringdropctl --json transfers show "$id" 2>/dev/null) || { sleep 0.05; continue; }
        bdone=$(jq -r .bytes_done <<<"$row")
        total=$(jq -r .bytes_total <<<"$row")
        state=$(jq -r .state <<<"$row")
        # A quarter in, so that a resume is told apart from a new start.
        if [ "$total" -gt 0 ] && [ "$bdone" -ge $((total / 4)) ] && [ "$bdone" -lt "$total" ]; then caught=1; break; fi
        case "$state" in completed | failed | cancelled) break ;; esac
        sleep 0.05
    done
    if [ -z "$caught" ]; then
        fail "e: never saw transfer $id mid-way (state ${state:-?}, ${bdone:-?}/${total:-?}); raise PID1_BIG_MB or lower PID1_UPLOAD_RATE"
        return
    fi
    say "e: transfer $id at $bdone/$total bytes: systemctl restart ringdropd.service"
    ct systemctl restart ringdropd.service || { fail "e: systemctl restart ringdropd.service"; return; }
    if ! out=$(CT_TIMEOUT=600 ct ringdropctl transfers wait "$id" 2>&1); then
        fail "e: transfers wait $id after the restart: $out"
        return
    fi
    row=$(ct ringdropctl --json transfers show "$id")
    local received size
    received=$(jq -r .bytes_received <<<"$row")
    size=$(jq -r .bytes_total <<<"$row")
    say "e: after the restart: bytes_received $received / size $size, attempts $(jq -r .attempts <<<"$row")"
    pass "e: transfer $id completed after systemctl restart (transfers wait exit 0)"
    # Fetched again from the start, it would have received size + bdone.
    if [ "$received" -lt $((size + bdone / 2)) ]; then
        pass "e: resumed where it stopped: received $received bytes for $size (restart at $bdone)"
    else
        fail "e: received $received bytes for $size: the $bdone bytes held at the restart came again"
    fi
    check_file "e: big.bin after the restart" /var/lib/ringdrop-downloads/big.bin "$SUM_BIG"
}
e_check

# ---------------------------------------------------------------- j: alice's client across a restart
# Alice follows her fetch into her home when the service restarts under
# it: her ringdropctl waits for the daemon, follows the resumed transfer
# and places the files itself; it exits 0 with her file in place.
j_check() {
    local log=/home/alice/j.log bdone=0 row ids id pid
    ct sh -c "runuser -u alice -- sh -c 'cd ~ && exec ringdropctl fetch \"$T_BIG2\" --out big.bin' >$log 2>&1 & echo \$! >/tmp/j.pid" ||
        { fail "j: starting alice's fetch"; return; }
    pid=$(ct cat /tmp/j.pid)
    for _ in $(seq 1 1200); do
        row=$(ct ringdropctl --json transfers ls 2>/dev/null) || { sleep 0.05; continue; }
        id=$(jq -r '[.[] | select(.dest | endswith("/home/alice/big.bin"))][0].id // empty' <<<"$row")
        if [ -n "$id" ]; then
            bdone=$(jq -r "[.[] | select(.id == $id)][0].bytes_done" <<<"$row")
            [ "$bdone" -gt $((BIG_MB * 1048576 / 4)) ] && [ "$bdone" -lt $((BIG_MB * 1048576)) ] && break
        fi
        sleep 0.05
    done
    [ -n "${id:-}" ] && [ "$bdone" -gt 0 ] || { fail "j: never saw alice's transfer running"; return; }
    say "j: alice's transfer $id at $bdone bytes: systemctl restart ringdropd.service"
    ct systemctl restart ringdropd.service || { fail "j: systemctl restart"; return; }
    for _ in $(seq 1 1200); do
        ct kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ct kill -0 "$pid" 2>/dev/null; then
        fail "j: alice's ringdropctl still running 120 s after the restart: $(ct tail -n 3 "$log" | tr '\n' ' ')"
        say "j: the transfer: $(ct ringdropctl --json transfers show "$id" 2>&1 | tr '\n' ' ')"
        ct journalctl -u ringdropd.service --no-pager -n 30 -o cat | sed 's/^/pid1:   journal: /'
        return
    fi
    if ct grep -q "Fetched" "$log"; then
        pass "j: alice's ringdropctl followed the restarted daemon and finished"
    else
        fail "j: alice's ringdropctl did not finish: $(ct tail -n 3 "$log" | tr '\n' ' ')"
        return
    fi
    check_file "j: her big.bin after the restart" /home/alice/big.bin "$SUM_BIG2" alice
}
j_check

# ---------------------------------------------------------------- k: a second operator
# Bob joins the group and tries what an operator must not do to another:
# see, cancel or collect alice's transfer, or lead a write into the data
# dir through a link planted in a directory both may write.
as_bob() { ct runuser -u bob -- "$@"; }
k_check() {
    local out id key_before key_after rows
    ct usermod -aG ringdrop bob || { fail "k: usermod -aG ringdrop bob"; return; }
    out=$(CT_TIMEOUT=120 as_alice sh -c "cd ~ && ringdropctl --json fetch '$T_SMALL' --out k.bin --detach" 2>&1) ||
        { fail "k: alice's detached fetch: $(errmsg "$out")"; return; }
    id=$(jq -er .id <<<"$out") || { fail "k: no transfer id in: $out"; return; }
    for _ in $(seq 1 600); do
        [ "$(as_alice ringdropctl --json transfers show "$id" 2>/dev/null | jq -r .state)" = ready ] && break
        sleep 0.1
    done
    rows=$(as_bob ringdropctl --json transfers ls 2>&1)
    if jq -e "[.[] | select(.id == $id)] | length == 0" <<<"$rows" >/dev/null 2>&1; then
        pass "k: bob does not see alice's transfer $id"
    else
        fail "k: bob sees alice's transfer: $rows"
    fi
    local args
    for args in "transfers show $id" "transfers cancel $id --purge" "transfers wait $id"; do
        # shellcheck disable=SC2086
        if out=$(CT_TIMEOUT=60 as_bob ringdropctl $args 2>&1); then
            fail "k: bob ran 'ringdropctl $args' on alice's transfer: $out"
        else
            pass "k: bob refused 'ringdropctl $args': $(errmsg "$out")"
        fi
    done
    if out=$(CT_TIMEOUT=120 as_alice ringdropctl transfers wait "$id" 2>&1); then
        check_file "k: alice collects her transfer after bob's attempts" /home/alice/k.bin "$SUM_SMALL" alice
    else
        fail "k: alice's transfers wait $id: $(errmsg "$out")"
    fi
    # A link planted in a directory both may write leads no write into the data dir.
    ct install -d -m 1777 /srv/drop || { fail "k: mkdir /srv/drop"; return; }
    as_bob ln -s /var/lib/ringdrop /srv/drop/evil || { fail "k: bob's ln -s"; return; }
    key_before=$(ct_sum /var/lib/ringdrop/secret.key)
    if out=$(CT_TIMEOUT=120 as_bob ringdropctl fetch "$T_SMALL" --out /srv/drop/evil/secret.key --force 2>&1); then
        fail "k: bob's fetch through /srv/drop/evil succeeded: $out"
    else
        pass "k: bob's fetch through a planted link refused: $(errmsg "$out")"
    fi
    key_after=$(ct_sum /var/lib/ringdrop/secret.key)
    if [ -n "$key_before" ] && [ "$key_before" = "$key_after" ]; then
        pass "k: the node key is unchanged"
    else
        fail "k: the node key changed (or is missing)"
    fi
    # Root collecting bob's transfer writes as bob.
    out=$(CT_TIMEOUT=120 as_bob sh -c "cd ~ && ringdropctl --json fetch '$T_SMALL' --out rootwait.bin --detach" 2>&1) ||
        { fail "k: bob's detached fetch: $(errmsg "$out")"; return; }
    id=$(jq -er .id <<<"$out") || { fail "k: no transfer id in: $out"; return; }
    if out=$(CT_TIMEOUT=120 ct ringdropctl transfers wait "$id" 2>&1); then
        check_file "k: root's transfers wait places bob's transfer as bob" /home/bob/rootwait.bin "$SUM_SMALL" bob
    else
        fail "k: root's transfers wait $id of bob's transfer: $(errmsg "$out")"
    fi
}
k_check

# ---------------------------------------------------------------- i: share from alice's 0700 home
# The service never opens an operator's path: alice's ringdropctl opens the
# file as alice and hands the descriptor over, so a file in her 0700 home
# is shared (copied into the service's store) and the host fetches it; a
# file she cannot read (the node key) is not.
i_check() {
    local out ticket want
    as_alice sh -c 'mkdir -p ~/private && chmod 0700 ~/private && head -c 1048576 /dev/urandom | base64 > ~/private/secret.txt' ||
        { fail "i: creating ~alice/private/secret.txt"; return; }
    want=$(ct_sum /home/alice/private/secret.txt)
    if out=$(CT_TIMEOUT=120 as_alice ringdropctl share /var/lib/ringdrop/secret.key --json 2>&1); then
        fail "i: alice shared the node key: $out"
    else
        pass "i: alice cannot share what she cannot read (the node key): $(errmsg "$out")"
    fi
    if ! out=$(CT_TIMEOUT=120 as_alice sh -c 'ringdropctl --socket /run/ringdrop/ringdropd.sock share "$HOME/private/secret.txt" --json' 2>&1); then
        fail "i: share from alice's 0700 home: $(errmsg "$out")"
        return
    fi
    ticket=$(jq -er .ticket <<<"$out") || { fail "i: no ticket in: $out"; return; }
    if ! out=$(hctl fetch "$ticket" --out "$HOST/got/secret.txt" 2>&1); then
        fail "i: host fetch of alice's share: $(errmsg "$out")"
        return
    fi
    if [ "$(sha256sum <"$HOST/got/secret.txt" | cut -d' ' -f1)" = "$want" ]; then
        pass "i: alice's file in her 0700 home is shared (handed over) and the host fetched it, bytes equal"
    else
        fail "i: host's copy of secret.txt differs"
    fi
}
i_check

# ---------------------------------------------------------------- security score
SEC=$(ct systemd-analyze security --no-pager ringdropd.service 2>&1 | grep -o 'Overall exposure level for ringdropd.service: [0-9.]*' | awk '{print $NF}')
if [ -z "$SEC" ]; then
    fail "systemd-analyze security ringdropd.service: no score"
elif awk -v s="$SEC" 'BEGIN { exit !(s <= 2.0) }'; then
    pass "systemd-analyze security ringdropd.service under PID 1: exposure $SEC (<= 2.0)"
else
    fail "systemd-analyze security ringdropd.service under PID 1: exposure $SEC (> 2.0)"
fi

# ---------------------------------------------------------------- f: stop
if ctq systemctl stop ringdropd.service; then
    RES=$(ct systemctl show -p Result ringdropd.service)
    if [ "$RES" = Result=success ]; then
        pass "f: systemctl stop ringdropd.service -> $RES"
    else
        fail "f: systemctl stop ringdropd.service -> $RES"
    fi
else
    fail "f: systemctl stop ringdropd.service failed"
fi

# ---------------------------------------------------------------- g: journal
ERRS=$(ct journalctl -u ringdropd.service -p err --no-pager 2>&1 | grep -v '^-- ')
LINES=$(ct journalctl -u ringdropd.service --no-pager -o cat 2>/dev/null | grep -vc '^-- ')
if [ "${LINES:-0}" -eq 0 ]; then
    fail "g: the journal has nothing from ringdropd.service (nothing to check)"
elif [ -z "$ERRS" ]; then
    pass "g: no error lines among $LINES from ringdropd.service in the journal"
else
    echo "$ERRS" | head -n 20 | sed 's/^/pid1:   /'
    fail "g: $(wc -l <<<"$ERRS") error line(s) from ringdropd.service in the journal"
fi

# Alice's user manager runs without a login (lingering); a step's failure
# if it does not come up.
alice_lingers() {
    local st
    ct loginctl enable-linger alice || { fail "$1: loginctl enable-linger alice"; return 1; }
    for _ in $(seq 1 120); do
        st=$(ct systemctl is-active "user@$ALICE_UID.service")
        [ "$st" = active ] && return 0
        sleep 0.5
    done
    fail "$1: user@$ALICE_UID.service is '$st' after enable-linger"
    return 1
}

# ---------------------------------------------------------------- w: the page as alice's user unit, against the system service
# `ringdropctl web` from the installed ringdrop-web.service (user unit,
# /etc/systemd/user) talks to the system service as alice: a fetch asked
# of the page into her 0700 home (which the service may not write) is
# placed by the page's server as alice. Bob can reach the port but not
# her token.
w_check() {
    local rt=/run/user/$ALICE_UID out
    alice_lingers w || return
    web_env() { as_alice env XDG_RUNTIME_DIR="$rt" DBUS_SESSION_BUS_ADDRESS="unix:path=$rt/bus" "$@"; }
    if ! out=$(web_env systemctl --user start ringdrop-web.service 2>&1); then
        fail "w: systemctl --user start ringdrop-web.service: $out"
        return
    fi
    for _ in $(seq 1 100); do
        ct test -s "$rt/ringdrop/web-token" && ct python3 -c "import socket; socket.create_connection(('127.0.0.1', 8399))" 2>/dev/null && break
        sleep 0.1
    done
    # The page's API as the page calls it: Origin, Host and the token.
    ct sh -c 'cat > /tmp/page_call.py' <<'PY'
import json, sys, urllib.request, urllib.error
method, request, token_file = sys.argv[1], sys.argv[2], sys.argv[3]
token = open(token_file).read().strip() if token_file != "-" else ""
req = urllib.request.Request(
    "http://127.0.0.1:8399/api/call",
    data=json.dumps({"method": method, "request": json.loads(request)}).encode(),
    headers={"Origin": "http://127.0.0.1:8399", "Content-Type": "application/json",
             "X-Ringdrop-Token": token})
try:
    print(json.dumps(json.load(urllib.request.urlopen(req, timeout=60))))
except urllib.error.HTTPError as e:
    print(json.dumps({"http": e.code, "body": e.read().decode()}))
    sys.exit(1)
PY
    ct chmod 0644 /tmp/page_call.py
    if ! out=$(CT_TIMEOUT=120 as_alice python3 /tmp/page_call.py ringdrop.v1.Transfers/Fetch \
            "{\"ticket\": \"$T_SMALL\", \"out\": \"/home/alice/web.bin\"}" "$rt/ringdrop/web-token" 2>&1); then
        fail "w: Fetch through alice's page: $out"
        web_env journalctl --user -u ringdrop-web.service --no-pager 2>&1 | tail -n 10 | sed 's/^/pid1:   /'
        return
    fi
    say "w: the page started transfer $(jq -r .transfer.id <<<"$out") (client_places $(jq -r .transfer.client_places <<<"$out"))"
    for _ in $(seq 1 600); do ct test -e /home/alice/web.bin && break; sleep 0.1; done
    check_file "w: fetch asked of alice's page, placed as alice in her 0700 home" /home/alice/web.bin "$SUM_SMALL" alice
    if ct runuser -u bob -- cat "$rt/ringdrop/web-token" >/dev/null 2>&1; then
        fail "w: bob read alice's page token"
    else
        pass "w: bob cannot read alice's page token ($rt/ringdrop/web-token)"
    fi
    out=$(ct runuser -u bob -- python3 /tmp/page_call.py ringdrop.v1.Node/GetStatus '{}' - 2>&1)
    if [ "$(jq -r .http <<<"$out" 2>/dev/null)" = 401 ]; then
        pass "w: bob's request to alice's page without her token: 401"
    else
        fail "w: bob's request to alice's page: $out"
    fi
    web_env systemctl --user stop ringdrop-web.service 2>/dev/null
}
w_check

# ---------------------------------------------------------------- h: user unit with lingering
h_check() {
    local rt=/run/user/$ALICE_UID st out
    alice_lingers h || return
    say "h: user@$ALICE_UID.service active; install.sh --user as alice from /src"
    alice_env() { as_alice env XDG_RUNTIME_DIR="$rt" DBUS_SESSION_BUS_ADDRESS="unix:path=$rt/bus" "$@"; }
    if ! out=$(alice_env sh -c "cd ~ && /src/systemd/install.sh --user $INSTALL_ARGS" 2>&1); then
        echo "$out" | sed 's/^/pid1:   /'
        fail "h: install.sh --user as alice from the read-only /src"
        return
    fi
    alice_env sh -c 'printf "\n# pid1.sh: offline\nrelay = \"disabled\"\nmdns = false\n" >> ~/.config/ringdrop/ringdropd.toml' ||
        { fail "h: writing ~/.config/ringdrop/ringdropd.toml"; return; }
    out=$(alice_env ringdropd --print-config 2>&1)
    if ! grep -q '^relay = "disabled"' <<<"$out" || ! grep -q '^mdns = false' <<<"$out"; then
        echo "$out" | sed 's/^/pid1:   /'
        fail "h: ~/.config/ringdrop/ringdropd.toml not taken (relay/mdns)"
        return
    fi
    if ! out=$(alice_env sh -c 'systemctl --user daemon-reload && systemctl --user enable --now ringdropd.socket' 2>&1); then
        fail "h: systemctl --user enable --now ringdropd.socket: $out"
        return
    fi
    if ! out=$(CT_TIMEOUT=300 alice_env sh -c "cd ~ && ringdropctl fetch '$T_SMALL' --out ~/user.bin" 2>&1); then
        fail "h: fetch through the user unit: $(errmsg "$out")"
        alice_env journalctl --user -u ringdropd.service --no-pager 2>&1 | tail -n 10 | sed 's/^/pid1:   /'
        return
    fi
    st=$(alice_env systemctl --user is-active ringdropd.service)
    if [ "$st" = active ]; then
        pass "h: user ringdropd.service started by the fetch (socket activation under user@$ALICE_UID)"
    else
        fail "h: user ringdropd.service is '$st' after the fetch (the fetch went elsewhere?)"
    fi
    check_file "h: fetch through the user unit" /home/alice/user.bin "$SUM_SMALL" alice
    alice_env systemctl --user stop ringdropd.service 2>/dev/null
    out=$(alice_env systemctl --user show -p Result ringdropd.service)
    if [ "$out" = Result=success ]; then
        pass "h: systemctl --user stop ringdropd.service -> $out"
    else
        fail "h: systemctl --user stop ringdropd.service -> $out"
    fi
    out=$(ct journalctl _SYSTEMD_USER_UNIT=ringdropd.service _UID="$ALICE_UID" -p err --no-pager 2>&1 | grep -v '^-- ')
    st=$(ct journalctl _SYSTEMD_USER_UNIT=ringdropd.service _UID="$ALICE_UID" --no-pager -o cat 2>/dev/null | grep -vc '^-- ')
    if [ "${st:-0}" -eq 0 ]; then
        fail "h: the journal has nothing from the user ringdropd.service (nothing to check)"
    elif [ -z "$out" ]; then
        pass "h: no error lines among $st from the user ringdropd.service in the journal"
    else
        echo "$out" | head -n 20 | sed 's/^/pid1:   /'
        fail "h: $(wc -l <<<"$out") error line(s) from the user ringdropd.service in the journal"
    fi
}
h_check

# ---------------------------------------------------------------- poweroff
ct systemctl poweroff >/dev/null 2>&1
for _ in $(seq 1 120); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    fail "poweroff: container still running 60s after systemctl poweroff"
else
    wait "$NSPAWN_PID"
    RC=$?
    NSPAWN_PID=
    if [ "$RC" = 0 ]; then pass "poweroff: container powered off, systemd-nspawn exit 0"; else fail "poweroff: systemd-nspawn exit $RC"; fi
fi
finish
