#!/usr/bin/env python3
"""A ring as a swarm: 1 owner and 8 members, each in its own network
namespace behind a veth on one bridge, every node's uplink capped with
tc's tbf at the same rate R. The star (the same build, members with
re-serving off: `reserve = false`) and the swarm (re-serving on) fetch the
same content in the same run: a 128 MiB file and a 1,000-file directory of
64 MiB. R is about a third of the uncapped aggregate (the star, no caps)
divided by 9, so the 2 cores are not what limits.

Run as root through `tests/bench/run.sh` (or alone, after
`cargo build --release --bins`). Env: SWARM_MEMBERS (8), SWARM_MB (128),
SWARM_DIR_FILES (1000), SWARM_DIR_MB (64), SWARM_RATE_MB (R in MB/s
instead of the one derived), BENCH_DIR. Prints a Markdown
table (and writes $BENCH_DIR/swarm.md).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (its Daemon: run, json, stop)

RINGDROPD = bench.RINGDROPD
WORK = Path(os.environ.get("BENCH_DIR", "/var/tmp/ringdrop-bench")) / "swarm"
MEMBERS = int(os.environ.get("SWARM_MEMBERS", "8"))
SIZE = int(os.environ.get("SWARM_MB", "128")) * 1024 * 1024
DIR_FILES = int(os.environ.get("SWARM_DIR_FILES", "1000"))
DIR_SIZE = int(os.environ.get("SWARM_DIR_MB", "64")) * 1024 * 1024
MB = 1e6
PREFIX = "rdsw"
HUB = f"{PREFIX}hub"


def log(msg):
    print(f"-- {msg}", file=sys.stderr, flush=True)


def sh(*args, check=True):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check)


class Net:
    """Nodes on one bridge, 10.77.0.(i+1), each uplink capped by `cap`."""

    def __init__(self, n):
        self.n = n
        self.down()
        sh("ip", "netns", "add", HUB)
        sh("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", HUB, "link", "set", "br0", "up")
        for i in range(n):
            ns, v, h = self.ns(i), f"{PREFIX}v{i}", f"{PREFIX}h{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", v, "type", "veth", "peer", "name", h)
            sh("ip", "link", "set", v, "netns", ns)
            sh("ip", "link", "set", h, "netns", HUB)
            sh("ip", "-n", ns, "addr", "add", f"10.77.0.{i + 1}/24", "dev", v)
            sh("ip", "-n", ns, "link", "set", v, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", HUB, "link", "set", h, "master", "br0")
            sh("ip", "-n", HUB, "link", "set", h, "up")

    @staticmethod
    def ns(i):
        return f"{PREFIX}{i}"

    def cap(self, rate_bytes):
        """Caps every node's uplink at `rate_bytes` per second (None: no cap)."""
        for i in range(self.n):
            ns, v = self.ns(i), f"{PREFIX}v{i}"
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", v, "root", check=False)
            if rate_bytes:
                bits = int(rate_bytes * 8)
                sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", v, "root", "tbf",
                   "rate", f"{bits}bit", "burst", "256kb", "latency", "100ms")

    def down(self):
        for i in range(64):
            sh("ip", "netns", "del", self.ns(i), check=False)
        sh("ip", "netns", "del", HUB, check=False)


class Node(bench.Daemon):
    """A ringdropd in namespace `i` of `net`, bound to its address."""

    def __init__(self, net, i, env=None):
        self.dir = WORK / f"node{i}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.sock = self.dir / "sock"
        self.ip = f"10.77.0.{i + 1}"
        self.logf = open(self.dir / "log", "ab")
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", net.ns(i), RINGDROPD, "--data-dir", self.dir / "data",
             "--socket", self.sock, "--relay", "disabled", "--no-mdns",
             "--bind", f"{self.ip}:0", "--download-dir", self.dir / "down"],
            stdout=subprocess.DEVNULL, stderr=self.logf, env=full_env)
        for _ in range(1000):
            if self.run("status", check=False).returncode == 0:
                break
            time.sleep(0.01)
        else:
            raise SystemExit(f"ringdropd in {self.dir} did not start; see {self.dir}/log")
        self.id = self.json("status")["endpoint_id"]


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n


def make_dir(root, files, size):
    root.mkdir(parents=True, exist_ok=True)
    each = size // files
    for i in range(files):
        d = root / f"d{i % 10}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:04}.bin").write_bytes(os.urandom(each))


def run_once(net, src, reserve, members=MEMBERS):
    """A fresh owner and members fetch `src` at once: (seconds until all
    hold it, owner's bytes served)."""
    env = {"RINGDROP_RESERVE": "true" if reserve else "false"}
    owner = Node(net, 0)
    nodes = [Node(net, i + 1, env) for i in range(members)]
    try:
        owner.run("ring", "create", "team")
        for m in nodes:
            owner.run("ring", "add-member", "team", m.id)
        shared = owner.json("share", src, "--ring", "team")
        ticket, hash_ = shared["ticket"], shared["hash"]
        start = time.perf_counter()
        ids = [m.json("fetch", ticket, "--detach", "--out", m.dir / "out")["id"] for m in nodes]
        pending = dict(zip(range(len(nodes)), ids))
        while pending:
            for k, tid in list(pending.items()):
                row = nodes[k].json("transfers", "show", tid)
                if row["state"] == "completed":
                    del pending[k]
                elif row["state"] == "failed":
                    raise SystemExit(f"member {k} failed: {row}")
            time.sleep(0.1)
        secs = time.perf_counter() - start
        served = next(s["bytes_served"] for s in owner.json("shares", "ls") if s["hash"] == hash_)
        return secs, served
    finally:
        for n in [owner, *nodes]:
            n.stop()


def main():
    if os.geteuid() != 0:
        raise SystemExit("the swarm bench makes network namespaces: run it as root")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    log(f"writing {SIZE >> 20} MiB and {DIR_FILES} files of {DIR_SIZE >> 20} MiB")
    big = WORK / "src" / "big.bin"
    big.parent.mkdir(parents=True)
    write_random(big, SIZE)
    tree = WORK / "src" / "tree"
    make_dir(tree, DIR_FILES, DIR_SIZE)
    net = Net(MEMBERS + 1)
    rows = []
    try:
        log("uncapped star")
        secs, _ = run_once(net, big, reserve=False)
        aggregate = MEMBERS * SIZE / secs
        rate = aggregate / 3 / (MEMBERS + 1)
        if os.environ.get("SWARM_RATE_MB"):
            rate = float(os.environ["SWARM_RATE_MB"]) * MB
        log(f"uncapped aggregate {aggregate / MB:.1f} MB/s; cap R = {rate / MB:.2f} MB/s per uplink")
        net.cap(rate)
        for name, src, size in ((f"{SIZE >> 20} MiB file", big, SIZE), (f"{DIR_FILES} files, {DIR_SIZE >> 20} MiB", tree, DIR_SIZE)):
            log(f"star: {name}")
            star, star_served = run_once(net, src, reserve=False)
            log(f"swarm: {name}")
            swarm, swarm_served = run_once(net, src, reserve=True)
            rows.append((name, star, star_served / size, swarm, swarm_served / size))
    finally:
        net.down()
    lines = [f"Uncapped aggregate (star, {MEMBERS} members): {aggregate / MB:.1f} MB/s; "
             f"every uplink capped at R = {rate / MB:.2f} MB/s (tbf)", "",
             "| content | star: all hold it (s) | swarm: all hold it (s) | speed-up (goal >= 4x) | "
             "owner served / size, star | swarm (goal <= 2.0) |",
             "|---|---|---|---|---|---|"]
    for name, star, sserved, swarm, wserved in rows:
        lines.append(f"| {name} | {star:.1f} | {swarm:.1f} | {star / swarm:.2f}x | "
                     f"{sserved:.2f} | {wserved:.2f} |")
    text = "\n".join(lines) + "\n"
    (WORK.parent / "swarm.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
