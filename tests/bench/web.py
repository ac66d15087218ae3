#!/usr/bin/env python3
"""The page and the metrics, measured (run through tests/bench/run.sh, which
builds the release binaries and the `seed` example).

Rows:
  W1 first render of `ringdropctl web`'s page in headless Chromium with
     WEB_TRANSFERS (1000) transfers and WEB_SHARES (10000) shares: <= 1 s
  W2 `ringdropctl web` peak RSS after that render: <= 20 MB
  W3 a /metrics scrape of that daemon (median of 200): <= 5 ms
  W4 a WEB_FETCH_MB (1024) fetch with metrics on against off, medians of
     BENCH_RUNS (3) turn about (each first in turn, a sync before each),
     same run: within 5 %
Prints a Markdown table and writes it to $BENCH_DIR/web.md.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (Daemon, helpers, the same WORK and knobs)
from bench import BIN, CTL, RUNS, WORK, Daemon, fresh_dir, log, proc_status, write_random  # noqa: E402

SEED = BIN / "examples" / "seed"
PAGE = bench.ROOT / "tests" / "web" / "page.py"
SHARES = int(os.environ.get("WEB_SHARES", "10000"))
TRANSFERS = int(os.environ.get("WEB_TRANSFERS", "1000"))
FETCH = int(os.environ.get("WEB_FETCH_MB", "1024")) * 1024 * 1024


class MetricsDaemon(Daemon):
    """A daemon with metrics at a port of its own (or off)."""

    def __init__(self, name, port=None):
        self.port = port
        super().__init__(name, extra=["--metrics-listen", f"127.0.0.1:{port}"] if port else [])

    def scrape(self):
        token = (self.dir / "data" / "metrics-token").read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as r:
            return r.read()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_rows(rows):
    a = MetricsDaemon("web-a", free_port())
    b = Daemon("web-b")
    seed_dir = fresh_dir(WORK / "web-seed")
    log(f"seeding {SHARES} shares and {TRANSFERS} transfers")
    t = time.perf_counter()
    subprocess.run([SEED, a.sock, b.sock, seed_dir, str(SHARES), str(TRANSFERS)], check=True,
                   stdout=subprocess.DEVNULL)
    log(f"seeded in {time.perf_counter() - t:.0f} s")

    runtime = fresh_dir(WORK / "web-run")
    os.chmod(runtime, 0o700)
    web = subprocess.Popen([CTL, "--socket", a.sock, "--json", "web", "--listen", "127.0.0.1:0",
                            "--no-open"], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    try:
        info = json.loads(web.stdout.readline())
        token = Path(info["token_file"]).read_text().strip()
        env = {**os.environ, "RD_URL": info["url"], "RD_TOKEN": token, "RD_BENCH": "1",
               "RD_SHOTS": str(WORK / "web-shots"), "RD_PROFILE": str(fresh_dir(WORK / "web-chromium"))}
        out = subprocess.run([sys.executable, PAGE], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"page.py failed: {out.stderr}")
        render = json.loads(out.stdout.strip().splitlines()[-1])
        peak = proc_status(web.pid, "VmHWM")
    finally:
        web.terminate()
        web.wait()
    ms = render["first_render_ms"]
    shown = render["rows"]
    rows.append((f"W1. page first render, {TRANSFERS} transfers + {SHARES} shares (ms)",
                 f"{ms:.0f}", f"runs {', '.join(f'{x:.0f}' for x in render['runs_ms'])}",
                 f"rows drawn {shown[0]} + {shown[1]}", "<= 1000 ms", ms <= 1000))
    rows.append(("W2. `ringdropctl web` peak RSS (MB)", f"{peak / 1e6:.1f}", "", "", "<= 20 MB",
                 peak <= 20e6))

    a.scrape()
    times = []
    for _ in range(200):
        t = time.perf_counter()
        body = a.scrape()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    med, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    rows.append((f"W3. /metrics scrape with {TRANSFERS} transfers (ms, median / p99)",
                 f"{med:.2f} / {p99:.2f}", f"{len(body)} bytes", "", "<= 5 ms", med <= 5))
    a.remove()
    b.remove()


def throughput_rows(rows):
    src = WORK / "web-src"
    fresh_dir(src)
    write_random(src / "payload.bin", FETCH)
    provider = Daemon("web-provider")
    ticket = provider.json("share", src / "payload.bin")["ticket"]
    secs = {"on": [], "off": []}
    for i in range(RUNS):
        # Turn about, each going first in turn, and each after a sync: the
        # one before leaves its written data for the disk to take.
        for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
            d = MetricsDaemon(f"web-fetch-{mode}", free_port() if mode == "on" else None)
            out = fresh_dir(WORK / f"web-out-{mode}")
            os.sync()
            t = time.perf_counter()
            row = d.json("fetch", ticket, "--out", out)
            secs[mode].append(time.perf_counter() - t)
            if row.get("state") != "completed":
                raise SystemExit(f"fetch did not complete: {row}")
            if mode == "on":
                d.scrape()
            d.remove()
            fresh_dir(out)
    log(f"W4 seconds: on {secs['on']}, off {secs['off']}")
    on = FETCH / statistics.median(secs["on"]) / 1e6
    off = FETCH / statistics.median(secs["off"]) / 1e6
    rows.append((f"W4. fetch {FETCH >> 20} MiB with metrics on (MB/s)", f"{on:.0f}", f"off {off:.0f}",
                 f"{on / off:.3f}x", "within 5 %", on >= 0.95 * off))
    provider.remove()


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    page_rows(rows)
    throughput_rows(rows)
    text = bench.table(rows)
    (WORK / "web.md").write_text(text)
    print(text)


if __name__ == "__main__":
    try:
        main()
    finally:
        for d in list(bench.DAEMONS):
            d.stop()
