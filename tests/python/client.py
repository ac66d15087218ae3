#!/usr/bin/env python3
"""Scripts ringdropd over gRPC from Python: status, share, fetch with
streamed progress, list transfers. Stubs are generated from proto/ at run
time (pip install grpcio grpcio-tools).

usage: client.py PROVIDER_SOCKET FETCHER_SOCKET FILE OUT_DIR
Shares FILE on the provider, fetches it on the fetcher into OUT_DIR and
prints one JSON line per step; exits non-zero on any failure.
"""
import json
import os
import sys
import tempfile

from grpc_tools import protoc
import grpc

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROTO = os.path.join(ROOT, "proto")


def load_stubs():
    out = tempfile.mkdtemp(prefix="ringdrop-stubs-")
    files = [os.path.join("ringdrop", "v1", f)
             for f in sorted(os.listdir(os.path.join(PROTO, "ringdrop", "v1")))
             if f.endswith(".proto")]
    rc = protoc.main(["protoc", f"-I{PROTO}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *files])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")
    sys.path.insert(0, out)


def main():
    provider_sock, fetcher_sock, path, out_dir = sys.argv[1:5]
    load_stubs()
    from ringdrop.v1 import node_pb2, node_pb2_grpc
    from ringdrop.v1 import shares_pb2, shares_pb2_grpc
    from ringdrop.v1 import transfers_pb2, transfers_pb2_grpc

    # grpc-python sends the socket path as :authority, which HTTP/2 servers
    # reject; any plain name will do.
    opts = [("grpc.default_authority", "localhost")]
    provider = grpc.insecure_channel("unix://" + provider_sock, options=opts)
    fetcher = grpc.insecure_channel("unix://" + fetcher_sock, options=opts)

    status = node_pb2_grpc.NodeStub(provider).GetStatus(node_pb2.GetStatusRequest())
    print(json.dumps({"step": "status", "endpoint_id": status.endpoint_id, "version": status.version}))

    ticket = None
    for msg in shares_pb2_grpc.SharesStub(provider).Share(
            shares_pb2.ShareRequest(path=os.path.abspath(path))):
        if msg.HasField("created"):
            ticket = msg.created.ticket
            print(json.dumps({"step": "share", "hash": msg.created.share.hash}))
    if not ticket:
        raise SystemExit("share returned no ticket")

    transfers = transfers_pb2_grpc.TransfersStub(fetcher)
    started = transfers.Fetch(transfers_pb2.FetchRequest(ticket=ticket, out=os.path.abspath(out_dir)))
    tid = started.transfer.id
    last = None
    for update in transfers.WatchTransfer(transfers_pb2.WatchTransferRequest(id=tid)):
        last = update
        print(json.dumps({"step": "progress", "id": tid,
                          "state": transfers_pb2.TransferState.Name(update.state),
                          "done": update.bytes_done, "total": update.bytes_total}))
    if last is None or last.state != transfers_pb2.TRANSFER_STATE_COMPLETED:
        raise SystemExit(f"transfer did not complete: {last}")

    listed = transfers.ListTransfers(transfers_pb2.ListTransfersRequest()).transfers
    print(json.dumps({"step": "list", "ids": [t.id for t in listed]}))
    if tid not in [t.id for t in listed]:
        raise SystemExit("transfer missing from the list")
    print(json.dumps({"step": "done", "files": list(last.files)}))


if __name__ == "__main__":
    main()
