#!/usr/bin/env python3
"""Scripts ringdropd over gRPC from Python the way its users do: a stock
channel (`grpc.insecure_channel("unix:" + path)`, no options), health
(grpcio-health-checking), reflection through grpcio-reflection's descriptor
database (v1alpha, the only version it speaks), status, share, fetch with
streamed progress, list transfers. Stubs are generated from proto/ at run
time (pip install grpcio grpcio-tools grpcio-health-checking
grpcio-reflection).

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

    # Exactly what a new user writes: no options. grpc-core sends the
    # socket path as :authority, which ringdropd accepts.
    provider = grpc.insecure_channel("unix:" + provider_sock)
    fetcher = grpc.insecure_channel("unix:" + fetcher_sock)

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    health = health_pb2_grpc.HealthStub(provider).Check(
        health_pb2.HealthCheckRequest(service="ringdrop.v1.Node"))
    if health.status != health_pb2.HealthCheckResponse.SERVING:
        raise SystemExit(f"health: {health}")
    print(json.dumps({"step": "health", "status": "SERVING"}))

    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf import message_factory
    db = ProtoReflectionDescriptorDatabase(provider)
    services = list(db.get_services())
    for wanted in ("ringdrop.v1.Node", "ringdrop.v1.Transfers", "grpc.health.v1.Health"):
        if wanted not in services:
            raise SystemExit(f"reflection does not list {wanted}: {services}")
    # Call a method knowing only what reflection told us, as grpcurl does.
    pool = DescriptorPool(db)
    method = pool.FindServiceByName("ringdrop.v1.Node").FindMethodByName("GetStatus")
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    call = provider.unary_unary("/ringdrop.v1.Node/GetStatus",
                                request_serializer=req_cls.SerializeToString,
                                response_deserializer=resp_cls.FromString)
    reflected = call(req_cls())
    print(json.dumps({"step": "reflection", "services": len(services),
                      "endpoint_id": reflected.endpoint_id}))

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
