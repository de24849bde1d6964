"""An independent client of `ig daemon`: Python's grpcio, with stubs
generated here from our .proto by grpcio-tools (nothing of ours but the
.proto). Run by tests/kernel/daemon.rs with the venv `cargo xtask setup`
makes; prints one JSON object of what it saw, or fails with a message.

usage: daemon_client.py PROTO_DIR SOCKET MARKER_PROGRAM
"""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

proto_dir, socket, marker = sys.argv[1], sys.argv[2], sys.argv[3]

# Stubs from the .proto, into a scratch directory.
out = tempfile.mkdtemp(prefix="ig-grpc-stubs-")
from grpc_tools import protoc  # noqa: E402

rc = protoc.main(
    ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"]
)
assert rc == 0, f"protoc failed: {rc}"
sys.path.insert(0, out)
import grpc  # noqa: E402
import api_pb2  # noqa: E402
import api_pb2_grpc  # noqa: E402

result = {}
# No grpc.default_authority: grpc-core sends the socket's path (percent-
# encoded) as :authority, which the daemon must accept.
channel = grpc.insecure_channel(f"unix://{socket}")
grpc.channel_ready_future(channel).result(timeout=10)

# GetInfo.
info = api_pb2_grpc.BuiltInGadgetManagerStub(channel).GetInfo(
    api_pb2.InfoRequest(version="1.0"), timeout=10
)
result["info_version"] = info.version
result["server_version"] = info.serverVersion

# GetGadgetInfo: parameters, and a layout that fits payload 0.
manager = api_pb2_grpc.GadgetManagerStub(channel)
described = manager.GetGadgetInfo(
    api_pb2.GetGadgetInfoRequest(imageName="trace_exec", version=1), timeout=30
).gadgetInfo
result["params"] = sorted(p.prefix + p.key for p in described.params)
assert described.metadata, "no gadget.yaml in GadgetInfo.metadata"


def comm_field(ds):
    for f in ds.fields:
        if f.fullName == "proc.comm":
            return f
    raise AssertionError(f"no proc.comm in {[f.fullName for f in ds.fields]}")


def pid_field(ds):
    for f in ds.fields:
        if f.fullName == "proc.pid":
            return f
    raise AssertionError("no proc.pid")


static = 16  # FieldFlagStaticMember
for ds in described.dataSources:
    for f in ds.fields:
        if f.flags & static:
            assert f.payloadIndex == 0, f"{f.fullName}: static member in payload {f.payloadIndex}"
result["described_sources"] = [ds.name for ds in described.dataSources]
comm_field(described.dataSources[0])

# RunGadget, twice: as upstream's clients ask (one GadgetData per event,
# type 0), and with batch_events (our addition: type 256, a
# GadgetDataArray of consecutive events whose first has the message's
# seq). Requests come from a queue, so the client's side stays open until
# the test sends stop.
marker_name = os.path.basename(marker)[:15]


def run(batch):
    requests = queue.Queue()

    def request_iter():
        while True:
            r = requests.get()
            if r is None:
                return
            yield r

    requests.put(
        api_pb2.GadgetControlRequest(
            runRequest=api_pb2.GadgetRunRequest(
                imageName="trace_exec", version=1, logLevel=4, batch_events=batch
            )
        )
    )
    stream = manager.RunGadget(request_iter())
    seen = None
    layout = None
    seqs = []
    types = set()
    logs = []
    stop_sent = None
    first_type = None
    spawner_stop = threading.Event()

    def spawn_markers():
        # Exec the marker until the test has seen it (the first exec may
        # come before the programs are attached).
        while not spawner_stop.is_set():
            subprocess.run([marker], check=False)
            time.sleep(0.2)

    for ev in stream:
        if first_type is None:
            first_type = ev.type
        if ev.type == 4:
            info = api_pb2.GadgetInfo()
            info.ParseFromString(ev.payload)
            layout = {ds.id: ds for ds in info.dataSources}
            threading.Thread(target=spawn_markers, daemon=True).start()
        elif ev.type in (0, 256):
            assert layout is not None, "a data event before the GadgetInfo"
            types.add(ev.type)
            ds = layout[ev.dataSourceID]
            if ev.type == 0:
                data = api_pb2.GadgetData()
                data.ParseFromString(ev.payload)
                elements = [data.data]
            else:
                batch_msg = api_pb2.GadgetDataArray()
                batch_msg.ParseFromString(ev.payload)
                elements = list(batch_msg.dataArray)
                assert elements, "an empty batch"
            for i, element in enumerate(elements):
                seqs.append(ev.seq + i)
                payload = element.payload[0]
                f = comm_field(ds)
                comm = payload[f.offs : f.offs + f.size].split(b"\0")[0].decode()
                if comm == marker_name and seen is None:
                    p = pid_field(ds)
                    seen = {
                        "comm": comm,
                        "pid": int.from_bytes(payload[p.offs : p.offs + p.size], "little"),
                        "source": ds.name,
                    }
                    spawner_stop.set()
                    stop_sent = time.monotonic()
                    requests.put(
                        api_pb2.GadgetControlRequest(stopRequest=api_pb2.GadgetStopRequest())
                    )
        elif ev.type >> 16:
            logs.append([ev.type >> 16, ev.payload.decode(errors="replace")])
    ended = time.monotonic()
    requests.put(None)
    spawner_stop.set()

    assert seen is not None, f"the marker exec never arrived; logs: {logs}"
    return {
        "first_type": first_type,
        "seen": seen,
        "data_types": sorted(types),
        "stop_to_end_s": ended - stop_sent,
        # Consecutive: nothing was dropped, and a batch's elements follow
        # its seq.
        "seq_consecutive": seqs[0] >= 1 and all(b == a + 1 for a, b in zip(seqs, seqs[1:])),
        "logs": logs,
    }


result["single"] = run(False)
result["batched"] = run(True)
print(json.dumps(result))
