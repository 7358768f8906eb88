"""The real demo: the KV store on real node processes, a node killed and another added under load.

What the seed's ``run.sh`` promises, done for real and checked: start N node processes on loopback
(each ``clusterkit node --kv-addr``), write ``keys`` keys with the smart client, SIGKILL node-3
while reads and writes go on, start a new node, wait until the cluster has marked node-3 failed,
rebalanced and finished every migration, then check that every key reads its latest acknowledged
version and that every owner of its partition holds it, and check the whole recorded history with
the linearizability checker. Prints a summary table; the exit status says whether anything was
lost (for a strategy with a loss window, ``async``, acknowledged writes lost in it are counted and reported,
not failed on: that window is the strategy's documented trade-off).

With ``plot_dir`` (``clusterkit demo --plot DIR``) the run is also drawn as a timeline PNG: each
node's role and commit index polled from its HTTP API every 100 ms
(:class:`clusterkit.net.live.LivePoller`), node-3's SIGKILL until the cluster marks it failed,
node-6's join, and every client operation with its latency and outcome; the recorded data goes
beside it as JSON (:func:`clusterkit.net.live.load_run` reads it back).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..check.history import Event, pair_events
from ..check.linearizability import check_operations
from ..check.models import KVModel
from ..kv.records import Record, Version
from ..kv.strategies import STRATEGIES

KILL = "node-3"
PARTITIONS = 64
RECOVERY_TIMEOUT = 45.0


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"put": [], "get": []})
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "info": 0})

    def add(self, f: str, kind: str, seconds: float) -> None:
        self.counts[kind] += 1
        if kind == "ok":
            self.latencies["get" if f == "get" else "put"].append(seconds)


@dataclass
class DemoReport:
    strategy: str
    nodes: int
    keys: int
    ops: int = 0
    seconds: float = 0.0
    stats: Stats = field(default_factory=Stats)
    moved: int = 0
    optimum: int = 0
    keys_migrated: int = 0
    recover_seconds: float | None = None
    lost: list[str] = field(default_factory=list)  # keys whose latest acknowledged write is gone
    missing_copies: list[str] = field(default_factory=list)  # keys an owner lacks
    linearizable: str = "not checked"
    unknown_writes: int = 0
    plots: list[Path] = field(default_factory=list)  # with plot_dir: the timeline PNG and its data

    @property
    def ok(self) -> bool:
        if self.recover_seconds is None:
            return False
        if not STRATEGIES[self.strategy].linearizable:
            return True  # losses in the replication window are the strategy's trade-off: reported
        return not self.lost and not self.missing_copies and self.linearizable == "yes"


class History:
    """invoke/ok/fail/info events for the checker, timed on one monotonic clock."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.t0 = time.monotonic()
        self.acked: dict[str, Record] = {}  # key -> the highest-versioned acknowledged write

    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, process: int, kind: str, f: str, key: str, value: Any) -> None:
        self.events.append(Event(process, kind, f, value, key, self.now()))


async def _op(client: Any, hist: History, stats: Stats, process: int, f: str, key: str, value: str | None) -> None:
    from clusterkit.net.client import KVBadRequest, KVFailed, KVUnknown

    hist.record(process, "invoke", f, key, value)
    t = time.perf_counter()
    try:
        if f == "get":
            out: Any = await client.get(key)
            if isinstance(out, bytes):
                out = out.decode()
        else:
            record = await client.set(key, value)
            best = hist.acked.get(key)
            if best is None or record.version > best.version:
                hist.acked[key] = record
            out = value
        kind = "ok"
    except KVFailed:
        kind, out = "fail", None
    except (KVUnknown, KVBadRequest, asyncio.TimeoutError):
        kind, out = "info", None
    stats.add(f, kind, time.perf_counter() - t)
    hist.record(process, kind, f, key, out if f == "get" else value)


def _owners(doc: dict[str, Any]) -> dict[str, set[str]]:
    return {pid: {p["primary_node"], *p["replica_nodes"]} for pid, p in doc["cluster"]["partition_map"]["partitions"].items()}


def optimum_moves(before: dict[str, set[str]], after_nodes: set[str]) -> int:
    """A lower bound on the (partition, owner) pairs any balanced assignment must add: every copy a
    removed node held, and every new node's fair share (each node ends with at least total // N)."""
    total = sum(len(o) for o in before.values())
    lost = sum(1 for o in before.values() for n in o if n not in after_nodes)
    floor_share = total // max(1, len(after_nodes))
    held = {n: sum(1 for o in before.values() if n in o) for n in after_nodes}
    needed = sum(max(0, floor_share - held[n]) for n in after_nodes)
    return max(lost, needed)


def _bar(out: TextIO, label: str, done: int, total: int, final: bool = False) -> None:
    if out.isatty():
        width = 30
        filled = width * done // max(1, total)
        out.write(f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if final:
            out.write("\n")
        out.flush()
    elif final:
        out.write(f"  {label}: {done}/{total}\n")


async def _demo(cluster: Any, report: DemoReport, out: TextIO, say: Callable[[str], None], hist: History,
                live: Any = None) -> None:
    from clusterkit.net.client import KVClient
    from clusterkit.net.local import http_json

    strategy, keys = report.strategy, report.keys
    stats = report.stats
    rng = random.Random(7)

    def cluster_doc() -> dict[str, Any] | None:
        for node in cluster.nodes.values():
            if node.alive:
                status, doc = http_json(node.url + "/cluster", timeout=2.0)
                if status == 200 and doc.get("hash_config"):
                    return doc
        return None

    def settled(expect: set[str]) -> dict[str, Any] | None:
        doc = cluster_doc()
        if doc is None:
            return None
        nodes = {n["id"]: n for n in doc["cluster"]["nodes"]}
        active = {n for n, d in nodes.items() if d["status"] == "active"}
        if live is not None and nodes.get(KILL, {}).get("status") == "failed":
            live.gone(KILL)  # marked failed: the end of its kill window (once)
        parts = doc["cluster"]["partition_map"]["partitions"].values()
        if active != expect or not all(nodes[n].get("kv_addr") for n in expect):
            return None
        if any(p["incoming"] or p.get("outgoing") for p in parts):
            return None
        if any(n not in expect for o in _owners(doc).values() for n in o):
            return None
        return doc

    async def wait_settled(expect: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = await asyncio.to_thread(settled, expect)
            if doc is not None:
                return doc
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the cluster did not settle on {sorted(expect)} within {timeout:.0f} s")

    def migrated() -> int:
        total = 0
        for node in cluster.nodes.values():
            if node.alive:
                status, doc = http_json(node.url + "/kv/stats", timeout=2.0)
                if status == 200:
                    total += int(doc.get("keys_migrated", 0))
        return total

    ids = set(cluster.nodes)
    before = await wait_settled(ids, 30.0)
    seeds = [n.http for n in cluster.nodes.values()]
    async with KVClient(seeds, strategy=strategy, timeout=5.0, poll=0.5, token=cluster.token) as client:
        # ---- 1. load
        t_start = time.monotonic()
        names = [f"user:{i}" for i in range(keys)]
        done = 0
        queue = list(names)

        async def loader(w: int) -> None:
            nonlocal done
            while queue:
                key = queue.pop()
                await _op(client, hist, stats, w, "put", key, f"{key}=1")
                done += 1
                if done % 50 == 0:
                    _bar(out, "writing keys", done, keys)

        await asyncio.gather(*(loader(w) for w in range(32)))
        _bar(out, "writing keys", done, keys, final=True)
        migrated_before = await asyncio.to_thread(migrated)
        before = await asyncio.to_thread(cluster_doc) or before

        # ---- 2. kill node-3 and add a node under a mixed workload
        stop = asyncio.Event()
        serial = [1]

        async def mixer(w: int) -> None:
            while not stop.is_set():
                key = rng.choice(names)
                if rng.random() < 0.5:
                    await _op(client, hist, stats, w, "get", key, None)
                else:
                    serial[0] += 1
                    await _op(client, hist, stats, w, "put", key, f"{key}={serial[0]}")

        workers = [asyncio.get_running_loop().create_task(mixer(100 + w)) for w in range(8)]
        await asyncio.sleep(0.5)
        t_kill = time.monotonic()
        cluster.kill(KILL)
        if live is not None:
            live.fault("kill", KILL)
        say(f"SIGKILLed {KILL} with reads and writes under way")
        new = cluster.add_node()
        if live is not None:
            live.fault("join", new.node_id)
        say(f"started {new.node_id} (HTTP API {new.http}); waiting for failure detection, rebalancing and migration")
        expect = (ids - {KILL}) | {new.node_id}
        try:
            after = await wait_settled(expect, RECOVERY_TIMEOUT)
            report.recover_seconds = time.monotonic() - t_kill
            if live is not None:
                live.mark("rebalanced and copied")
        finally:
            await asyncio.sleep(0.5)  # a little more load on the settled cluster
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
        report.seconds = time.monotonic() - t_start
        b_owners, a_owners = _owners(before), _owners(after)
        report.moved = sum(len(a_owners[p] - b_owners[p]) for p in a_owners)
        report.optimum = optimum_moves(b_owners, expect)
        report.keys_migrated = max(0, await asyncio.to_thread(migrated) - migrated_before)
        say(f"recovered in {report.recover_seconds:.1f} s: {report.moved} partition copies moved")

        # ---- 3. checks: latest version readable and on every owner
        await client.refresh()

        async def check(pid: int, key: str) -> None:
            acked = hist.acked.get(key)
            hist.record(pid, "invoke", "get", key, None)
            try:
                record = await client.get_record(key)
                value = record.value if record is not None else None
                hist.record(pid, "ok", "get", key, value)
            except Exception:  # noqa: BLE001 - any failure to read counts as lost below
                hist.record(pid, "info", "get", key, None)
                record = None
            top = acked.version if acked is not None else Version(0, "")
            if acked is not None and (record is None or record.version < top):
                report.lost.append(key)
                return
            copies = await client.holders(key)
            owners = client.placement(key).owners
            if any(copies.get(n) is None or copies[n].version < top for n in owners):  # type: ignore[union-attr]
                report.missing_copies.append(key)

        for i in range(0, keys, 64):
            await asyncio.gather(*(check(10_000 + j, names[j]) for j in range(i, min(i + 64, keys))))
    if live is not None:
        live.stop()  # the run is over: no polling while the checker works
    report.ops = len(hist.events) // 2
    report.unknown_writes = stats.counts["info"]
    ops = pair_events(hist.events)
    result = check_operations(ops, KVModel(), budget_seconds=30.0, clock=time.monotonic)
    report.linearizable = "yes" if result.ok else ("NO" if result.failure is not None else "unknown")
    say(f"history of {len(ops)} operations checked: {result.explain().splitlines()[0]}")
    if result.failure is not None and STRATEGIES[report.strategy].linearizable:
        print(result.explain(), file=out)


def _pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{1000 * values[min(len(values) - 1, int(q * len(values)))]:.1f} ms"


def print_table(report: DemoReport, out: TextIO) -> None:
    s = report.stats
    ok_ops = s.counts["ok"]
    checks = report.ops - ok_ops - s.counts["fail"] - s.counts["info"]  # the final reads, in the history too
    rows = [
        ("strategy", f"{report.strategy} ({report.nodes} nodes, {PARTITIONS} partitions, RF 3)"),
        ("operations", f"{ok_ops} ok, {s.counts['fail']} failed, {s.counts['info']} unknown outcome"
                       + (f" (+ {checks} final reads)" if checks > 0 else "")),
        ("throughput", f"{ok_ops / report.seconds:,.0f} ops/s" if report.seconds else "-"),
        ("write latency", f"p50 {_pct(s.latencies['put'], 0.5)}, p99 {_pct(s.latencies['put'], 0.99)}"),
        ("read latency", f"p50 {_pct(s.latencies['get'], 0.5)}, p99 {_pct(s.latencies['get'], 0.99)}"),
        ("partitions moved", f"{report.moved} copies (optimum at least {report.optimum})"),
        ("keys migrated", f"{report.keys_migrated}"),
        ("time to recover", f"{report.recover_seconds:.1f} s (kill -> rebalanced and copied)"
         if report.recover_seconds is not None else "did not recover"),
        ("latest value on read", f"{report.keys - len(report.lost)}/{report.keys} keys"),
        ("on every owner", f"{report.keys - len(report.missing_copies)}/{report.keys} keys"),
        ("linearizable", report.linearizable),
    ]
    strategy = STRATEGIES[report.strategy]
    if strategy.loss_window:
        rows.append(("acked writes lost", f"{len(report.lost)} ({strategy.name.upper()}'s replication window;"
                                          " not a failure)"))
    width = max(len(k) for k, _ in rows)
    print("\nSummary", file=out)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)
    if report.lost and not strategy.loss_window:
        print(f"  LOST: {', '.join(report.lost[:10])}{' ...' if len(report.lost) > 10 else ''}", file=out)
    if report.missing_copies and not strategy.loss_window:
        print(f"  MISSING ON AN OWNER: {', '.join(report.missing_copies[:10])}"
              f"{' ...' if len(report.missing_copies) > 10 else ''}", file=out)
    print(f"\n{'PASS: nothing lost' if report.ok else 'FAIL'}", file=out)


def run_kv_demo(strategy: str = "sync", nodes: int = 5, keys: int = 1000, out: TextIO | None = None,
                keep: bool = False, plot_dir: str | Path | None = None, base_port: int | None = None) -> DemoReport:
    """The demo; with ``plot_dir``, the run's timeline is drawn there (see the module's docstring),
    also when the cluster did not recover (not when interrupted). ``base_port``: the nodes' ports
    (clusterkit.cli.ports), else free ones. The nodes share a secret and an API token."""
    from clusterkit.net.local import API_TOKEN_FILE, LocalCluster

    out = out if out is not None else sys.stdout
    report = DemoReport(strategy, nodes, keys)
    if plot_dir is not None:
        from clusterkit.net.live import LivePoller  # before any process starts: the plot extra is there
    root = Path(tempfile.mkdtemp(prefix="clusterkit-demo-"))

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - t0:5.1f}s] {text}", file=out, flush=True)

    t0 = time.monotonic()
    print(f"ClusterKit KV demo: {nodes} node processes on loopback, strategy {strategy}, {keys} keys", file=out)
    failed = True
    hist = History()
    live = None
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the demo like Ctrl-C: nodes are reaped
    except ValueError:  # not the main thread
        previous = None
    try:
        args = ["--kv-strategy", strategy, "--log-level", "WARNING"]
        with LocalCluster(root, size=nodes, partition_count=PARTITIONS, extra_args=args, kv=True, secure=True,
                          base_port=base_port) as cluster:
            if plot_dir is not None:
                live = LivePoller(cluster, every=0.1, timeout=0.5, clock=hist.now)
            with live.running() if live is not None else nullcontext():
                cluster.start_all(timeout=40.0)
                say(f"{nodes} nodes up; HTTP API: {', '.join(n.http for n in cluster.nodes.values())}; "
                    f"API token in {root / API_TOKEN_FILE}")
                asyncio.run(_demo(cluster, report, out, say, hist, live))
        failed = not report.ok
    except (TimeoutError, RuntimeError, OSError):
        if live is not None:  # a run that didn't recover is the one worth looking at
            try:
                _plot(live, hist, report, Path(plot_dir), out)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
                print(f"  timeline not plotted: {exc}", file=out)
            live = None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if failed or keep:
            print(f"  node logs kept in {root}", file=out)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(report, out)
    if live is not None:
        _plot(live, hist, report, Path(plot_dir), out)  # type: ignore[arg-type]
    return report


def _plot(live: Any, hist: History, report: DemoReport, plot_dir: Path, out: TextIO) -> None:
    """The timeline PNG and the data it was drawn from, into ``plot_dir``."""
    from clusterkit.plot import save
    from clusterkit.net.live import event_dicts

    history = event_dicts(hist.events)
    joined = [f["node"] for f in live.timeline.faults if f["kind"] == "join"]
    title = (f"clusterkit demo: {report.strategy}, {report.nodes} node processes, {report.keys} keys; "
             f"{KILL} SIGKILLed" + (f", {joined[0]} joined" if joined else ""))
    stem = f"kv-demo-{report.strategy}-timeline"
    started = time.monotonic()
    png = save(live.plot(history, title=title), plot_dir / f"{stem}.png")
    data = live.save_json(plot_dir / f"{stem}.json", history, title)
    report.plots = [png, data]
    print(f"\nplotted {png} ({live.rounds} polls of every node; data in {data.name}) "
          f"in {time.monotonic() - started:.1f} s", file=out)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# The seed's run.sh scripts, per example (a strategy the seed didn't have: the demo's default).
DEFAULT_NODES = {"sync": 10, "async": 10, "server-side": 6}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"
