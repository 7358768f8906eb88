"""Real Raft nodes on loopback: ClusterKit's ``clusterkit node`` processes against PySyncObj.

ClusterKit: 3 ``python -m clusterkit node`` processes (net/local.py's LocalCluster), each with
its durable log on disk (fdatasync once per Ready batch: fsync on, the default), the register
map behind ``PUT /registers/{key}``. Measured from this process over HTTP/1.1 with aiohttp
client sessions (keep-alive):

1. committed writes/s: C concurrent clients, each sending ``PUT /registers/k<client>`` with
   ``{"value": "<n>"}`` to the leader, back to back, for ``--seconds``; a write counts once the
   node answered 200 (applied on the leader after a majority, leader included, fsynced it);
2. sequential write latency: one client, one write at a time, to the leader: p50 and p99;
3. failover: SIGKILL the leader, then fire a PUT every 25 ms at the remaining nodes in turn
   (a follower forwards it to whichever leader it knows); the time from the kill to the first
   200 is the failover time: a new leader elected *and* a write committed through it. The node
   is restarted from its disk between trials.

PySyncObj (from PyPI): 3 processes, each a ``SyncObj`` with a ``pysyncobj.batteries.ReplDict``
and the same HTTP front, on aiohttp too: ``PUT /registers/{key}`` with the same JSON body calls
``ReplDict.set(key, value, callback=...)`` and answers 200 once the callback reports success
(the entry committed by a majority and applied on that node). The clients send every write to
the leader (found through ``GET /status``), as for ClusterKit, so neither pays a forwarding hop.
PySyncObj runs twice: with its defaults (``appendEntriesUseBatch=True``: a new entry waits for
the next append period, 0.1 s), and with ``appendEntriesUseBatch=False`` (entries go out at
once), its lower-latency setting; the ratios are taken against the better of the two at each
concurrency. PySyncObj keeps its log in memory by default and, even with a journal file, never
fsyncs it (the journal is an mmap): it does strictly less work per write than ClusterKit here.
So ClusterKit also runs a second time with its data directories on /dev/shm (tmpfs), where
fdatasync costs next to nothing: the same comparison with the disk taken out (``--no-tmpfs``
skips it). The issue's targets are checked against the ClusterKit run on disk.

All the systems run at once and take turns: each measurement is cut into ``--rounds`` slices and
the systems write in rotating order, slice by slice, so a drift in the machine's load (other work
shares these cores) hits them alike; the spread of the slices is printed. Idle, a 3-node system
costs 1 to 2 % of a core. The failovers run last, with the other systems stopped. Afterwards
every node of every system is read back: the same registers everywhere? The disk's fdatasync
floor (the data directories' file system) is sampled each round, the load average at both ends.

Everything shares the machine's cores: the client, the servers, and whatever else is running.
Every process this starts is reaped on the way out, on an error, Ctrl-C or SIGTERM too (the
PySyncObj processes also die with this one if it is SIGKILLed: PR_SET_PDEATHSIG).

That is the HTTP mode: what a remote client sees, HTTP and the client's own CPU included (about
0.1 s of this process's CPU per 1,000 writes, on the same 2 cores). The IN-PROCESS mode (the
issue's "client on the leader in both", taken literally) then puts the load generator inside the
leader's own process, for both systems, proposing directly, with no HTTP and no client process:

- ClusterKit: node-1 runs in a driver process (``NodeService``, the same node as ``clusterkit
  node``: fsync on, its HTTP API up only so the others can join), node-2 and node-3 are
  ``clusterkit node`` processes joining it; C coroutines in the driver each propose a register
  write (``put_command``) through ``NetNode.propose`` and await its commit (applied on the leader
  after a majority fsynced it), back to back: up to C writes in flight;
- PySyncObj: replica 1 runs in a driver process, a ``SyncObj`` with a ``ReplDict``, the 2 others
  are the processes above (with election timeouts of 2-3 s against its default 0.4-1.4 s, so the
  driver's replica is the one elected, which the driver checks before every slice); C writes are
  kept in flight with PySyncObj's callback API (``ReplDict.set(key, value, callback=)``; each
  successful callback issues that writer's next write). Batched (its defaults) and unbatched.

Each system's leader is its own driver process, so the two never share an interpreter while one
measures; the bench asks a driver over its stdin/stdout. A write counts if its commit is reported
inside the measured window (fixed windows of ``--seconds / --rounds``, after 0.3 s of warm-up);
the systems take turns as above. ClusterKit fsyncs; PySyncObj keeps its log in memory (no fsync).

    .venv/bin/python bench/net_raft.py [--mode both|http|inproc] [--seconds 3] [--rounds 3]
        [--concurrency 1,16,64] [--inproc-concurrency 1,16,64,256] [--failovers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from clusterkit.net.local import LocalCluster, free_port, http_json  # noqa: E402

TARGETS = {"throughput_ratio": 3.0, "p50_ms": 2.0, "failover_s": 1.5}


# ---------------------------------------------------------------- measurements
@dataclass
class Throughput:
    concurrency: int
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # server CPU seconds, all nodes together
    client_cpu: float = 0.0  # this process's CPU seconds: the HTTP clients
    slices: list[float] = field(default_factory=list)  # writes/s of each slice: the spread

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1k(self) -> float | None:
        return 1000 * self.cpu / self.ok if self.ok else None

    @property
    def client_cpu_per_1k(self) -> float | None:
        return 1000 * self.client_cpu / self.ok if self.ok else None

    def add(self, other: Throughput) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.client_cpu += other.client_cpu
        self.slices.append(other.rate)


@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)  # seconds
    errors: int = 0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")

    def pct(self, q: float) -> float:
        s = sorted(self.samples)
        if not s:
            return float("nan")
        return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


@dataclass
class SystemResult:
    name: str
    throughput: dict[int, Throughput] = field(default_factory=dict)
    latency: Latency | None = None
    failovers: list[float] = field(default_factory=list)
    failover_errors: list[str] = field(default_factory=list)
    agree: str = "-"  # after the run: do all nodes hold the same registers?


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far, from /proc (0 where unreadable)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


async def _put(session: aiohttp.ClientSession, base: str, key: str, value: str, timeout: float = 10.0) -> int:
    try:
        async with session.put(f"{base}/registers/{key}", json={"value": value},
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return 0


async def throughput(base: str, concurrency: int, seconds: float, pids: list[int]) -> Throughput:
    """``concurrency`` clients writing back to back to ``base`` for ``seconds`` (after a short warm-up)."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        ok = errors = 0
        measuring = False
        stop_at = 0.0

        async def client(i: int) -> None:
            nonlocal ok, errors
            n = 0
            while True:
                n += 1
                status = await _put(session, base, f"k{i}", str(n))
                now = time.perf_counter()
                if now >= stop_at and measuring:
                    return
                if measuring:
                    if status == 200:
                        ok += 1
                    else:
                        errors += 1

        loop_start = time.perf_counter()
        stop_at = loop_start + 1e9
        tasks = [asyncio.create_task(client(i)) for i in range(concurrency)]
        await asyncio.sleep(0.3)  # warm-up: connections open, the pipeline full
        cpu0 = cpu_seconds(pids)
        client0 = time.process_time()
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        measuring = True
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - cpu0
        client_cpu = time.process_time() - client0
    return Throughput(concurrency, ok, errors, elapsed, cpu, client_cpu)


async def sequential_latency(base: str, writes: int, max_seconds: float) -> Latency:
    lat = Latency()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(5):  # warm-up: the connection open
            await _put(session, base, "seq", f"w{i}")
        deadline = time.perf_counter() + max_seconds
        for i in range(writes):
            t0 = time.perf_counter()
            status = await _put(session, base, "seq", str(i))
            dt = time.perf_counter() - t0
            if status == 200:
                lat.samples.append(dt)
            else:
                lat.errors += 1
            if time.perf_counter() > deadline:
                break
    return lat


async def first_commit_after(bases: list[str], t_kill: float, limit: float) -> tuple[float, str] | None:
    """Fire a PUT every 25 ms at ``bases`` in turn; the time from ``t_kill`` to the first 200 and where."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        done: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        tasks: list[asyncio.Task[None]] = []

        async def one(base: str, n: int) -> None:
            status = await _put(session, base, "failover", str(n), timeout=5.0)
            if status == 200 and not done.done():
                done.set_result((time.perf_counter() - t_kill, base))

        n = 0
        try:
            while time.perf_counter() - t_kill < limit and not done.done():
                tasks.append(asyncio.create_task(one(bases[n % len(bases)], n)))
                n += 1
                try:
                    return await asyncio.wait_for(asyncio.shield(done), 0.025)
                except asyncio.TimeoutError:
                    pass
            return done.result() if done.done() else None
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def fdatasync_floor(directory: Path, n: int = 50) -> float:
    """p50 seconds of one 100-byte append + fdatasync in ``directory``: the disk's floor under every commit."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 100)
            getattr(os, "fdatasync", os.fsync)(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


# ---------------------------------------------------------------- the systems, side by side
@dataclass
class Target:
    """One running 3-node system the clients write to."""

    result: SystemResult
    find_leader: Callable[[], str]  # the leader's base URL (looked up again before every slice)
    pids: list[int]
    term: Callable[[], int | None]  # the leader's term now: more than one election shows as a jump
    agree: Callable[[], str]
    terms: list[int | None] = field(default_factory=list)


def clusterkit_target(name: str, c: LocalCluster) -> Target:
    c.start_all(timeout=60)

    def find_leader() -> str:
        c.wait(lambda: c.leader() is not None, 30, "a leader")
        return c.nodes[c.leader()].url  # type: ignore[index]

    def term() -> int | None:
        lead = c.leader()
        return c.get(lead, "/consensus/leader")[1]["term"] if lead else None

    return Target(SystemResult(name), find_leader, [n.process.pid for n in c.nodes.values() if n.process], term,
                  lambda: "-")


def clusterkit_agree(c: LocalCluster, keys: list[str]) -> str:
    """Read every written key on every node (linearizable reads): the same values everywhere?"""
    seen: dict[str, list[Any]] = {}
    for node in c.nodes.values():
        for key in keys:
            status, doc = http_json(f"{node.url}/registers/{key}", timeout=10.0)
            seen.setdefault(key, []).append(doc.get("value") if status == 200 and doc else f"<{status}>")
    differ = [k for k, values in seen.items() if len(set(map(str, values))) != 1]
    return f"yes ({len(keys)} keys)" if not differ else f"NO: {differ[:5]} differ"


def failovers(c: LocalCluster, result: SystemResult, trials: int) -> None:
    """SIGKILL the leader; time until a write commits through the others; restart it from disk."""
    for trial in range(trials):
        c.wait(lambda: c.leader() is not None, 30, "a leader before the failover trial")
        leader = c.leader()
        assert leader is not None
        others = [c.nodes[n].url for n in c.nodes if n != leader]
        t_kill = time.perf_counter()
        c.kill(leader)
        got = asyncio.run(first_commit_after(others, t_kill, limit=20.0))
        if got is None:
            result.failover_errors.append(f"trial {trial + 1}: no write committed within 20 s of killing {leader}")
        else:
            result.failovers.append(got[0])
            _progress(f"{result.name}: failover {trial + 1}: {got[0]:.2f} s (killed {leader})")
        c.start(leader)  # from its disk, for the next trial
        c.wait(lambda: c.leader() is not None and c.active_members() == set(c.nodes), 60,
               "the killed node back and a leader")


# ---------------------------------------------------------------- PySyncObj
PSO_NODE = "_pysyncobj_node"


def _die_with_parent() -> None:
    """This process dies with the benchmark, even if it is SIGKILLed (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def pysyncobj_node(self_addr: str, partners: list[str], http_port: int, batch: bool,
                   slow_election: bool = False) -> None:
    """One PySyncObj process: a SyncObj with a ReplDict behind ``PUT /registers/{key}`` (aiohttp).
    ``slow_election``: election timeouts of 2 to 3 s instead of 0.4 to 1.4 s, so that the in-process
    replica (defaults) is the one elected (see :func:`pysyncobj_driver`)."""
    _die_with_parent()
    import hashlib

    from aiohttp import web
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
    from pysyncobj.batteries import ReplDict

    data = ReplDict()
    timeouts = {"raftMinTimeout": 2.0, "raftMaxTimeout": 3.0} if slow_election else {}
    conf = SyncObjConf(appendEntriesUseBatch=batch, **timeouts)
    sync = SyncObj(self_addr, partners, conf=conf, consumers=[data])

    async def put(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        value = doc.get("value") if isinstance(doc, dict) else None
        if type(value) is not str:
            return web.json_response({"error": "value must be a string"}, status=400)
        key = request.match_info["key"]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def done(res: Any, err: Any) -> None:  # on PySyncObj's tick thread
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(err))

        data.set(key, value, callback=done)
        try:
            err = await asyncio.wait_for(fut, 5.0)
        except asyncio.TimeoutError:
            return web.json_response({"error": "not committed in time"}, status=504)
        if err != FAIL_REASON.SUCCESS:
            return web.json_response({"error": f"failed: {err}"}, status=503)
        return web.Response(text=json.dumps({"ok": True, "key": key, "value": value}),
                            content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        leader = sync._getLeader()
        return web.json_response({"leader": str(leader) if leader is not None else None,
                                  "is_leader": sync._isLeader(), "ready": sync.isReady(),
                                  "term": sync.raftCurrentTerm})

    async def digest(request: web.Request) -> web.Response:
        items = json.dumps(sorted(dict(data.rawData()).items()), sort_keys=True).encode()
        return web.json_response({"applied": sync.raftLastApplied, "commit": sync.raftCommitIndex,
                                  "digest": hashlib.sha256(items).hexdigest(), "keys": len(data)})

    app = web.Application()
    app.router.add_put("/registers/{key}", put)
    app.router.add_get("/status", status)
    app.router.add_get("/digest", digest)
    try:
        web.run_app(app, host="127.0.0.1", port=http_port, access_log=None, print=None,
                    handle_signals=True)
    finally:
        sync.destroy()


def _dirname(name: str) -> str:
    """``pysyncobj (no batch)`` -> ``pysyncobj-nobatch``: a system's directory."""
    base, _, variant = name.partition(" (")
    return base + ("-" + variant.rstrip(")").replace(" ", "") if variant else "")


class PySyncObjCluster:
    def __init__(self, root: Path, batch: bool, size: int = 3, driver: bool = False) -> None:
        """``driver``: replica 1 is a :class:`Driver` (the leader with the load generator in its
        process, no HTTP), the others HTTP nodes that are slow to call an election."""
        self.root = root
        self.batch = batch
        self.with_driver = driver
        self.driver: Driver | None = None
        self.raft = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        self.http = [free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> PySyncObjCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        for i, addr in enumerate(self.raft):
            partners = [a for a in self.raft if a != addr]
            batch = "1" if self.batch else "0"
            if self.with_driver and i == 0:
                self.driver = Driver([sys.executable, __file__, PSO_DRIVER, addr, ",".join(partners), batch],
                                     self.root / f"pso-{i + 1}.log", self.root)
                self.procs.append(self.driver.proc)
                continue
            log = (self.root / f"pso-{i + 1}.log").open("ab")
            self.procs.append(subprocess.Popen(
                [sys.executable, __file__, PSO_NODE, addr, ",".join(partners), str(self.http[i]), batch]
                + (["slow"] if self.with_driver else []),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
            ))
            log.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def agree(self, timeout: float = 10.0) -> str:
        """Once every node has applied the same index: the same dict everywhere (a digest of it)?"""
        deadline = time.monotonic() + timeout
        docs: list[Any] = []
        while time.monotonic() < deadline:
            docs = [self.driver.ask(cmd="digest") if self.driver is not None and i == 0 else
                    http_json(f"http://127.0.0.1:{port}/digest", timeout=2.0)[1]
                    for i, port in enumerate(self.http)]
            if all(docs) and len({d["applied"] for d in docs}) == 1:
                same = len({d["digest"] for d in docs}) == 1
                return f"yes ({docs[0]['keys']} keys)" if same else f"NO: digests differ at index {docs[0]['applied']}"
            time.sleep(0.2)
        return f"unknown: applied indexes never met within {timeout} s: {[d and d['applied'] for d in docs]}"

    def leader_base(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a PySyncObj process exited; logs in {self.root}")
            docs = [http_json(f"http://127.0.0.1:{port}/status", timeout=2.0) for port in self.http]
            leaders = {d.get("leader") for s, d in docs if s == 200 and d}
            if len(docs) == len([1 for s, _ in docs if s == 200]) and len(leaders) == 1 and None not in leaders:
                (leader,) = leaders
                i = self.raft.index(leader)
                base = f"http://127.0.0.1:{self.http[i]}"
                if http_json(f"{base}/registers/probe", "PUT", {"value": "x"}, timeout=5.0)[0] == 200:
                    return base
            time.sleep(0.1)
        raise TimeoutError(f"PySyncObj: no leader that commits within {timeout} s; logs in {self.root}")


def pysyncobj_target(name: str, c: PySyncObjCluster) -> Target:
    c.leader_base()

    def term() -> int | None:
        status, doc = http_json(c.leader_base() + "/status", timeout=2.0)
        return doc["term"] if status == 200 else None

    return Target(SystemResult(name), c.leader_base, [p.pid for p in c.procs], term, c.agree)


# ---------------------------------------------------------------- in-process: the client on the leader
# The load generator runs in the leader's own process, for both systems: no HTTP, no client process.
# Each system's leader is a child process of the benchmark (a "driver"), so the two systems never
# share an interpreter (one GIL) while the other measures; the benchmark talks to a driver over its
# stdin/stdout, one JSON line each way. The 2 other replicas are ordinary processes.
CK_DRIVER = "_inproc_clusterkit"
PSO_DRIVER = "_inproc_pysyncobj"
WARMUP = 0.3  # seconds of writes before each measured window: the pipeline full


class Driver:
    """A leader process with its load generator, asked over stdin/stdout, one JSON line each way."""

    def __init__(self, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=cwd)

    def ask(self, timeout: float = 60.0, **cmd: Any) -> dict[str, Any]:
        import select

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"driver {self.proc.args[2]} gave no answer to {cmd}; log in {self.log_path}")
        return json.loads(line)


def _fixed_window(counts: dict[str, int], window: tuple[float, float], now: float, ok: bool) -> None:
    """Count a completed write if it completed inside the measured window."""
    if window[0] <= now < window[1]:
        counts["ok" if ok else "errors"] += 1


async def clusterkit_driver(node_id: str, http_port: str, raft_port: str, data_dir: str, cluster: str) -> None:
    """The ClusterKit leader in this process: node-1 bootstraps (the others join it over its HTTP API),
    and ``run`` proposes register writes from C coroutines, each awaiting its write's commit."""
    _die_with_parent()
    from clusterkit.facade import Options
    from clusterkit.host.registers import put_command
    from clusterkit.net.node import NodeConfig
    from clusterkit.net.service import NodeService

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    options = Options(node_id=node_id, http_addr=f"127.0.0.1:{http_port}", raft_addr=f"127.0.0.1:{raft_port}",
                      bootstrap=True, data_dir=data_dir, cluster_name=cluster)
    service = NodeService(options, NodeConfig())  # a `clusterkit node`'s defaults: fsync on
    await service.start()
    node = service.node

    def status() -> dict[str, Any]:
        raft = node.host.raft if node.host is not None else None
        return {"is_leader": bool(raft is not None and raft.is_leader), "term": raft.term if raft else None}

    async def run(concurrency: int, seconds: float) -> dict[str, Any]:
        if not status()["is_leader"]:
            return {"error": "not the leader", **status()}
        counts = {"ok": 0, "errors": 0}
        window = (float("inf"), float("inf"))

        async def client(i: int) -> None:
            key, n = f"k{i}", 0
            while time.perf_counter() < window[1]:
                n += 1
                try:
                    await node.propose(put_command(key, str(n)))
                    ok = True
                except Exception:  # noqa: BLE001 - counted; a lost leadership shows here
                    ok = False
                    await asyncio.sleep(0.01)
                _fixed_window(counts, window, time.perf_counter(), ok)

        tasks = [loop.create_task(client(i)) for i in range(concurrency)]
        await asyncio.sleep(WARMUP)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        window = (t0, t0 + seconds)
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        await asyncio.gather(*tasks)  # the writes in flight end (uncounted)
        return {**counts, "seconds": seconds, "leader_cpu": cpu, **status()}

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd["cmd"] == "run":
                reply = await run(cmd["concurrency"], cmd["seconds"])
            else:
                reply = status()
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    except asyncio.CancelledError:
        pass
    finally:
        await service.stop()


def pysyncobj_driver(self_addr: str, partners: list[str], batch: bool) -> None:
    """The PySyncObj leader in this process (a SyncObj with a ReplDict; it has the shortest election
    timeouts, so it is the one elected), and ``run`` keeps C writes in flight with PySyncObj's
    callback API: each ``ReplDict.set(..., callback=)`` that reports success issues that client's next
    write (the callbacks run on PySyncObj's own thread, which also replicates)."""
    _die_with_parent()
    import hashlib
    import threading

    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
    from pysyncobj.batteries import ReplDict

    data = ReplDict()
    sync = SyncObj(self_addr, partners, conf=SyncObjConf(appendEntriesUseBatch=batch), consumers=[data])

    def status() -> dict[str, Any]:
        leader = sync._getLeader()
        return {"is_leader": sync._isLeader(), "leader": str(leader) if leader is not None else None,
                "ready": sync.isReady(), "term": sync.raftCurrentTerm}

    def probe() -> bool:
        try:
            data.set("probe", "x", sync=True, timeout=2.0)
            return True
        except Exception:  # noqa: BLE001 - not yet
            return False

    def run(concurrency: int, seconds: float) -> dict[str, Any]:
        if not sync._isLeader():
            return {"error": "not the leader", **status()}
        counts = {"ok": 0, "errors": 0}
        window = [float("inf"), float("inf")]
        live = [concurrency]
        finished = threading.Event()

        def issue(key: str, n: int) -> None:
            data.set(key, str(n), callback=lambda res, err: done(key, n, err))

        def done(key: str, n: int, err: Any) -> None:  # on PySyncObj's thread: one at a time
            now = time.perf_counter()
            _fixed_window(counts, (window[0], window[1]), now, err == FAIL_REASON.SUCCESS)
            if now >= window[1]:
                live[0] -= 1
                if not live[0]:
                    finished.set()
                return
            if err != FAIL_REASON.SUCCESS:
                time.sleep(0.01)
            issue(key, n + 1)

        for i in range(concurrency):
            issue(f"k{i}", 1)
        time.sleep(WARMUP)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        window[1] = t0 + seconds
        window[0] = t0
        time.sleep(seconds)
        cpu = time.process_time() - cpu0
        finished.wait(30.0)
        return {**counts, "seconds": seconds, "leader_cpu": cpu, **status()}

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "run":
            reply = run(cmd["concurrency"], cmd["seconds"])
        elif cmd["cmd"] == "digest":
            items = json.dumps(sorted(dict(data.rawData()).items()), sort_keys=True).encode()
            reply = {"applied": sync.raftLastApplied, "commit": sync.raftCommitIndex,
                     "digest": hashlib.sha256(items).hexdigest(), "keys": len(data)}
        elif cmd["cmd"] == "probe":
            reply = {"ok": sync._isLeader() and probe(), **status()}
        else:
            reply = status()
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    sync.destroy()


@dataclass
class InprocSystem:
    name: str
    driver: Driver
    pids: list[int]
    agree: Callable[[], str]
    throughput: dict[int, Throughput] = field(default_factory=dict)
    leader_cpu: dict[int, float] = field(default_factory=dict)
    terms: list[Any] = field(default_factory=list)
    agreed: str = "-"
    logs: Path | None = None  # PySyncObj: its processes' logs, for its warnings

    def warnings(self) -> int:
        """PySyncObj's followers' "truncating already-applied log entries" warnings, if any."""
        if self.logs is None:
            return 0
        return sum(f.read_text(errors="replace").count("truncating already-applied")
                   for f in self.logs.glob("*.log"))


def clusterkit_inproc(name: str, c: LocalCluster, timeout: float = 60.0) -> InprocSystem:
    """node-1 (the bootstrap node, hence the leader) is a driver; node-2 and node-3 join it as processes."""
    first = c.nodes["node-1"]
    drv = Driver([sys.executable, __file__, CK_DRIVER, first.node_id, str(first.http_port), str(first.raft_port),
                  str(first.data_dir), c.cluster_name], first.log_path, c.root)
    first.process = drv.proc  # LocalCluster's waits, leader() and stop() see it like the others
    c.wait(lambda: c.leader() == "node-1", timeout, "node-1 (in this driver) to lead")
    c.start("node-2")
    c.start("node-3")
    c.wait(lambda: c.active_members() == set(c.nodes), timeout, "every node to join")
    return InprocSystem(name, drv, [n.process.pid for n in c.nodes.values() if n.process], lambda: "-")


def pysyncobj_inproc(name: str, c: PySyncObjCluster, timeout: float = 30.0) -> InprocSystem:
    assert c.driver is not None
    deadline = time.monotonic() + timeout
    while not c.driver.ask(cmd="probe").get("ok"):
        if any(p.poll() is not None for p in c.procs) or time.monotonic() > deadline:
            raise RuntimeError(f"{name}: the in-process replica is not a leader that commits "
                               f"({c.driver.ask(cmd='status')}); logs in {c.root}")
        time.sleep(0.1)
    return InprocSystem(name, c.driver, [p.pid for p in c.procs], c.agree, logs=c.root)


def measure_inproc(systems: list[InprocSystem], args: argparse.Namespace) -> None:
    rounds = args.rounds
    for s in systems:
        s.terms.append(s.driver.ask(cmd="status")["term"])
    for conc in args.inproc_levels:
        for rnd in range(rounds):
            for s in systems[rnd % len(systems):] + systems[:rnd % len(systems)]:
                cpu0 = cpu_seconds(s.pids)
                got = s.driver.ask(cmd="run", concurrency=conc, seconds=args.seconds / rounds,
                                   timeout=args.seconds + 60)
                if "error" in got:
                    raise RuntimeError(f"{s.name}: {got}")
                t = Throughput(conc, got["ok"], got["errors"], got["seconds"], cpu_seconds(s.pids) - cpu0)
                s.throughput.setdefault(conc, Throughput(conc)).add(t)
                s.leader_cpu[conc] = s.leader_cpu.get(conc, 0.0) + got["leader_cpu"]
        _progress(f"in-process, {conc} writers: " + ", ".join(
            f"{s.name} {s.throughput[conc].rate:,.0f}/s" for s in systems))
    for s in systems:
        s.terms.append(s.driver.ask(cmd="status")["term"])


def report_inproc(systems: list[InprocSystem], args: argparse.Namespace) -> None:
    levels = args.inproc_levels
    header = ["system (client in the leader's process)"] + [f"writes/s c={c}" for c in levels]
    rows = [[s.name] + [_cell(s.throughput[c].rate, ",.0f") if c in s.throughput else "-" for c in levels]
            for s in systems]
    ck = next((s for s in systems if s.name.startswith("clusterkit")), None)
    pso = [s for s in systems if s.name.startswith("pysyncobj")]
    if ck is not None:
        for p in pso:
            rows.append([f"ratio clusterkit / {p.name}"] + [
                _cell(ck.throughput[c].rate / p.throughput[c].rate, ".2f") + "x"
                if c in ck.throughput and c in p.throughput and p.throughput[c].rate else "-" for c in levels])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print("\nIN-PROCESS mode: the load generator runs inside the leader's process and proposes directly "
          "(no HTTP);\nClusterKit fsyncs every batch, PySyncObj never fsyncs (in-memory log)")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print("\nwrites/s of each slice, CPU s per 1,000 writes (the leader's process, load generator included; "
          "all 3 processes), errors:")
    for s in systems:
        for c, t in s.throughput.items():
            lead = 1000 * s.leader_cpu[c] / t.ok if t.ok else None
            print(f"  {s.name:<22} c={c:<3} slices " + " ".join(f"{x:,.0f}" for x in t.slices)
                  + f"; CPU leader {_cell(lead, '.2f')}, all {_cell(t.cpu_per_1k, '.2f')} s/1k; {t.errors} errors")
    for s in systems:
        print(f"  {s.name:<22} terms {s.terms[0] if s.terms else '-'} -> {s.terms[-1] if s.terms else '-'}; "
              f"same registers on every node: {s.agreed}"
              + (f"; {s.warnings()} 'truncating already-applied log entries' warnings in its logs"
                 if s.warnings() else ""))
    if ck is not None and pso:
        print("\nagainst the issue's target (in-process mode, client on the leader in both):")
        print_ratios(ck, pso, levels)


def run_inproc(args: argparse.Namespace, work: Path) -> list[InprocSystem]:
    """Start every system with its leader in a driver, measure in turns, check agreement, stop them."""
    with contextlib.ExitStack() as stack:
        t0 = time.monotonic()
        pso: list[tuple[str, PySyncObjCluster]] = []
        if not args.no_pysyncobj:
            for name, batch in (("pysyncobj (defaults)", True), ("pysyncobj (no batch)", False)):
                pso.append((name, stack.enter_context(PySyncObjCluster(
                    work / ("inproc-" + _dirname(name)), batch, driver=True))))
        ck = stack.enter_context(LocalCluster(work / "inproc-clusterkit", size=3))
        systems = [clusterkit_inproc("clusterkit", ck)]
        for name, c in pso:
            systems.append(pysyncobj_inproc(name, c))
        _progress(f"in-process: {len(systems)} systems up in {time.monotonic() - t0:.1f} s")
        measure_inproc(systems, args)
        keys = [f"k{i}" for i in range(max(args.inproc_levels))]
        for s in systems:
            s.agreed = clusterkit_agree(ck, keys) if s.name == "clusterkit" else s.agree()
    return systems



# ---------------------------------------------------------------- report
def _progress(line: str) -> None:
    print(f"  .. {line}", file=sys.stderr, flush=True)


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None or value != value else format(value, fmt)


def print_ratios(ck: Any, pso: list[Any], levels: list[int]) -> None:
    """ClusterKit's writes/s over the better PySyncObj's at each client count, against the target."""
    for c in levels:
        best = max(pso, key=lambda r: r.throughput[c].rate if c in r.throughput else 0)
        if c in ck.throughput and c in best.throughput and best.throughput[c].rate:
            ratio = ck.throughput[c].rate / best.throughput[c].rate
            verdict = "met" if ratio >= TARGETS["throughput_ratio"] else "NOT met"
            print(f"  writes/s c={c}: clusterkit / {best.name} (the better PySyncObj) = {ratio:.2f}x "
                  f"(target >= {TARGETS['throughput_ratio']:g}x): {verdict}")


def report(results: list[SystemResult], args: argparse.Namespace, floors_ms: list[float],
           load: tuple[tuple[float, ...], tuple[float, ...]], terms: dict[str, list[int | None]]) -> None:
    levels = args.levels
    header = (["system"] + [f"writes/s c={c}" for c in levels]
              + ["p50 ms", "p99 ms", "mean ms", "n", "failover s: median (each)"])
    rows = []
    for r in results:
        lat = r.latency
        fo = (f"{statistics.median(r.failovers):.2f} (" + ", ".join(f"{x:.2f}" for x in r.failovers) + ")"
              if r.failovers else "-")
        ms = (lambda v: _cell(v * 1e3, ".2f")) if lat else (lambda v: "-")
        rows.append([r.name] + [_cell(r.throughput[c].rate, ",.0f") if c in r.throughput else "-" for c in levels]
                    + [ms(lat.pct(50) if lat else 0), ms(lat.pct(99) if lat else 0), ms(lat.mean if lat else 0),
                       str(len(lat.samples)) if lat else "-", fo])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print()
    print("writes/s of each slice (the spread), server CPU s (3 nodes) and the clients' CPU s (this process)\n"
          "per 1,000 writes, non-200 answers (with every CPU busy, the rate is about the CPUs over the sum):")
    for r in results:
        for c, t in r.throughput.items():
            print(f"  {r.name:<22} c={c:<3} slices " + " ".join(f"{x:,.0f}" for x in t.slices)
                  + f"; CPU {_cell(t.cpu_per_1k, '.2f')} s/1k, clients {_cell(t.client_cpu_per_1k, '.2f')} s/1k;"
                  + f" {t.errors} errors")
    print("leader's term before and after the load (a jump: elections under load), and do all nodes agree:")
    for r in results:
        seen = terms.get(r.name, [])
        print(f"  {r.name:<22} terms {seen[0] if seen else '-'} -> {seen[-1] if seen else '-'}; "
              f"same registers on every node: {r.agree}")
    for r in results:
        for e in r.failover_errors:
            print(f"  {r.name}: failover {e}")
    if floors_ms:
        print(f"\nthe disk under the ClusterKit data dirs, 100-byte append + fdatasync, p50 of 20, once per round: "
              f"median {statistics.median(floors_ms):.2f} ms (min {min(floors_ms):.2f}, max {max(floors_ms):.2f})")
    print(f"load average (1, 5, 15 min) at the start {' '.join(f'{x:.2f}' for x in load[0])}, "
          f"at the end {' '.join(f'{x:.2f}' for x in load[1])}, on {os.cpu_count()} CPUs")

    ck = next((r for r in results if r.name == "clusterkit"), None)
    pso = [r for r in results if r.name.startswith("pysyncobj")]
    if ck is None:
        return
    print("\nagainst the issue's targets:")
    if pso:
        print_ratios(ck, pso, levels)
        for r in pso:
            if r.latency and ck.latency and r.latency.samples:
                print(f"  sequential p50: clusterkit {ck.latency.pct(50) * 1e3:.2f} ms, {r.name} "
                      f"{r.latency.pct(50) * 1e3:.2f} ms ({ck.latency.pct(50) / r.latency.pct(50):.2f}x)")
    if ck.latency:
        p50 = ck.latency.pct(50) * 1e3
        print(f"  sequential commit p50 {p50:.2f} ms (target <= {TARGETS['p50_ms']:g} ms): "
              f"{'met' if p50 <= TARGETS['p50_ms'] else 'NOT met'}")
    if ck.failovers:
        worst = max(ck.failovers)
        print(f"  failover: median {statistics.median(ck.failovers):.2f} s, worst {worst:.2f} s of "
              f"{len(ck.failovers)} (target <= {TARGETS['failover_s']:g} s): "
              f"{'met' if worst <= TARGETS['failover_s'] else 'NOT met'}")


# ---------------------------------------------------------------- main
def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated client counts, got {text!r}") from None
    if not levels or not all(1 <= x <= 512 for x in levels):
        raise argparse.ArgumentTypeError("client counts are 1 to 512")
    return levels


def measure(targets: list[Target], args: argparse.Namespace, disk_dir: Path) -> list[float]:
    """Every measurement in rounds, the systems taking turns (the order rotating): a drift in the
    machine's load hits them alike. Returns the disk's fdatasync floor of each round."""
    floors = []
    rounds = args.rounds
    for t in targets:
        t.terms.append(t.term())
    for conc in args.levels:
        for rnd in range(rounds):
            floors.append(fdatasync_floor(disk_dir, 20))
            for t in targets[rnd % len(targets):] + targets[:rnd % len(targets)]:
                got = asyncio.run(throughput(t.find_leader(), conc, args.seconds / rounds, t.pids))
                t.result.throughput.setdefault(conc, Throughput(conc)).add(got)
        _progress(f"{conc} clients: " + ", ".join(f"{t.result.name} {t.result.throughput[conc].rate:,.0f}/s"
                                                  for t in targets))
    for rnd in range(rounds):
        for t in targets[rnd % len(targets):] + targets[:rnd % len(targets)]:
            lat = asyncio.run(sequential_latency(t.find_leader(), args.latency_writes // rounds,
                                                 args.latency_seconds / rounds))
            if t.result.latency is None:
                t.result.latency = Latency()
            t.result.latency.samples += lat.samples
            t.result.latency.errors += lat.errors
    _progress("sequential p50: " + ", ".join(f"{t.result.name} {t.result.latency.pct(50) * 1e3:.2f} ms"
                                             for t in targets if t.result.latency))
    for t in targets:
        t.terms.append(t.term())
    return floors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0,
                   help="seconds of writes per system and client count, over all rounds (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="the systems take turns this many times (default 3)")
    p.add_argument("--concurrency", dest="levels", type=_levels, default=[1, 16, 64],
                   help="client counts for the throughput runs (default 1,16,64)")
    p.add_argument("--latency-writes", type=int, default=600,
                   help="sequential writes per system for p50/p99 (default 600)")
    p.add_argument("--latency-seconds", type=float, default=4.5,
                   help="per system: stop the sequential writes after this long (default 4.5; PySyncObj's "
                   "defaults take ~0.1 s a write)")
    p.add_argument("--failovers", type=int, default=3, help="ClusterKit leader kills (default 3)")
    p.add_argument("--no-tmpfs", action="store_true", help="skip the ClusterKit run with its data on /dev/shm")
    p.add_argument("--no-pysyncobj", action="store_true", help="ClusterKit only")
    p.add_argument("--dir", type=Path, default=None, help="where the data dirs and logs go (default: a temp dir, "
                   "removed after a run that finished)")
    p.add_argument("--mode", choices=["http", "inproc", "both"], default="both",
                   help="http: clients in this process over HTTP (what a remote client sees), with latency and "
                   "failover; inproc: the load generator inside each leader's process, proposing directly; "
                   "both (default): one after the other")
    p.add_argument("--inproc-concurrency", dest="inproc_levels", type=_levels, default=[1, 16, 64, 256],
                   help="writers in flight for the in-process runs (default 1,16,64,256)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.latency_writes < args.rounds or args.failovers < 0:
        p.error("--rounds >= 1, --seconds > 0, --latency-writes >= --rounds, --failovers >= 0")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through every `with`: each cluster stops its processes

    signal.signal(signal.SIGTERM, on_term)
    work = (args.dir or Path(tempfile.mkdtemp(prefix="net-raft-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    load0 = os.getloadavg()
    results: list[SystemResult] = []
    inproc: list[InprocSystem] = []
    try:
        if args.mode in ("http", "both"):
            results, floors, terms = run_http(args, work, t0)
            load1 = os.getloadavg()
        if args.mode in ("inproc", "both"):
            inproc = run_inproc(args, work)
    except KeyboardInterrupt:
        print(f"net_raft: interrupted; every process stopped; logs in {work}", file=sys.stderr)
        return 130
    if results:
        print("\nHTTP mode: clients in this process, over HTTP/1.1 keep-alive, to the leader")
        report(results, args, [f * 1e3 for f in floors], (load0, load1), terms)
    if inproc:
        report_inproc(inproc, args)
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(total {time.monotonic() - t0:.0f} s)")
    return 0


def run_http(args: argparse.Namespace, work: Path, t0: float) -> tuple[list[SystemResult], list[float],
                                                                      dict[str, list[int | None]]]:
    """The HTTP mode: every system up at once, measured in turns, then ClusterKit's failovers."""
    shm: Path | None = None
    try:
        with contextlib.ExitStack() as stack:
            print(f"net_raft: 3 nodes per system on loopback, {os.cpu_count()} CPUs; data and logs in {work}",
                  flush=True)
            # PySyncObj's processes first: they come up while ClusterKit's start (each waits below).
            pso: list[tuple[str, PySyncObjCluster]] = []
            if not args.no_pysyncobj:
                for name, batch in (("pysyncobj (defaults)", True), ("pysyncobj (no batch)", False)):
                    pso.append((name, stack.enter_context(
                        PySyncObjCluster(work / _dirname(name), batch))))
            ck = stack.enter_context(LocalCluster(work / "clusterkit", size=3))
            targets = [clusterkit_target("clusterkit", ck)]
            ck_tmpfs = None
            others: list[Any] = []
            if not args.no_tmpfs and Path("/dev/shm").is_dir():
                shm = Path(tempfile.mkdtemp(prefix="net-raft-bench-", dir="/dev/shm"))
                ck_tmpfs = stack.enter_context(LocalCluster(shm / "clusterkit", size=3))
                others.append(ck_tmpfs)
                targets.append(clusterkit_target("clusterkit (tmpfs)", ck_tmpfs))
            for name, c in pso:
                others.append(c)
                targets.append(pysyncobj_target(name, c))
            _progress(f"{len(targets)} systems up in {time.monotonic() - t0:.1f} s")
            floors = measure(targets, args, work / "clusterkit")
            keys = [f"k{i}" for i in range(max(args.levels))] + ["seq"]
            for t in targets:
                if t.result.name == "clusterkit":
                    t.result.agree = clusterkit_agree(ck, keys)
                elif t.result.name == "clusterkit (tmpfs)" and ck_tmpfs is not None:
                    t.result.agree = clusterkit_agree(ck_tmpfs, keys)
                else:
                    t.result.agree = t.agree()
            for other in others:  # the failovers run alone
                other.stop()
            failovers(ck, targets[0].result, args.failovers)
            results = [t.result for t in targets]
            terms = {t.result.name: t.terms for t in targets}
    finally:
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)  # RAM: never left behind
    return results, floors, terms


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == PSO_NODE:
        addr, partners, port, batch = sys.argv[2:6]
        pysyncobj_node(addr, partners.split(","), int(port), batch == "1", sys.argv[6:] == ["slow"])
    elif len(sys.argv) > 1 and sys.argv[1] == PSO_DRIVER:
        addr, partners, batch = sys.argv[2:5]
        pysyncobj_driver(addr, partners.split(","), batch == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == CK_DRIVER:
        asyncio.run(clusterkit_driver(*sys.argv[2:7]))
    else:
        sys.exit(main())
