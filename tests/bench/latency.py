#!/usr/bin/env python3
"""How fast the control socket answers while the daemon works.

One stock grpcio channel asks `Node/GetStatus` every 5 ms: first for
IDLE_S seconds on an idle daemon, then for LOAD_S seconds while
`ringdropctl share` imports a tree of FILES files of 2 KiB and a second
client (its own process) creates and removes rings in a loop. Prints one JSON object:
p50, p99 and max (ms) of both phases.

usage: latency.py SOCKET CTL WORK_DIR   (pip install grpcio grpcio-tools)
Environment: LAT_FILES (20000), LAT_IDLE_S (5), LAT_LOAD_S (8); LAT_NO_SHARE,
LAT_NO_RINGS leave out one load; LAT_TRACE prints each answer over 1.5 ms.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import multiprocessing
import time
from pathlib import Path

import grpc
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
FILES = int(os.environ.get("LAT_FILES", "20000"))
IDLE_S = float(os.environ.get("LAT_IDLE_S", "5"))
LOAD_S = float(os.environ.get("LAT_LOAD_S", "8"))
EVERY_S = 0.005


def load_stubs():
    """Generates the Python stubs from proto/; their directory."""
    out = tempfile.mkdtemp(prefix="ringdrop-stubs-")
    proto = ROOT / "proto"
    files = sorted(str(p.relative_to(proto)) for p in (proto / "ringdrop" / "v1").glob("*.proto"))
    if protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}",
                    *files]) != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out)
    return out


def make_tree(root, n, size=2048):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = root / f"d{i // 100:03}"
        if i % 100 == 0:
            sub.mkdir(exist_ok=True)
        (sub / f"f{i:05}.bin").write_bytes(os.urandom(size))


def probe(sock, seconds):
    """GetStatus every EVERY_S for `seconds`; the latencies in ms."""
    from ringdrop.v1 import node_pb2, node_pb2_grpc
    with grpc.insecure_channel(f"unix:{sock}") as ch:
        node = node_pb2_grpc.NodeStub(ch)
        node.GetStatus(node_pb2.GetStatusRequest())  # connected before timing
        lat, end, start = [], time.monotonic() + seconds, time.perf_counter()
        while time.monotonic() < end:
            t0 = time.perf_counter()
            node.GetStatus(node_pb2.GetStatusRequest())
            lat.append((time.perf_counter() - t0) * 1000)
            if os.environ.get("LAT_TRACE") and lat[-1] > 1.5:
                print(f"slow at {t0 - start:.2f}s: {lat[-1]:.2f} ms", file=sys.stderr)
            time.sleep(max(0.0, EVERY_S - (time.perf_counter() - t0)))
    return lat


def churn_rings(sock, stubs, stop, counts):
    """Creates and removes rings until `stop` (its own process: a thread
    would hold the probe's interpreter lock)."""
    sys.path.insert(0, stubs)
    from ringdrop.v1 import rings_pb2, rings_pb2_grpc
    with grpc.insecure_channel(f"unix:{sock}") as ch:
        rings = rings_pb2_grpc.RingsStub(ch)
        i = 0
        while not stop.is_set():
            name = f"churn-{i % 8}"
            rings.CreateRing(rings_pb2.CreateRingRequest(name=name))
            rings.RemoveRing(rings_pb2.RemoveRingRequest(name=name))
            counts.value += 1
            i += 1


def summary(lat):
    lat = sorted(lat)
    return {"n": len(lat), "p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 3), "max_ms": round(lat[-1], 3)}


def main():
    sock, ctl, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    stubs = load_stubs()
    tree = work / "latency-tree"
    make_tree(tree, FILES)
    idle = probe(sock, IDLE_S)

    stop, counts = multiprocessing.Event(), multiprocessing.Value("q", 0)
    churn = multiprocessing.Process(target=churn_rings, args=(sock, stubs, stop, counts))
    if not os.environ.get("LAT_NO_RINGS"):
        churn.start()
    t0 = time.monotonic()
    share_cmd = [ctl, "--socket", sock, "--json", "share", str(tree)]
    if os.environ.get("LAT_NO_SHARE"):
        share_cmd = ["true"]
    share = subprocess.Popen(share_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    loaded = probe(sock, LOAD_S)
    share_running = share.poll() is None
    out, err = share.communicate()
    share_s = time.monotonic() - t0
    stop.set()
    if churn.is_alive():
        churn.join()
    if share.returncode != 0:
        raise SystemExit(f"share failed: {err.strip()}")
    print(json.dumps({"idle": summary(idle), "load": summary(loaded), "files": FILES,
                      "share_s": round(share_s, 2), "share_outlasted_probe": share_running,
                      "ring_cycles": counts.value}))


if __name__ == "__main__":
    main()
