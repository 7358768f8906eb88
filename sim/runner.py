"""Run one scenario with one seed: setup, faults, heal, quiet; check everything; report.

Phases: the cluster elects a leader and the cluster state is bootstrapped
(every initial node joins); the fault phase runs the workload and the fault
schedule; then everything is healed and in the quiet phase liveness is
required: a leader within a bound, a write that commits, every migration
finished and every partition on a full set of data-holding owners, every
live node caught up. Safety is checked all along (Raft invariants after
every processed batch, the partition map after every change), and the
client history is checked for linearizability at the end.
"""

from __future__ import annotations

import json
import logging
import random
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clusterkit.check.history import read_history
from clusterkit.check.linearizability import check_operations
from clusterkit.check.models import model_for
from clusterkit.check.partition_invariants import check_balance
from clusterkit.check.raft_safety import InvariantViolation
from clusterkit.cluster_state import ACTIVE
from clusterkit.host.registers import put_command
from clusterkit.kv.server import ServerConfig
from clusterkit.kv.strategies import STRATEGIES
from clusterkit.raft.ready import RaftConfig

from .cluster import SimCluster
from .faults import KINDS, window_rules
from .nemesis import Nemesis
from .network import SimNetwork
from .scenario import Scenario
from .trace import Timeline, Trace
from .kvchecks import check_kv
from .kvclients import KVClients
from .kvhost import SimKV
from .workload import Clients

SETUP_LIMIT = 30.0  # virtual seconds for the first leader and the cluster-state bootstrap
# Messages recorded (for a Lamport diagram) around the first scheduled fault when asked for
# "first-fault": a little before it, and long enough after it for an election (10-20 ticks) to end.
FIRST_FAULT_WINDOW = (0.5, 4.0)
MessageWindow = tuple[float, float] | Literal["first-fault"] | None


@dataclass
class Report:
    scenario: str
    seed: int
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)  # resolved: replayable as they are
    skipped: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    kv: dict[str, int] = field(default_factory=dict)  # the KV store's end counts (keys, acked, lost)
    linearizability: str = ""
    digest: str = ""
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    trace: str = field(default="", repr=False)
    timeline: Timeline = field(default_factory=Timeline, repr=False)  # for plots (clusterkit.plot)

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        ops = ", ".join(f"{v} {k}" for k, v in self.operations.items())
        lines = [
            f"{verdict} {self.scenario} seed {self.seed}: {self.virtual_seconds:.1f} virtual s "
            f"in {self.wall_seconds:.2f} s wall",
            f"  trace digest {self.digest}",
            f"  operations: {ops or 'none'}; {self.linearizability}",
            "  " + ", ".join(f"{k} {v}" for k, v in self.counters.items() if v and not k.startswith("messages"))
            + f"; messages {self.counters.get('messages_sent', 0)} sent, "
            f"{self.counters.get('messages_dropped', 0)} dropped",
            f"  faults: {len(self.faults)} applied, {self.skipped} skipped",
        ]
        if self.kv:
            lines.append("  kv: " + ", ".join(f"{k.removeprefix('kv_').replace('_', ' ')} {v}" for k, v in self.kv.items()))
        lines += [f"  problem: {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()
               if k not in ("history", "trace", "timeline")}
        return out

    def write(self, out_dir: Path) -> list[Path]:
        """The trace, the history (JSON lines, for `clusterkit check linearizability`) and the report."""
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.scenario}-seed{self.seed}"
        paths = [out_dir / f"{stem}.trace", out_dir / f"{stem}.history.jsonl", out_dir / f"{stem}.report.json"]
        paths[0].write_text(self.trace)
        paths[1].write_text("".join(json.dumps(op, sort_keys=True) + "\n" for op in self.history))
        paths[2].write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return paths


class _DelayTap(SimNetwork):
    """The scenario's network, handing the delays it draws for each message to the trace.

    ``SimCluster._send`` asks ``fate`` and then tells the trace about the message, so the trace
    pairs the two. Used only when messages are recorded: the delays drawn are the same, so the
    run is too.
    """

    trace: Trace | None = None

    def fate(self, src: str, dst: str, rng: random.Random) -> list[float]:
        delays = super().fate(src, dst, rng)
        if self.trace is not None:
            self.trace.note_delays(delays)
        return delays


def build_cluster(scenario: Scenario, seed: int, trace: Trace, *, record_delays: bool = False) -> SimCluster:
    config = RaftConfig(
        election_ticks=scenario.election_ticks,
        heartbeat_ticks=scenario.heartbeat_ticks,
        lease_reads=scenario.lease_reads,
        voter_down_ticks=max(3 * scenario.election_ticks, 30),
        snapshot_threshold=200,  # small: the runs exercise compaction and InstallSnapshot
        snapshot_trailing=50,
    )
    network: SimNetwork
    if record_delays:
        network = _DelayTap(scenario.latency, scenario.loss, scenario.duplicate)
        network.trace = trace
    else:
        network = SimNetwork(scenario.latency, scenario.loss, scenario.duplicate)
    cluster = SimCluster(
        [f"n{i}" for i in range(1, scenario.nodes + 1)],
        seed,
        tick=scenario.tick,
        raft_config=config,
        network=network,
        fsync=scenario.fsync,
        codec=scenario.codec,
        partition_count=scenario.partition_count,
        replication_factor=scenario.replication_factor,
        copy_time=scenario.copy_time,
        fail_after_ticks=round(scenario.fail_after / scenario.tick),
        trace=trace,
        # Anti-entropy every 2 s, not the nodes' default 5 s: the clients stop half-way through the
        # quiet phase, and a single round left before the end can lose a message and miss it.
        data_layer=SimKV(ServerConfig(strategy=scenario.workload.kv, repair_ticks=20, gc_ticks=20))
        if scenario.workload.kv else None,
    )
    # Every kind's counter, zero until it fires: a scenario's [expect] may name any of them.
    cluster.counters.faults = {kind.counter: 0 for kind in KINDS.values()}
    return cluster


def _setup(c: SimCluster) -> bool:
    """Elect a leader, bootstrap the cluster state on it, join every other node."""
    env = c.env
    deadline = env.now + SETUP_LIMIT
    while env.now < deadline:
        env.run(until=env.now + 0.1)
        lead = c.leader()
        if lead is None:
            continue
        state = c.nodes[lead].kit.state
        if state.config is None:
            c.submit(c.nodes[lead].kit.bootstrap_command())
            continue
        missing = [n for n in sorted(c.nodes) if n not in state.nodes]
        for nid in missing:
            c.submit(c.nodes[nid].kit.join_command())
        if not missing and not state.migrating and all(c.nodes[n].kit.state.epoch == state.epoch for n in c.nodes):
            return True
    return False


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """The nodes' warnings (a node marked failed, a copy confirmed by timeout) are events of the
    run, in its trace; thousands of seeds must not print them all."""
    logger = logging.getLogger("clusterkit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_scenario(
    scenario: Scenario,
    seed: int,
    *,
    trace_messages: bool = False,
    lincheck_budget: float = 30.0,
    message_window: MessageWindow = None,
) -> Report:
    """Run ``scenario`` with ``seed``. ``message_window`` keeps the messages sent in it, with their
    delays, in ``report.timeline.messages``: (start, end) in virtual seconds, or "first-fault" for
    half a second before the first scheduled fault to four seconds after it."""
    with _quiet_logs():
        return _run_scenario(scenario, seed, trace_messages, lincheck_budget, message_window)


@dataclass
class _Run:
    """What a run has going, so a run stopped by a violation (or a crash) still reports its faults."""

    start: float = 0.0
    nemesis: Nemesis | None = None
    clients: Clients | KVClients | None = None
    timeline: Timeline = field(default_factory=Timeline)
    message_window: MessageWindow = None


def _run_scenario(
    scenario: Scenario, seed: int, trace_messages: bool, lincheck_budget: float, message_window: MessageWindow
) -> Report:
    started = time.perf_counter()
    report = Report(scenario.name, seed)
    trace = Trace(keep_messages=trace_messages)
    if isinstance(message_window, tuple):
        trace.record_window = (float(message_window[0]), float(message_window[1]))
    c = build_cluster(scenario, seed, trace, record_delays=message_window is not None)
    timeline = Timeline(every=scenario.tick / 10, commit_every=scenario.tick, fault_rules=window_rules())
    run = _Run(timeline=timeline, message_window=message_window)
    c.env.process(_sample(c, timeline))
    try:
        _run(c, scenario, seed, report, run)
    except InvariantViolation as exc:
        c.violation(f"raft safety: {exc}")
    except Exception as exc:  # noqa: BLE001 - a crash in the core or the harness is a finding, not an abort
        c.violation(f"crash: {type(exc).__name__}: {exc} ({_where(exc)})")
    if run.nemesis is not None:
        report.faults = [f.to_dict() for f in run.nemesis.record]
        report.skipped = len(run.nemesis.skipped)
        applied = {id(f) for f in run.nemesis.applied}  # the record holds the very same objects
        timeline.faults = [{**f.to_dict(), "t": round(run.start + f.at, 6), "applied": id(f) in applied}
                           for f in run.nemesis.record]
    if run.clients is not None:
        report.history = run.clients.history
        report.operations = dict(run.clients.counts)
    report.problems = list(c.problems) + report.problems
    report.counters = c.counters.as_dict()
    report.digest = trace.digest()
    report.trace = trace.text()
    report.virtual_seconds = round(c.env.now, 6)
    timeline.phases["end"] = report.virtual_seconds
    timeline.messages = trace.records
    timeline.message_window = trace.record_window
    report.timeline = timeline
    if not report.problems:
        # A strategy that promises no linearizability (ASYNC: a read after a failover may miss an
        # acknowledged write) has its verdict reported, not required.
        strategy = scenario.workload.kv
        check_history(report, lincheck_budget, required=not strategy or STRATEGIES[strategy].linearizable)
        # (a run stopped early by a violation never reached its faults: counting them says nothing)
        _check_expectations(scenario, report)
    report.ok = not report.problems
    report.wall_seconds = round(time.perf_counter() - started, 3)
    return report


def _node_state(node: Any) -> tuple[str, int]:
    """A node's state for the timeline: its Raft role (learner for a non-voting follower), or why
    it has none."""
    raft = node.host.raft
    if not node.alive or raft is None:
        return ("gone" if node.gone else "down"), 0
    if node.paused:
        return "paused", raft.term
    role = raft.role.value
    if role == "follower" and node.id not in raft.voters:
        role = "learner"
    return role, raft.term


def _sample(c: SimCluster, timeline: Timeline):  # a SimPy process that only reads the cluster
    """Every ``timeline.every`` seconds note each node's state and the newest partition map; every
    ``commit_every`` each commit index. Reading changes nothing and draws nothing, so the run is
    the same with or without it."""
    env = c.env
    next_commit = 0.0
    while True:
        now = env.now
        commits = now >= next_commit
        if commits:
            next_commit = now + timeline.commit_every
        newest = None
        for nid, node in c.nodes.items():
            state, term = _node_state(node)
            timeline.role(now, nid, state, term)
            raft = node.host.raft
            if raft is not None and node.alive:
                if commits:
                    timeline.commit(now, nid, raft.log.committed)
                if newest is None or node.kit.state.epoch > newest.epoch:
                    newest = node.kit.state
        fresh = newest is not None and (not timeline.maps or newest.epoch > timeline.maps[-1].epoch)
        if fresh and newest.config is not None:
            holders = tuple(tuple(newest.live_holders(p)) for p in range(len(newest.owners)))
            timeline.partition_map(now, newest.epoch, tuple(newest.owners), holders, tuple(newest.active()))
        yield env.timeout(timeline.every)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return f"{Path(last.filename).name}:{last.lineno}" if last else "?"


def _run(c: SimCluster, scenario: Scenario, seed: int, report: Report, run: _Run) -> None:
    if not _setup(c):
        c.violation(f"setup: no bootstrapped cluster within {SETUP_LIMIT} virtual seconds")
        return
    env = c.env
    run.start = start = env.now
    faults = list(scenario.faults)
    if scenario.random is not None:
        faults += scenario.random.generate(random.Random(f"faults/{seed}"), scenario.duration)
    run.nemesis = nemesis = Nemesis(c)
    scheduled = [f for f in faults if f.at < scenario.duration]
    nemesis.schedule(scheduled, start)
    run.timeline.phases["faults"] = round(start, 6)
    if run.message_window == "first-fault":
        first = start + min((f.at for f in scheduled), default=0.0)
        before, after = FIRST_FAULT_WINDOW
        c.trace.record_window = (round(max(start, first - before), 6), round(first + after, 6))
    stop_at = start + scenario.duration + scenario.quiet / 2
    clients: Clients | KVClients
    if isinstance(c.data_layer, SimKV):
        clients = KVClients(c, c.data_layer, scenario.workload, stop_at=stop_at)
    else:
        clients = Clients(c, scenario.workload, stop_at=stop_at)
    run.clients = clients
    clients.start()
    c.trace.event(env.now, "faults begin")
    env.run(until=start + scenario.duration)
    nemesis.heal_everything()
    run.timeline.phases["heal"] = round(env.now, 6)
    _quiet(c, scenario, report)
    if isinstance(clients, KVClients) and isinstance(c.data_layer, SimKV):
        crashes: dict[str, list[float]] = {}
        for f in nemesis.record:
            if f.kind in ("kill", "fail"):
                crashes.setdefault(f.node, []).append(start + f.at)
        problems, counts = check_kv(c, c.data_layer, clients, crashes)
        report.problems += problems
        report.kv = counts


def _quiet(c: SimCluster, scenario: Scenario, report: Report) -> None:
    """Liveness after healing: a leader, a committed write, migrations done, everyone caught up."""
    env = c.env
    end = env.now + scenario.quiet
    committed: list[bool] = []
    probe_at: float | None = None
    while env.now < end:
        env.run(until=min(end, env.now + 0.25))
        # (Re)propose the probe until one commits: one can be lost to a leader change.
        if not any(committed) and (probe_at is None or env.now - probe_at >= 1.0) and c.leader() is not None:
            if c.submit(put_command("probe", "quiet"), lambda p: committed.append(p.ok)):
                probe_at = env.now
    lead = c.leader()
    if lead is None:
        report.problems.append(f"liveness: no leader {scenario.quiet:g} s after healing")
        return
    if not any(committed):
        report.problems.append(f"liveness: no write committed within {scenario.quiet:g} s after healing")
    state = c.nodes[lead].kit.state
    if state.config is not None:
        if state.migrating:
            stuck = [(p, state.incoming(p)) for p in range(len(state.owners)) if state.incoming(p)]
            report.problems.append(f"liveness: migrations unfinished after quiet: {stuck[:5]}")
        active = state.active()
        want = min(state.config.replication_factor, len(active))
        for p, owners in enumerate(state.owners):
            if len(owners) != want or any(o not in active for o in owners):
                report.problems.append(f"partition {p}: owners {list(owners)}, want {want} of {active}")
                break
        assignment = {f"partition-{p}": list(o) for p, o in enumerate(state.owners)}
        report.problems += [f"balance after quiet: {p}" for p in check_balance(assignment, active, want)[:3]]
    commit = c.nodes[lead].host.raft.log.committed if c.nodes[lead].host.raft else 0
    behind = [n for n in c.live() if c.nodes[n].host.applied_index < commit
              and c.nodes[n].kit.state.nodes.get(n, None) is not None
              and c.nodes[n].kit.state.nodes[n].status == ACTIVE]
    if behind:
        report.problems.append(f"liveness: {behind} not caught up with commit {commit} after quiet")


def check_history(report: Report, budget: float, required: bool = True) -> None:
    if not report.history:
        report.linearizability = "no client operations"
        return
    text = "".join(json.dumps(op) + "\n" for op in report.history)
    ops = read_history(text, "jsonl", source=f"{report.scenario} seed {report.seed}")
    result = check_operations(ops, model_for("kv"), budget_seconds=budget, clock=time.monotonic)
    report.linearizability = result.explain().splitlines()[0]
    if result.verdict.name == "NOT_LINEARIZABLE" and required:
        report.problems.append("linearizability: " + result.explain())


def _check_expectations(scenario: Scenario, report: Report) -> None:
    for name, least in sorted(scenario.expect.items()):
        have = report.counters.get(name)
        if have is None:
            report.problems.append(f"expect: no counter named {name!r}")
        elif have < least:
            report.problems.append(f"expect: {name} happened {have} times, the scenario needs at least {least}")
