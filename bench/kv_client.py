"""The KV client SDK's own CPU per write, without node processes: a fake cluster answers at once.

A child process (``--serve``) plays three nodes: one ``/cluster`` document over HTTP and three KV
ports speaking the client protocol (the client hello, then msgpack frames), answering every
``Set``/``Get`` with a ``Result``, every ``Query`` with ``Found`` (nothing held) and every
``Store`` with ``Ack``: all of a frame's answers in one frame, as a node's flush sends them. No
disk, no quorum, no replication, so what is measured is the client: ``--clients`` concurrent
writers (coroutines, as in ``bench/kv.py``) call ``await kv.set(...)`` for ``--seconds``, and the
client process's CPU (``time.process_time``: the fake nodes run in another process) is divided by
the writes done. Median of ``--runs`` runs, one fake cluster each. The client process's young
collections are tuned as in ``bench/kv.py`` (``clusterkit.net.gc_policy.tune_gc``; ``--default-gc``
leaves CPython's defaults, about 1.5 µs more per write). The numbers move with the machine's load:
compare runs made one after another.

    .venv/bin/python bench/kv_client.py                       # async, 1024 writers
    .venv/bin/python bench/kv_client.py --strategy sync --clients 256 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from itertools import count
from typing import Any

from aiohttp import web
from clusterkit.net.frames import FrameReader, frame
from clusterkit.net.gc_policy import tune_gc
from clusterkit.net.client import KVClient, KVError
from clusterkit.net.kv_service import encode_frames
from clusterkit.net.kv_wire import CLIENT_HELLO, CLIENT_VERSION, KV_MAX_FRAME

from clusterkit.kv.messages import Ack, Found, Get, Message, Query, Result, Set, Store, from_frame
from clusterkit.kv.records import make_record
from clusterkit.kv.strategies import STRATEGIES

NODES = ("node-1", "node-2", "node-3")
PARTITIONS = 64


def _cluster_doc(http: str, kv_addrs: dict[str, str]) -> dict[str, Any]:
    """A settled 3-node cluster: RF 3, partition p's primary is node p % 3."""
    partitions = {}
    for p in range(PARTITIONS):
        order = [NODES[(p + i) % len(NODES)] for i in range(len(NODES))]
        partitions[f"partition-{p}"] = {"primary_node": order[0], "replica_nodes": order[1:], "incoming": [],
                                        "outgoing": [], "epoch": 1}
    nodes = [{"id": n, "http_addr": http, "kv_addr": kv_addrs[n], "status": "active"} for n in NODES]
    return {"hash_config": {"algorithm": "md5", "modulo": PARTITIONS, "format": "partition-%d", "seed": 0},
            "cluster": {"epoch": 1, "nodes": nodes, "config": {"replication_factor": 3},
                        "partition_map": {"partitions": partitions}}}


def _answer(msg: Message, versions: count[int]) -> Message | None:
    if isinstance(msg, Set):
        return Result(msg.rid, make_record(next(versions), "fake", msg.value))
    if isinstance(msg, Get):
        return Result(msg.rid, None)
    if isinstance(msg, Query):
        return Found(msg.rid, None, 0)
    if isinstance(msg, Store):
        return Ack(msg.rid)
    return None


async def _serve() -> None:
    versions = count(1)

    def kv_port(node_id: str) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            frames = FrameReader(reader, KV_MAX_FRAME)
            try:
                bodies = await frames.frames()
                assert bodies[0][0] == CLIENT_HELLO, bodies[0]
                writer.write(frame([CLIENT_HELLO, CLIENT_VERSION, node_id]))
                bodies = bodies[1:]
                while True:
                    out = [a for body in bodies for m in from_frame(body) if (a := _answer(m, versions)) is not None]
                    if out:
                        writer.writelines(encode_frames(out))
                    bodies = await frames.frames()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
        return handle

    servers = {n: await asyncio.start_server(kv_port(n), "127.0.0.1", 0) for n in NODES}
    kv_addrs = {n: f"127.0.0.1:{s.sockets[0].getsockname()[1]}" for n, s in servers.items()}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = f"127.0.0.1:{sock.getsockname()[1]}"
    body = json.dumps(_cluster_doc(http, kv_addrs)).encode()

    async def cluster(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"1"':
            return web.Response(status=304)
        return web.Response(body=body, content_type="application/json", headers={"ETag": '"1"'})

    app = web.Application()
    app.router.add_get("/cluster", cluster)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(http, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


async def _writers(seed: str, strategy: str, clients: int, seconds: float) -> tuple[int, float, int]:
    writes = errors = 0
    async with KVClient([seed], strategy=strategy, timeout=10.0, poll=0.5) as kv:
        await kv.set("warm-up", "x")  # connections open before the clock starts
        stop = time.monotonic() + seconds

        async def writer(i: int) -> None:
            nonlocal writes, errors
            n = 0
            while time.monotonic() < stop:
                n += 1
                try:
                    await kv.set(f"bench:{i}:{n % 500}", "x" * 100)
                except KVError:
                    errors += 1
                    continue
                writes += 1

        cpu0 = time.process_time()
        await asyncio.gather(*(writer(i) for i in range(clients)))
        cpu = time.process_time() - cpu0
    return writes, cpu, errors


def run(strategy: str, clients: int, seconds: float) -> dict[str, float]:
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        seed = server.stdout.readline().strip()
        writes, cpu, errors = asyncio.run(_writers(seed, strategy, clients, seconds))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
    return {"writes": writes, "errors": errors, "writes_per_s": writes / seconds,
            "client_cpu_us_per_write": 1e6 * cpu / max(writes, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategy", choices=list(STRATEGIES), default="async")
    ap.add_argument("--clients", type=int, default=1024, help="concurrent writers (default 1024)")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per run (default 2)")
    ap.add_argument("--runs", type=int, default=3, help="runs, the median reported (default 3)")
    ap.add_argument("--default-gc", action="store_true", help="leave the garbage collector at CPython's defaults")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the fake cluster's process
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    if not args.default_gc:
        tune_gc()
    per_write = []
    for _ in range(args.runs):
        r = run(args.strategy, args.clients, args.seconds)
        per_write.append(r["client_cpu_us_per_write"])
        print(f"{args.strategy:<12} {args.clients:>6} writers  {r['writes_per_s']:>9,.0f} writes/s  "
              f"{r['errors']:>4} errors  client CPU {r['client_cpu_us_per_write']:6.2f} µs/write", flush=True)
    print(f"median client CPU: {statistics.median(per_write):.2f} µs/write")


if __name__ == "__main__":
    main()
