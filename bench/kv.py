"""KV store on real node processes: writes/s and latency per strategy, steady and during a migration.

For each strategy (SYNC with W=2 of RF=3, ASYNC, server-side), start 3 node processes on loopback
(``clusterkit node --kv-addr``), then run ``--clients`` concurrent writers (coroutines of one
smart-client process, every request pipelined on one connection per node) for ``--seconds``;
then the same while a 4th node joins and partitions migrate to it. Prints writes/s and p50/p99
latency. Numbers, not pass/fail: they depend on the machine (2 shared cores here, and an fsync
per batch on every node).

    .venv/bin/python bench/kv.py                      # all three strategies
    .venv/bin/python bench/kv.py --strategy sync --seconds 5 --clients 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from clusterkit.kv.strategies import STRATEGIES
from clusterkit.net.client import KVClient, KVError
from clusterkit.net.local import LocalCluster, http_json
from clusterkit.net.gc_policy import tune_gc

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


async def _writers(seeds: list[str], strategy: str, clients: int, seconds: float, during: callable | None = None,
                   pids: list[int] | None = None) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    async with KVClient(seeds, strategy=strategy, timeout=10.0, poll=0.5) as kv:
        stop = time.monotonic() + seconds

        async def writer(i: int) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < stop:
                n += 1
                t = time.perf_counter()
                try:
                    await kv.set(f"bench:{i}:{n % 500}", "x" * 100)
                except KVError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t)

        t0 = time.monotonic()
        nodes0, client0 = _cpu_of(pids or []), time.process_time()
        tasks = [writer(i) for i in range(clients)]
        if during is not None:
            tasks.append(asyncio.to_thread(during))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        nodes_cpu, client_cpu = _cpu_of(pids or []) - nodes0, time.process_time() - client0
    lat.sort()
    pct = (lambda q: 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    per_write = (lambda cpu: 1e6 * cpu / len(lat)) if lat else (lambda cpu: float("nan"))
    return {"writes_per_s": len(lat) / elapsed, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "errors": errors,
            "writes": len(lat), "node_cpu_us_per_write": per_write(nodes_cpu),
            "client_cpu_us_per_write": per_write(client_cpu)}


def _settled(cluster: LocalCluster, n: int) -> bool:
    status, doc = http_json(cluster.nodes["node-1"].url + "/cluster", timeout=2.0)
    if status != 200 or not doc.get("hash_config"):
        return False
    nodes = doc["cluster"]["nodes"]
    parts = doc["cluster"]["partition_map"]["partitions"].values()
    return (sum(1 for x in nodes if x["status"] == "active" and x.get("kv_addr")) == n
            and not any(p["incoming"] or p.get("outgoing") for p in parts))


def bench(strategy: str, clients: int, seconds: float, join_phase: bool = True) -> list[tuple[str, dict[str, float]]]:
    rows = []
    tmp = tempfile.mkdtemp(prefix="clusterkit-kvbench-")
    try:
        args = ["--kv-strategy", strategy, "--log-level", "WARNING"]
        with LocalCluster(Path(tmp), size=3, partition_count=64, extra_args=args, kv=True) as cluster:
            cluster.start_all()
            cluster.wait(lambda: _settled(cluster, 3), 30, "the KV store on 3 nodes")
            seeds = [n.http for n in cluster.nodes.values()]
            pids = [n.process.pid for n in cluster.nodes.values() if n.process is not None]
            rows.append(("steady", asyncio.run(_writers(seeds, strategy, clients, seconds, pids=pids))))
            if join_phase:
                def join() -> None:
                    time.sleep(seconds / 4)
                    cluster.add_node()
                    cluster.wait(lambda: _settled(cluster, 4), 60, "the migration to node-4")

                # (node CPU: the first 3 nodes only; node-4 starts during the run)
                rows.append(("node-4 joins", asyncio.run(_writers(seeds, strategy, clients, seconds, join, pids))))
                stats = [http_json(n.url + "/kv/stats")[1] for n in cluster.nodes.values() if n.alive]
                rows[-1][1]["keys_migrated"] = sum(s.get("keys_migrated", 0) for s in stats if s)
    except BaseException:
        print(f"(the nodes' logs are kept in {tmp})", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategy", choices=list(STRATEGIES), action="append")
    ap.add_argument("--clients", type=int, default=64, help="concurrent writers (default 64)")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement (default 4)")
    ap.add_argument("--no-join", action="store_true", help="steady state only (no 4th node)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # This process is a client application pushing tens of thousands of requests a second through
    # a thousand coroutines: at CPython's default (a young collection every 700 net allocations)
    # the cyclic collector took a fifth of its CPU (3 us per write). Tuned as the nodes tune theirs.
    tune_gc()
    results = {}
    print(f"KV store, 3 node processes on loopback, {args.clients} concurrent writers, 100-byte values")
    print("(CPU: microseconds of CPU per write, the 3 node processes together, then the client process)")
    print(f"{'strategy':<12} {'phase':<13} {'writes/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
          f" {'node CPU':>9} {'client CPU':>11}")
    for strategy in args.strategy or list(STRATEGIES):
        for phase, r in bench(strategy, args.clients, args.seconds, not args.no_join):
            results[f"{strategy}/{phase}"] = r
            print(f"{strategy:<12} {phase:<13} {r['writes_per_s']:>9,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                  f" {r['errors']:>7} {r['node_cpu_us_per_write']:>9.0f} {r['client_cpu_us_per_write']:>11.0f}",
                  flush=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
