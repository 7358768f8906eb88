"""Run a scenario file, unchanged, against real ``clusterkit node`` processes on loopback.

The simulator's scenario (its nodes, its fault schedule, scripted or drawn
from the seed, and its register workload) is played on real processes: each
fault kind's ``apply_real`` (clusterkit.sim.faults) acts through
:class:`RealCluster` (SIGKILL, SIGSTOP/SIGCONT, a restart from the data
directory, and ``/debug/faults`` for cut links, clock skew and disk stalls on
nodes started with ``--fault-injection``). One virtual second is one wall
second. Register clients go through the HTTP API; their history is the same
JSON lines the simulator writes, checked by the same linearizability checker,
and the run ends with the simulator's liveness checks. Kinds or workloads the
real world can't run are refused by name before any process starts; every
process is stopped on every way out, Ctrl-C included.
"""

from __future__ import annotations

import logging
import random
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.check.partition_invariants import check_balance
from clusterkit.sim.faults import KINDS, Fault, kind_of
from clusterkit.sim.faults.targets import resolve
from clusterkit.sim.runner import Report, check_history
from clusterkit.sim.scenario import Scenario

from .local import LocalCluster, http_json

log = logging.getLogger(__name__)

READY_LIMIT = 60.0  # wall seconds for the cluster to form before the faults begin
REQUEST_TIMEOUT = 2.0  # the runner's own requests (leader, faults, membership)


class NotRunnable(ValueError):
    """A scenario the real world can't run, with why (named before anything starts)."""


def refusals(scenario: Scenario, seed: int) -> list[str]:
    """Why ``scenario`` can't run on real processes: its workload, or its fault kinds, by name."""
    out = []
    if scenario.workload.kv:
        out.append(f"workload kv = {scenario.workload.kv!r}: the KV store's links can't be cut on real nodes yet")
    kinds = {f.kind for f in scenario.faults}
    if scenario.random is not None:
        kinds |= set(scenario.random.kinds)
    for name in sorted(kinds, key=list(KINDS).index):
        reason = kind_of(name).not_real
        if reason:
            out.append(f"fault kind {name}: {reason}")
    return out


def _real_id(nid: str) -> str:
    return "node-" + nid.removeprefix("n")


def _scenario_id(node_id: str) -> str:
    return "n" + node_id.removeprefix("node-")


@dataclass
class RealCluster:
    """The real world the fault kinds act on (clusterkit.sim.faults.world.RealWorld), over a
    :class:`LocalCluster` whose node-k is the scenario's nk."""

    local: LocalCluster
    rng: random.Random
    replication_factor: int
    killed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    links: tuple[tuple[str, str], ...] = ()  # cut now (scenario ids)
    rates: dict[str, float] = field(default_factory=dict)
    _paused_now: set[str] = field(default_factory=set)

    # ------------------------------------------------------------ views
    def nodes(self) -> list[str]:
        return sorted((_scenario_id(n) for n in self.local.nodes if _scenario_id(n) not in self.removed),
                      key=lambda n: (len(n), n))

    def live(self) -> list[str]:
        return [n for n in self.nodes() if self.is_alive(n) and not self.is_paused(n)]

    def is_alive(self, nid: str) -> bool:
        node = self.local.nodes.get(_real_id(nid))
        return node is not None and node.alive

    def is_paused(self, nid: str) -> bool:
        return nid in self._paused_now

    def _get(self, nid: str, path: str) -> tuple[int, Any]:
        return http_json(self.local.nodes[_real_id(nid)].url + path, timeout=REQUEST_TIMEOUT, token=self.local.token)

    def _post(self, nid: str, path: str, body: Any) -> tuple[int, Any]:
        return http_json(self.local.nodes[_real_id(nid)].url + path, method="POST", body=body,
                         timeout=REQUEST_TIMEOUT, token=self.local.token)

    def leader(self) -> str | None:
        """The leader most live nodes name (a node cut off may still think it leads)."""
        votes: dict[str, int] = {}
        for nid in self.live():
            status, doc = self._get(nid, "/consensus/leader")
            named = doc.get("leader_id") if status == 200 and isinstance(doc, dict) else None
            if isinstance(named, str) and named:
                votes[named] = votes.get(named, 0) + 1
        if not votes:
            return None
        best = max(sorted(votes), key=lambda n: votes[n])
        lead = _scenario_id(best)
        return lead if lead in self.live() else None

    def cluster_doc(self) -> dict[str, Any] | None:
        lead = self.leader()
        if lead is None:
            return None
        status, doc = self._get(lead, "/cluster")
        return doc.get("cluster") if status == 200 and isinstance(doc, dict) else None

    # ------------------------------------------------------------ processes
    def kill(self, nid: str) -> None:
        self.local.kill(_real_id(nid))
        self._paused_now.discard(nid)

    def restart(self, nid: str) -> None:
        self.local.start(_real_id(nid))
        threading.Thread(target=self._reapply, args=(nid,), daemon=True).start()

    def pause(self, nid: str) -> None:
        self._signal(nid, signal.SIGSTOP)
        self._paused_now.add(nid)

    def resume(self, nid: str) -> None:
        self._signal(nid, signal.SIGCONT)
        self._paused_now.discard(nid)
        self._send_faults(nid)  # what changed while it was stopped

    def _signal(self, nid: str, sig: signal.Signals) -> None:
        process = self.local.nodes[_real_id(nid)].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)

    def _reapply(self, nid: str) -> None:
        """A restarted process starts with no faults injected: give it the current ones once it answers."""
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and self.is_alive(nid):
            if self._get(nid, "/health")[0] == 200:
                self._send_faults(nid)
                return
            time.sleep(0.1)

    # ------------------------------------------------------------ /debug/faults
    def _send_faults(self, nid: str, **extra: Any) -> None:
        if not self.is_alive(nid) or self.is_paused(nid):
            return  # a paused node is told when it resumes, a killed one when it restarts
        body = {"cut": [_real_id(b) for a, b in self.links if a == nid], "rate": self.rates.get(nid, 1.0), **extra}
        status, doc = self._post(nid, "/debug/faults", body)
        if status == 0:  # (not answering yet after a restart: _reapply tells it once it does)
            log.debug("fault injection on %s: no answer", nid)
        elif status != 200:
            log.warning("fault injection on %s refused (%s): %s", nid, status, doc)

    def cut(self, links: tuple[tuple[str, str], ...]) -> None:
        before = {a for a, _ in self.links}
        self.links = links
        for nid in sorted(before | {a for a, _ in links}):
            self._send_faults(nid)

    def set_rate(self, nid: str, rate: float) -> None:
        self.rates[nid] = rate
        self._send_faults(nid)

    def stall(self, nid: str, seconds: float) -> None:
        self._send_faults(nid, stall=seconds)

    # ------------------------------------------------------------ membership
    def join(self, nid: str) -> bool:
        expected = _real_id(nid)
        if expected in self.local.nodes or expected != f"node-{len(self.local.nodes) + 1}":
            return False  # real joins take the next node-<k>
        self.local.add_node()
        return True

    def removal_ok(self, nid: str) -> bool:
        """As the simulator's nemesis: never below max(3, RF) members or a live quorum, and only
        when no partition is being copied and the node is an active member."""
        doc = self.cluster_doc()
        if doc is None:
            return False
        active = [_scenario_id(n["id"]) for n in doc.get("nodes", []) if n.get("status") == "active"]
        partitions = doc.get("partition_map", {}).get("partitions", {})
        if nid not in active or any(p.get("incoming") for p in partitions.values()):
            return False
        rest = [n for n in active if n != nid]
        live = [n for n in rest if n in self.live()]
        return len(rest) >= max(3, self.replication_factor) and len(live) >= len(active) // 2 + 1

    def leave(self, nid: str) -> bool:
        status, _ = self._post(nid, "/leave", {"node_id": _real_id(nid)})
        if status == 200:
            self.removed.add(nid)
        return status == 200

    def fail(self, nid: str) -> bool:
        """Dies for good; the leader's failure detector marks it failed (--fail-after)."""
        if self.is_alive(nid):
            self.kill(nid)
        self.removed.add(nid)
        return True

    def heal_everything(self) -> None:
        """The end of the fault phase: links back, clocks true, paused nodes resumed, killed ones
        restarted (those that failed or left stay gone)."""
        self.links = ()
        self.rates = {}
        for nid in self.nodes():
            if self.is_paused(nid):
                self.resume(nid)
            elif not self.is_alive(nid):
                self.restart(nid)
            else:
                self._send_faults(nid, heal=True)


# ------------------------------------------------------------------ faults
@dataclass
class _Nemesis:
    world: RealCluster
    t0: float
    poller: Any = None  # a clusterkit.net.live.LivePoller when the run is drawn (--plot)
    record: list[Fault] = field(default_factory=list)
    applied: list[Fault] = field(default_factory=list)
    skipped: list[Fault] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: {k.counter: 0 for k in KINDS.values()})

    def resolve(self, fault: Fault) -> str | None:
        w = self.world
        return resolve(fault, live=w.live(), leader=w.leader, rng=w.rng,
                       killed=[n for n in w.killed if not w.is_alive(n) and n not in w.removed],
                       paused=[n for n in w.paused if w.is_paused(n)],
                       new_id=lambda: f"n{len(w.local.nodes) + 1}", exists=lambda n: n in w.nodes())

    def apply(self, fault: Fault) -> None:
        kind = kind_of(fault.kind)
        nid = self.resolve(fault)
        resolved = None
        if nid is not None and (nid or not (kind.targets or kind.by_id)):
            try:
                resolved = kind.apply_real(self.world, fault, nid)
            except Exception:  # noqa: BLE001 - one fault's failure is a skipped fault, not a dead run
                log.exception("applying %s", fault.describe())
        if resolved is None:
            self.skipped.append(fault)
            self.record.append(fault)
            log.info("%7.3fs skipped %s %s", time.monotonic() - self.t0, fault.kind, fault.node)
            return
        self.counters[kind.counter] += 1
        self.applied.append(resolved)
        self.record.append(resolved)
        if self.poller is not None:
            self._draw(resolved)
        log.info("%7.3fs fault %s", time.monotonic() - self.t0, resolved.summary().split("s ", 1)[1])


    def _draw(self, fault: Fault) -> None:
        """Onto the live timeline, in its node names (node-k)."""
        extra = {k: v for k, v in fault.to_dict().items() if k not in ("at", "kind", "node", "cuts")}
        if fault.cuts:
            extra["cuts"] = [[_real_id(a), _real_id(b)] for a, b in fault.cuts]
        node = _real_id(fault.node) if fault.node else ""
        if fault.kind in ("leave", "fail"):
            self.poller.gone(node, fault.kind)
        else:
            self.poller.fault(fault.kind, node, **extra)


# ------------------------------------------------------------------ clients
@dataclass
class _Clients:
    world: RealCluster
    scenario: Scenario
    seed: int
    t0: float
    stop_at: float
    history: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "info": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for p in range(self.scenario.workload.clients):
            t = threading.Thread(target=self._client, args=(p,), name=f"client-{p}", daemon=True)
            self._threads.append(t)
            t.start()

    def join(self) -> None:
        for t in self._threads:
            t.join(self.scenario.workload.timeout + REQUEST_TIMEOUT + 5.0)

    def _now(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def _note(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.history.append(event)
            if event["type"] != "invoke":
                self.counts[event["type"]] += 1

    def _client(self, p: int) -> None:
        w = self.scenario.workload
        rng = random.Random(f"client/{self.seed}/{p}")
        per_client = w.rate / max(1, w.clients)
        nodes = self.world.local.nodes
        seq = 0
        target = list(nodes)[p % len(nodes)]
        while self._now() < self.stop_at:
            if per_client > 0:
                time.sleep(min(rng.expovariate(per_client), 1.0))
            if self._now() >= self.stop_at:
                break
            key = f"k{rng.randrange(w.keys)}"
            write = rng.random() < w.write_ratio
            seq += 1
            value = f"{p}.{seq}"
            self._note({"process": p, "type": "invoke", "f": "put" if write else "get", "key": key,
                        "value": value if write else None, "time": self._now()})
            url = f"{nodes[target].url}/registers/{key}"
            if write:
                status, doc = http_json(url, "PUT", {"value": value}, timeout=w.timeout, token=self.world.local.token)
                outcome = "ok" if status == 200 else "fail" if status in (400, 401, 403, 503) else "info"
                event = {"process": p, "type": outcome, "f": "put", "key": key, "value": value, "time": self._now()}
                if outcome != "ok":  # why, as the node said it (a checker reads only the fields it knows)
                    event["error"] = f"{status} {doc.get('error') if isinstance(doc, dict) else ''}".strip()
                self._note(event)
            else:
                status, doc = http_json(url, timeout=w.timeout, token=self.world.local.token)
                ok = status == 200 and isinstance(doc, dict)
                self._note({"process": p, "type": "ok" if ok else "fail", "f": "get", "key": key,
                            "value": doc.get("value") if ok else None, "time": self._now()})
            if status in (0, 503):  # down, cut off or leaderless: try another node next time
                target = rng.choice(sorted(nodes))


# ------------------------------------------------------------------ the run
@contextmanager
def _cluster(scenario: Scenario, root: Path) -> Iterator[LocalCluster]:
    args = ["--fault-injection", "--log-level", "WARNING", "--tick", repr(scenario.tick),
            "--fail-after", repr(scenario.fail_after or 3.0)]
    local = LocalCluster(root, size=scenario.nodes, secure=True, extra_args=args,
                         partition_count=scenario.partition_count, replication_factor=scenario.replication_factor)
    try:
        yield local
    finally:
        for node in local.nodes.values():  # a stopped process can't take SIGTERM: wake it first
            if node.alive and node.process is not None:
                node.process.send_signal(signal.SIGCONT)
        local.stop()


def run_real(scenario: Scenario, seed: int, *, workdir: Path | None = None, lincheck_budget: float = 30.0,
             record: bool = False) -> Report:
    """Run ``scenario`` with ``seed`` on real node processes. NotRunnable if it can't be. ``record``:
    poll the nodes' roles and commits into ``report.timeline`` for plots (needs the plot extra)."""
    problems = refusals(scenario, seed)
    if problems:
        raise NotRunnable("; ".join(problems))
    started = time.monotonic()
    report = Report(scenario.name, seed)
    faults = list(scenario.faults)
    if scenario.random is not None:
        faults += scenario.random.generate(random.Random(f"faults/{seed}"), scenario.duration)
    faults = sorted((f for f in faults if f.at < scenario.duration), key=lambda f: f.at)
    with tempfile.TemporaryDirectory(prefix="clusterkit-real-") as tmp, \
            _cluster(scenario, Path(workdir or tmp) / "cluster") as local:
        local.start_all(timeout=READY_LIMIT)
        world = RealCluster(local, random.Random(f"nemesis/{seed}"), scenario.replication_factor)
        t0 = time.monotonic()
        poller = _poller(local, t0) if record else None
        nemesis = _Nemesis(world, t0, poller)
        clients = _Clients(world, scenario, seed, t0, stop_at=scenario.duration + scenario.quiet / 2)
        clients.start()
        try:
            if poller is not None:
                poller.start()
                poller.timeline.phases["faults"] = 0.0
            for fault in faults:
                _sleep_until(t0 + fault.at)
                nemesis.apply(fault)
            _sleep_until(t0 + scenario.duration)
            world.heal_everything()
            if poller is not None:
                poller.timeline.phases["heal"] = poller.now()
            _quiet(world, scenario, report, t0)
            clients.join()
        finally:
            if poller is not None:
                poller.stop()
                report.timeline = poller.timeline
        report.faults = [f.to_dict() for f in nemesis.record]
        report.skipped = len(nemesis.skipped)
        report.counters = dict(nemesis.counters)
        report.history = sorted(clients.history, key=lambda e: e["time"])
        report.operations = dict(clients.counts)
        report.problems += _exits(local, world)
    report.digest = "(real processes: no trace digest)"
    report.virtual_seconds = report.wall_seconds = round(time.monotonic() - started, 3)
    check_history(report, lincheck_budget)
    report.ok = not report.problems
    return report


def _poller(local: LocalCluster, t0: float) -> Any:
    from .live import LivePoller  # (matplotlib: the plot extra, needed only to draw)

    return LivePoller(local, clock=lambda: time.monotonic() - t0)


def _sleep_until(deadline: float) -> None:
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)


def _quiet(world: RealCluster, scenario: Scenario, report: Report, t0: float) -> None:
    """Liveness after healing, as the simulator checks it: a leader, a committed write, the
    partitions' owners settled on the active members."""
    end = time.monotonic() + max(scenario.quiet, 5.0)
    committed = settled = False
    problem = ""
    while time.monotonic() < end and not (committed and settled):
        lead = world.leader()
        if lead is not None and not committed:
            status, _ = http_json(world.local.nodes[_real_id(lead)].url + "/registers/probe", "PUT",
                                  {"value": "quiet"}, timeout=REQUEST_TIMEOUT, token=world.local.token)
            committed = status == 200
        doc = world.cluster_doc() if committed else None
        if doc is not None:
            problem = _settled(doc, scenario.replication_factor)
            settled = not problem
        time.sleep(0.2)
    if world.leader() is None:
        report.problems.append(f"liveness: no leader {scenario.quiet:g} s after healing")
    elif not committed:
        report.problems.append(f"liveness: no write committed within {scenario.quiet:g} s after healing")
    elif not settled:
        report.problems.append(f"liveness: {problem}")


def _settled(doc: dict[str, Any], rf: int) -> str:
    active = sorted(n["id"] for n in doc.get("nodes", []) if n.get("status") == "active")
    partitions = doc.get("partition_map", {}).get("partitions", {})
    want = min(rf, len(active))
    for pid, p in sorted(partitions.items()):
        owners = [p.get("primary_node"), *p.get("replica_nodes", [])]
        if p.get("incoming"):
            return f"migrations unfinished: {pid} still copying to {p['incoming']}"
        if len(owners) != want or any(o not in active for o in owners):
            return f"{pid}: owners {owners}, want {want} of {active}"
    assignment = {pid: [p.get("primary_node"), *p.get("replica_nodes", [])] for pid, p in partitions.items()}
    balance = check_balance(assignment, active, want)
    return f"balance after quiet: {balance[0]}" if balance else ""


def _exits(local: LocalCluster, world: RealCluster) -> list[str]:
    """A node process that exited by itself (not killed, not one that left) is a finding."""
    out = []
    for node_id, node in local.nodes.items():
        code = node.process.poll() if node.process is not None else None
        nid = _scenario_id(node_id)
        if code is not None and code != -signal.SIGKILL and nid not in world.removed:
            out.append(f"{node_id} exited with {code}: see {node.log_path}")
    return out
