#!/usr/bin/env python3
"""ringdrop against sendme, b3sum and iperf3, in one run, on loopback.

Run through `tests/bench/run.sh`, which builds the release binaries and
installs the references. Prints a Markdown table of figures, references
and ratios (and writes it to $BENCH_DIR/result.md).

Environment: BENCH_DIR (work dir, default /var/tmp/ringdrop-bench; the
store and the destination share its filesystem), BENCH_CROSS_DIR (a
destination on another filesystem, default /dev/shm), BENCH_SIZE_MB (1024),
BENCH_FILES (10000), BENCH_RUNS (3: share and fetch figures are medians),
BENCH_FANOUT (8), BENCH_FANOUT_MB (256); row 8 runs tests/bench/latency.py
(LAT_* knobs there). As root, the tight-space row
mounts a tmpfs of 1.05 x BENCH_SIZE_MB + 16 MiB under BENCH_DIR.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release"
RINGDROPD = BIN / "ringdropd"
CTL = BIN / "ringdropctl"
GRPC_LATENCY = BIN / "examples" / "grpc_latency"
RAW_STREAM = BIN / "examples" / "raw_stream"
WORK = Path(os.environ.get("BENCH_DIR", "/var/tmp/ringdrop-bench"))
CROSS = Path(os.environ.get("BENCH_CROSS_DIR", "/dev/shm")) / "ringdrop-bench-cross"
SIZE = int(os.environ.get("BENCH_SIZE_MB", "1024")) * 1024 * 1024
FILES = int(os.environ.get("BENCH_FILES", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FANOUT = int(os.environ.get("BENCH_FANOUT", "8"))
FANOUT_SIZE = int(os.environ.get("BENCH_FANOUT_MB", "256")) * 1024 * 1024
MB = 1e6

DAEMONS = []


def log(msg):
    print(f"-- {msg}", file=sys.stderr, flush=True)


def proc_status(pid, key):
    """A kB field of /proc/PID/status, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


class Daemon:
    """One ringdropd on loopback, relays and mDNS off, in WORK/name."""

    def __init__(self, name, base=None, extra=()):
        self.extra = list(extra)
        self.dir = (base or WORK) / name
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.sock = self.dir / "sock"
        self.start()
        DAEMONS.append(self)

    def start(self):
        self.logf = open(self.dir / "log", "ab")
        self.proc = subprocess.Popen(
            [RINGDROPD, "--data-dir", self.dir / "data", "--socket", self.sock,
             "--relay", "disabled", "--no-mdns", "--bind", "127.0.0.1:0", *self.extra],
            stdout=subprocess.DEVNULL, stderr=self.logf)
        for _ in range(500):
            if self.run("status", check=False).returncode == 0:
                return
            time.sleep(0.01)
        raise SystemExit(f"ringdropd in {self.dir} did not start; see {self.dir}/log")

    def run(self, *args, check=True):
        return subprocess.run([CTL, "--socket", self.sock, *map(str, args)],
                              capture_output=True, text=True, check=check)

    def json(self, *args):
        return json.loads(self.run("--json", *args).stdout)

    def rss(self):
        return proc_status(self.proc.pid, "VmRSS")

    def peak(self):
        return proc_status(self.proc.pid, "VmHWM")

    def reset_peak(self):
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self):
        self.stop()
        DAEMONS.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)


def table(rows):
    """Rows (measure, ours, reference, ratio, target, met) as Markdown."""
    lines = ["| measure | ringdrop | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    lines += [f"| {w} | {o} | {r} | {q} | {t} | {'yes' if ok else '**no**'} |" for w, o, r, q, t, ok in rows]
    return "\n".join(lines) + "\n"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n


def fresh_dir(path):
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def gnu_time(cmd, cwd):
    """Runs cmd under /usr/bin/time: (seconds, peak RSS bytes, stdout)."""
    rss_file = WORK / "time.out"
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *map(str, cmd)],
                       cwd=cwd, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    return secs, int(rss_file.read_text().split()[-1]) * 1024, p.stdout


# --- references ----------------------------------------------------------

class SendmeSend:
    """`sendme send PATH` until stopped; `import_secs` is the time from start
    to the printed ticket (import, including sendme's own start-up)."""

    def __init__(self, path, cwd):
        cwd = fresh_dir(cwd)
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            ["sendme", "send", str(path), "--relay", "disabled", "--no-progress"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.ticket = None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            m = re.search(r"\b(blob[a-z0-9]{40,})\b", line)
            if m:
                self.ticket = m.group(1)
                break
        self.import_secs = time.perf_counter() - t
        if not self.ticket:
            raise SystemExit("sendme send printed no ticket:\n" + "".join(seen[-20:]))
        self.cwd = cwd

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.cwd, ignore_errors=True)


def sendme_receive(ticket, cwd):
    """(seconds, peak RSS) of `sendme receive` into a fresh cwd."""
    cwd = fresh_dir(cwd)
    secs, rss, _ = gnu_time(["sendme", "receive", ticket, "--relay", "disabled",
                             "--no-progress"], cwd)
    return secs, rss


class Tmpfs:
    """A tmpfs of exactly `size` bytes at `path` (needs root)."""

    def __init__(self, path, size):
        self.path = fresh_dir(path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       check=True)

    def free(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self):
        subprocess.run(["umount", "-l", self.path], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


def tight_fetch(ticket, size):
    """Fetches into a filesystem with 1.05 x size + 16 MiB free, holding the
    fetcher's data dir and destination; then sendme the same way.
    ("completes" or the error, free bytes at the start) for each."""
    room = int(size * 1.05) + (16 << 20)
    out = {}
    fs = Tmpfs(WORK / "tight", room)
    try:
        d = Daemon("fetcher", base=fs.path)
        dest = fresh_dir(fs.path / "out")
        p = d.run("--json", "fetch", ticket, "--out", dest, check=False)
        row = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
        ok = p.returncode == 0 and row.get("state") == "completed"
        ok = ok and (dest / "big.bin").stat().st_size == size
        out["ours"] = "completes" if ok else "fails: " + (row.get("last_error") or p.stderr.strip())[:120]
        d.remove()
    finally:
        fs.close()
    fs = Tmpfs(WORK / "tight", room)
    try:
        s = SendmeSend(WORK / "big.bin", WORK / "sendme-send")
        cwd = fresh_dir(fs.path / "recv")
        p = subprocess.run(["sendme", "receive", s.ticket, "--relay", "disabled", "--no-progress"],
                           cwd=cwd, capture_output=True, text=True)
        s.stop()
        got = cwd / "big.bin"
        ok = p.returncode == 0 and got.exists() and got.stat().st_size == size
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        out["sendme"] = "completes" if ok else "fails: " + tail[:120]
    finally:
        fs.close()
    return out, room


def turn_about(*runs):
    """Runs each (fn, dir) pair of `runs` in turn, RUNS times, removing dir
    after each: per pair, (list of seconds, list of peak RSS)."""
    pairs = list(zip(runs[::2], runs[1::2]))
    out = [([], []) for _ in pairs]
    for _ in range(RUNS):
        for (fn, path), (secs, peaks) in zip(pairs, out):
            t, peak = fn()
            secs.append(t)
            peaks.append(peak)
            shutil.rmtree(path)
    return out


def b3sum_secs(path):
    secs, _, out = gnu_time(["b3sum", "--num-threads", "1", path], WORK)
    return secs


def iperf3_mbps():
    server = subprocess.Popen(["iperf3", "-s", "-p", "5299"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            p = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", "5299", "-t", "5", "-J"],
                               capture_output=True, text=True)
            # A run can end without sums (an "error" in the JSON): retry.
            if p.returncode == 0:
                received = json.loads(p.stdout).get("end", {}).get("sum_received")
                if received:
                    return received["bits_per_second"] / 8 / MB
            time.sleep(0.05)
        raise SystemExit("iperf3 did not run: " + p.stdout[-500:])
    finally:
        server.kill()
        server.wait()


# --- ringdrop ------------------------------------------------------------

def raw_stream_mbps(size):
    """One iroh stream of `size` bytes between two processes' endpoints
    bound as ringdropd binds its own (tests/examples/raw_stream.rs)."""
    dir = fresh_dir(WORK / "raw-stream")
    server = subprocess.Popen([RAW_STREAM, "serve", dir], stdout=subprocess.PIPE, text=True)
    try:
        eid, addr = server.stdout.readline().split()
        out = subprocess.run([RAW_STREAM, "send", eid, addr, str(size)], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)["mb_s"]
    finally:
        server.kill()
        server.wait()


def share(d, path):
    secs, out = timed(lambda: d.json("share", path))
    return secs, out["ticket"]


def fetch(d, ticket, out):
    secs, row = timed(lambda: d.json("fetch", ticket, "--out", out))
    if row.get("state") != "completed":
        raise SystemExit(f"fetch did not complete: {row}")
    return secs


def show(d, tid):
    return d.json("transfers", "show", tid)


def wait_state(d, tid, states=("completed",)):
    while True:
        row = show(d, tid)
        if row["state"] in states:
            return row
        if row["state"] == "failed":
            raise SystemExit(f"transfer failed: {row}")
        time.sleep(0.05)


def fetch_fresh(ticket, out, name="fetcher"):
    """A 1 GiB fetch by a new daemon: (seconds, its peak RSS)."""
    d = Daemon(name)
    fresh_dir(out)
    d.reset_peak()
    secs = fetch(d, ticket, out)
    peak = d.peak()
    d.remove()
    return secs, peak


def resume_after_kill(ticket, out, when):
    """Kills the fetcher with -9 at `when` (a fraction of the size, or
    seconds after the fetch started), restarts it and lets it finish:
    (bytes_received / size, fraction done at the kill)."""
    d = Daemon("resume")
    fresh_dir(out)
    t0 = time.perf_counter()
    tid = d.json("fetch", ticket, "--out", out, "--detach")["id"]
    while True:
        row = show(d, tid)
        if when["kind"] == "fraction" and row["bytes_done"] >= when["value"] * SIZE:
            break
        if when["kind"] == "seconds" and time.perf_counter() - t0 >= when["value"]:
            break
        time.sleep(0.005)
    d.kill9()
    done_at_kill = row["bytes_done"]
    d.start()
    row = wait_state(d, tid)
    d.remove()
    return row["bytes_received"] / row["bytes_total"], done_at_kill / SIZE


def limit_holds(ticket, limit=10_000_000, secs=10.0):
    """A fetch under `ringdropctl limits --down`: its rate over `secs` from
    its first progress (bytes/s), then the seconds from raising the limit
    to 2x until its rate over 0.2 s windows passes 1.5x the old one."""
    d = Daemon("limited")
    out = fresh_dir(WORK / "limited-out")
    d.json("limits", "--down", str(limit))
    tid = d.json("fetch", ticket, "--out", out, "--detach")["id"]
    while show(d, tid)["bytes_done"] == 0:
        time.sleep(0.01)
    t0, b0 = time.perf_counter(), show(d, tid)["bytes_done"]
    time.sleep(secs)
    t1, b1 = time.perf_counter(), show(d, tid)["bytes_done"]
    held = (b1 - b0) / (t1 - t0)
    d.json("limits", "--down", str(2 * limit))
    changed = time.perf_counter()
    last_t, last_b = changed, show(d, tid)["bytes_done"]
    while True:
        time.sleep(0.2)
        t, b = time.perf_counter(), show(d, tid)["bytes_done"]
        if (b - last_b) / (t - last_t) > 1.5 * limit or t - changed > 10:
            applied = t - changed
            break
        last_t, last_b = t, b
    d.remove()
    return held, applied


def percentile(xs, p):
    xs = sorted(xs)
    return xs[max(0, min(len(xs), int(-(-len(xs) * p // 1))) - 1)]


def ctl_latency(d, n=200):
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([CTL, "--socket", d.sock, "status"], stdout=subprocess.DEVNULL, check=True)
        ms.append((time.perf_counter() - t) * 1000)
    return percentile(ms, 0.5), percentile(ms, 0.99)


def grpc_latency(d, n=200):
    out = subprocess.run([GRPC_LATENCY, d.sock, str(n)], capture_output=True, text=True,
                         check=True).stdout
    r = json.loads(out)
    return r["p50_ms"], r["p99_ms"]


def make_tree(root, n, size=4096):
    fresh_dir(root)
    per_dir = 100
    for i in range(n):
        sub = root / f"d{i // per_dir:03}"
        if i % per_dir == 0:
            sub.mkdir()
        (sub / f"f{i:05}.bin").write_bytes(os.urandom(size))


def fs_type(path):
    return subprocess.run(["df", "--output=fstype", path], capture_output=True,
                          text=True).stdout.split()[-1]


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    sendme = subprocess.run(["sendme", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem / 2**30:.0f} GiB RAM, Linux {os.uname().release}; "
            f"store and destination on {fs_type(WORK)}, the other-filesystem destination on "
            f"{fs_type(CROSS)}; {sendme}, medians of {RUNS} runs")


# --- the run -------------------------------------------------------------

def main():
    fresh_dir(WORK)
    fresh_dir(CROSS)
    rows = []

    def row(what, ours, ref, ratio, target, ok):
        rows.append((what, ours, ref, ratio, target, ok))
        log(f"{what}: {ours} | {ref} | {ratio} | {target} | {'yes' if ok else 'NO'}")

    big = WORK / "big.bin"
    log(f"writing {SIZE >> 20} MiB of random data")
    write_random(big, SIZE)
    mib = SIZE >> 20

    # 5 (first: quiet machine) and 6 idle
    a = Daemon("provider")
    time.sleep(2)
    idle = a.rss()
    log("control latency")
    c50, c99 = ctl_latency(a)
    g50, g99 = grpc_latency(a)

    # 1. share
    log("share")
    b3 = statistics.median(b3sum_secs(big) for _ in range(RUNS))
    # Taken turn about, so that both see the same state of the machine.
    sendme_import, ours_share = [], []
    for i in range(RUNS):
        s = SendmeSend(big, WORK / "sendme-send")
        sendme_import.append(s.import_secs)
        s.stop()
        d = Daemon(f"share{i}")
        ours_share.append(share(d, big)[0])
        d.remove()
    sh, si = statistics.median(ours_share), statistics.median(sendme_import)
    row(f"1. share {mib} MiB (s)", f"{sh:.2f}", f"sendme {si:.2f}", f"{sh / si:.2f}x", "<= 1.0x", sh <= si)
    row(f"1. share {mib} MiB vs BLAKE3 (s)", f"{sh:.2f}", f"b3sum -j1 {b3:.2f}", f"{sh / b3:.2f}x",
        "<= 1.0x", sh <= b3)

    # 2. fetch, and 6. memory while providing / fetching
    log("fetch")
    _, ticket = share(a, big)
    a.reset_peak()
    s = SendmeSend(big, WORK / "sendme-send")
    # Taken turn about: ours, sendme, ours on another filesystem.
    (ours, ours_peak), (theirs, theirs_peak), (cross, _) = turn_about(
        lambda: fetch_fresh(ticket, WORK / "out"), WORK / "out",
        lambda: sendme_receive(s.ticket, WORK / "sendme-recv"), WORK / "sendme-recv",
        lambda: fetch_fresh(ticket, CROSS / "out"), CROSS / "out")
    providing_peak = a.peak()
    s.stop()
    tcp = iperf3_mbps()
    f, fx, t = (SIZE / MB / statistics.median(x) for x in (ours, cross, theirs))
    row(f"2. fetch {mib} MiB, same filesystem (MB/s)", f"{f:.0f}", f"sendme {t:.0f}", f"{f / t:.2f}x",
        ">= 1.3x", f >= 1.3 * t)
    row(f"2. fetch {mib} MiB, destination on another filesystem (MB/s)", f"{fx:.0f}",
        f"sendme {t:.0f}", f"{fx / t:.2f}x", "(reported)", True)
    row("2. fetch vs plain TCP (MB/s)", f"{f:.0f}", f"iperf3 1 stream {tcp:.0f}", f"{f / tcp:.2f}x",
        "(reported)", True)
    raw = statistics.median(raw_stream_mbps(SIZE) for _ in range(RUNS))
    row("2. fetch vs the transport's ceiling (MB/s)", f"{f:.0f}",
        f"raw iroh stream, our endpoint config {raw:.0f}", f"{f / raw:.2f}x", "(reported)", True)
    if os.geteuid() == 0:
        log("fetch into a filesystem with 1.05 x size + 16 MiB free")
        tight, room = tight_fetch(ticket, SIZE)
        row(f"2. fetch {mib} MiB, data dir and destination on one filesystem of {room / 2**20:.0f} MiB"
            " (1.05 x size + 16 MiB)", tight["ours"], f"sendme {tight['sendme']}", "", "completes",
            tight["ours"] == "completes")
    else:
        log("not root: no tmpfs for the tight-space fetch")

    # 3. 10,000 small files
    log(f"{FILES} files")
    tree = WORK / "tree"
    make_tree(tree, FILES)
    d = Daemon("tree-provider")
    tree_share, tree_ticket = share(d, tree)
    s = SendmeSend(tree, WORK / "sendme-send")
    row(f"3. share {FILES} x 4 KiB (s)", f"{tree_share:.2f}", f"sendme {s.import_secs:.2f}",
        f"{tree_share / s.import_secs:.2f}x", "(reported)", True)
    (ours_t, ours_tp), (theirs_t, theirs_tp) = turn_about(
        lambda: fetch_fresh(tree_ticket, WORK / "tree-out"), WORK / "tree-out",
        lambda: sendme_receive(s.ticket, WORK / "sendme-recv"), WORK / "sendme-recv")
    s.stop()
    d.remove()
    tree_ours, tree_theirs = statistics.median(ours_t), statistics.median(theirs_t)
    tree_peak, tree_theirs_peak = max(ours_tp), max(theirs_tp)
    row(f"3. fetch {FILES} x 4 KiB (s)", f"{tree_ours:.2f}", f"sendme {tree_theirs:.2f}",
        f"{tree_theirs / tree_ours:.2f}x speed", ">= 1.2x", tree_theirs >= 1.2 * tree_ours)
    row(f"3. peak RSS fetching {FILES} files (MB)", f"{tree_peak / MB:.1f}",
        f"sendme {tree_theirs_peak / MB:.1f}", "", "<= 60 MB", tree_peak <= 60 * MB)

    # 4. resume
    log("resume")
    rate = f * MB
    got, at = resume_after_kill(ticket, WORK / "out", {"kind": "fraction", "value": 0.5})
    row(f"4. resume, kill -9 at {at:.0%}: bytes_received / size", f"{got:.4f}", "sendme: restarts", "",
        "<= 1.01", got <= 1.01)
    got1, at1 = resume_after_kill(ticket, WORK / "out", {"kind": "seconds", "value": 0.5})
    extra = (got1 - 1) * SIZE / rate
    row(f"4. resume, kill -9 0.5 s in ({at1:.0%}): bytes_received / size", f"{got1:.4f}",
        "sendme: restarts", f"{extra:.2f} s of data resent", "<= ~1 s of data", extra <= 1.0)
    shutil.rmtree(WORK / "out", ignore_errors=True)

    # 5. control latency (measured first, on the idle daemon)
    row("5. `ringdropctl status` p50 / p99 (ms, process start included)", f"{c50:.2f} / {c99:.2f}", "", "",
        "p50 <= 5 ms", c50 <= 5)
    row("5. raw gRPC GetStatus p50 / p99 (ms)", f"{g50:.3f} / {g99:.3f}", "", "", "p50 <= 1 ms", g50 <= 1)

    # 6. memory
    fp = max(ours_peak)
    row("6. RSS idle (MB)", f"{idle / MB:.1f}", "", "", "<= 30 MB", idle <= 30 * MB)
    row(f"6. peak RSS providing {mib} MiB (MB)", f"{providing_peak / MB:.1f}", "", "", "(reported)", True)
    row(f"6. peak RSS fetching {mib} MiB (MB)", f"{fp / MB:.1f}", f"sendme {max(theirs_peak) / MB:.1f}", "",
        "<= 48 MB", fp <= 48 * MB)

    # 7. fan-out
    log("fan-out")
    fan = WORK / "fan.bin"
    write_random(fan, FANOUT_SIZE)
    _, fan_ticket = share(a, fan)
    fetchers = [Daemon(f"fan{i}") for i in range(FANOUT)]
    t0 = time.perf_counter()
    ids = [d.json("fetch", fan_ticket, "--out", fresh_dir(WORK / f"fan-out{i}"), "--detach")["id"]
           for i, d in enumerate(fetchers)]
    for d, tid in zip(fetchers, ids):
        wait_state(d, tid)
    fan_secs = time.perf_counter() - t0
    agg = FANOUT * FANOUT_SIZE / MB / fan_secs
    row(f"7. fan-out: 1 provider, {FANOUT} fetchers x {FANOUT_SIZE >> 20} MiB, aggregate (MB/s)",
        f"{agg:.0f}", "", f"{agg / f:.2f}x one fetch", "(reported)", True)
    for d in fetchers:
        d.remove()

    # 8. control latency while the daemon works
    log("control latency under load")
    lat = Daemon("latency")
    time.sleep(1)
    out = subprocess.run([sys.executable, Path(__file__).with_name("latency.py"), lat.sock, CTL,
                          WORK / "latency"], capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    i, l = r["idle"], r["load"]
    row(f"8. GetStatus every 5 ms, idle / while {r['files']} x 2 KiB import and rings churn: "
        "p50 / p99 / max (ms)",
        f"{l['p50_ms']:.2f} / {l['p99_ms']:.2f} / {l['max_ms']:.1f}",
        f"idle {i['p50_ms']:.2f} / {i['p99_ms']:.2f} / {i['max_ms']:.1f}",
        f"p99 {l['p99_ms'] / i['p99_ms']:.1f}x idle", "p99 <= 2x idle, max <= 30 ms",
        l["p99_ms"] <= 2 * i["p99_ms"] and l["max_ms"] <= 30)
    lat.remove()

    # 9. a download limit, and a change of it while the fetch runs
    log("download limit")
    held, applied = limit_holds(ticket)
    row("9. download limit 10 MB/s over 10 s (MB/s)", f"{held / MB:.2f}", "limit 10.00",
        f"{held / 10e6:.3f}x", "within 10 %", abs(held / 10e6 - 1) <= 0.10)
    row("9. limit raised to 20 MB/s: until the rate passes 15 MB/s (s)", f"{applied:.2f}", "", "",
        "<= 1 s", applied <= 1.0)

    text = f"Machine: {machine()}\n\n" + table(rows)
    (WORK / "result.md").write_text(text)
    print(text)


if __name__ == "__main__":
    try:
        main()
    finally:
        for d in list(DAEMONS):
            d.stop()
        shutil.rmtree(CROSS, ignore_errors=True)
