"""The wire ceiling: augserve's streams beside grpc-python's own floor for the same bytes, in one run.

The floor is a bare grpc.aio server in its own process that answers raw bytes with raw bytes (no
protobuf, no tensors, no work): an echo stream for ``Client.map`` (each batch crosses both ways) and
a server stream of ready-made messages for ``stream_dataset`` (each batch crosses once). augserve runs
a pipeline that does nothing (``hflip`` with p=0) on batches of the same bytes, so every difference is
what augserve adds on top of the transport it stands on: parsing, copies, answers, the event loop.

``python -m augserve.tools.bench.wire_ceiling PORT`` runs the bare server.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from augserve.tools.bench.harness import Engine, Wanted, server_process

CASE = "wire ceiling"
NOTHING = [{"op": "hflip", "p": 0.0}]
LARGEST = 1 << 30
_COUNT_AND_SIZE = struct.Struct("<QQ")


def _options() -> list:
    from augserve.transport import HTTP2_WINDOWS

    return [("grpc.max_receive_message_length", LARGEST), ("grpc.max_send_message_length", LARGEST), *HTTP2_WINDOWS]


async def _serve(port: int) -> None:
    import grpc

    async def echo(requests, context):
        async for raw in requests:
            yield raw

    async def repeat(raw, context):  # count and size in, that many messages of that size out
        count, size = _COUNT_AND_SIZE.unpack(raw)
        message = bytes(size)
        for _ in range(count):
            yield message

    handler = grpc.method_handlers_generic_handler("bare.Bytes", {
        "Echo": grpc.stream_stream_rpc_method_handler(echo),
        "Repeat": grpc.unary_stream_rpc_method_handler(repeat)})
    server = grpc.aio.server(options=_options())
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _bare_server() -> tuple[str, subprocess.Popen]:
    import grpc

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "augserve.tools.bench.wire_ceiling", str(port)])
    atexit.register(lambda: (process.terminate(), process.wait(timeout=30)))
    target = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=1)
            return target, process
        except grpc.FutureTimeoutError:
            if process.poll() is not None:
                break
    raise RuntimeError("bench: the bare grpc server did not start within 60 s")


def _served_arrays(x: np.ndarray, batches: int) -> str:
    """A config file serving ``batches`` batches of ``x``'s size as an arrays dataset named ``wire``."""
    folder = tempfile.mkdtemp(prefix="augserve-wire-")
    np.savez(f"{folder}/wire.npz", x=np.concatenate([x] * batches), y=np.zeros(len(x) * batches, np.int64))
    with open(f"{folder}/config.yaml", "w") as config:
        config.write(f"datasets:\n  wire: {{type: arrays, path: {folder}/wire.npz, modality: image}}\n")
    return f"{folder}/config.yaml"


def wire_ceiling_cases(x: np.ndarray, wanted: Wanted, length: int = 16, in_flight: int = 4) -> dict[str, list[Engine]]:
    """Two cases, each anchored on the bare floor: a stream both ways (``Client.map``) and a served epoch."""
    both, served = (f"{CASE}: {kind}, {x.shape[0]}x{'x'.join(map(str, x.shape[1:]))} uint8 batches"
                    for kind in ("map both ways", "served epoch one way"))
    if not wanted(both) and not wanted(served):
        return {}
    import grpc

    from augserve.client import Client

    bare_target, _ = _bare_server()
    channel = grpc.insecure_channel(bare_target, options=_options())
    echo, repeat = channel.stream_stream("/bare.Bytes/Echo"), channel.unary_stream("/bare.Bytes/Repeat")
    target, _ = server_process(["--max-batch", str(len(x)), "--max-delay-ms", "5", "--device", "cpu", "--config",
                                _served_arrays(x, length)])
    client = Client(target, timeout=600, shared_memory=False)
    payload, samples = x.tobytes(), len(x) * length
    epochs = itertools.count()  # a fresh epoch each time: nothing is served from the shared-epoch window

    def bare_echo():
        for answer in echo(iter([payload] * length)):
            del answer

    def augserve_map():
        for batch in client.map([x] * length, pipeline=NOTHING, prefetch=in_flight):
            del batch  # as a training loop does: each batch used, then let go

    def bare_repeat():
        for answer in repeat(_COUNT_AND_SIZE.pack(length, len(payload))):
            del answer

    def augserve_epoch():
        for batch in client.stream_dataset("wire", NOTHING, len(x), epoch=next(epochs)):
            del batch

    megabytes = f"{len(payload) / 1e6:.1f} MB per batch"
    cases: dict[str, list[Engine]] = {}
    if wanted(both):
        cases[both] = [Engine("bare grpc-python echo stream", bare_echo,
                              f"raw bytes both ways, {length} batches, {megabytes}", samples),
                       Engine("Client.map, gRPC bytes", augserve_map,
                              f"AugmentStream, {in_flight} in flight, hflip p=0", samples)]
    if wanted(served):
        cases[served] = [Engine("bare grpc-python server stream", bare_repeat,
                                f"ready-made bytes one way, {length} messages, {megabytes}", samples),
                         Engine("stream_dataset, gRPC bytes", augserve_epoch,
                                "StreamDataset of an arrays dataset, hflip p=0, a new epoch each time", samples)]
    return cases


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
