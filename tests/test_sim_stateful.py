"""Stateful exploration of the simulator: Hypothesis picks faults, membership changes and clients.

A :class:`~hypothesis.stateful.RuleBasedStateMachine` drives a small
:class:`~clusterkit.sim.cluster.SimCluster` (3 to 5 node hosts, RF 2 or 3,
failure detection on or off, built by ``sim.runner.build_cluster`` from a
Scenario and bootstrapped by ``sim.runner._setup``) one rule at a time, in
virtual time. Its rules are

* faults, applied through a :class:`~clusterkit.sim.nemesis.Nemesis` (the code
  path scenarios take): kill (with or without a torn write at the log's tail),
  restart, pause, resume, partition by a named Jepsen shape or by random
  groups, one-way cut, heal, clock skew, disk stall;
* membership changes, also through the nemesis: a new node joins, a node
  leaves gracefully, a node fails for good;
* client operations on replicated registers: a single put or get on a chosen
  node's host (recorded as ``sim.workload.Clients`` records them, in the
  JSON-lines history form), or a short burst of ``Clients`` processes;
* advancing virtual time by a bounded amount (nothing happens between rules).

Nodes are chosen by Hypothesis-drawn indexes over the sorted candidates (or
as "the leader"), so a failure shrinks to a short, readable schedule.

Checked after every rule: Raft safety (the cluster's monitor raises
:class:`~clusterkit.check.raft_safety.InvariantViolation` the moment a
property breaks, and nothing here catches it), log matching across the live
nodes, and ``cluster.problems`` empty (the partition-map checks: owners
distinct and known, no copy released before its replacement confirmed). At
the end everything is healed and a quiet phase must bring liveness
(``sim.runner._quiet``: a leader, a committed write, migrations done, the
map balanced, everyone caught up), every client operation must have
returned, and the history must be linearizable for the ``kv`` model.

A second test breaks the cluster state (an old owner's copy is released
before the new owner confirmed its own) and shows the machine finds it. The
last tests are deterministic reproductions of what the machine found: bugs in
the quiet phase, the node host, the failure detector, the nemesis and the
simulator's checks, fixed since and kept as regression tests.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from clusterkit.check.history import read_history
from clusterkit.check.linearizability import Verdict, check_operations
from clusterkit.check.models import model_for
from clusterkit.cluster_state import FAILED, ClusterState, NodeInfo, join_command, leave_command
from clusterkit.host.registers import put_command
from clusterkit.sim.cluster import SimCluster, SimNode
from clusterkit.sim.nemesis import Nemesis
from clusterkit.sim.runner import Report, _quiet, _setup, build_cluster
from clusterkit.sim.scenario import Fault, Scenario, Workload
from clusterkit.sim.shapes import SHAPES
from clusterkit.sim.trace import Trace
from clusterkit.sim.workload import Clients

MAX_NODES = 6  # members not removed for good: joins stop here
KEYS = 3
WORKLOAD = Workload(clients=2, rate=20.0, keys=KEYS, write_ratio=0.5, timeout=1.0)

# A node: an index into the sorted candidates (shrinks to the first one), or the current leader.
NODE = st.one_of(st.integers(0, MAX_NODES - 1), st.just("leader"))
INDEX = st.integers(0, MAX_NODES - 1)


@pytest.fixture(autouse=True)
def _quiet_node_logs() -> Iterator[None]:
    """As the runner does: the nodes' warnings (a node marked failed, rejoining) are events of
    the run, in its trace; hundreds of runs must not print them all."""
    logger = logging.getLogger("clusterkit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def _step(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark the machine broken when a rule or invariant raises (the error itself propagates),
    so teardown doesn't bury it under a liveness failure of the half-run cluster."""

    @functools.wraps(fn)
    def wrapper(self: SimClusterMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    return wrapper


class BurstClients(Clients):
    """``sim.workload.Clients`` for one burst, writing into the machine's shared history: its
    processes are numbered after everyone else's and its values carry the burst's tag, so
    every process and every written value stays unique across bursts."""

    def __init__(self, cluster: SimCluster, workload: Workload, stop_at: float,
                 history: list[dict[str, Any]], first_pid: int, tag: str) -> None:
        super().__init__(cluster, workload, stop_at)
        self.rng = random.Random(f"clients/{cluster.seed}/{tag}")  # each burst its own choices
        self.history = history
        self.first_pid = first_pid
        self.tag = tag

    def _record(self, pid: int, kind: str, f: str, key: str, value: str | None) -> None:
        if f == "put" and value is not None:
            value = self.tag + value
        super()._record(self.first_pid + pid, kind, f, key, value)

    def _put(self, node: SimNode, key: str, value: str):
        return (yield from super()._put(node, key, self.tag + value))


class SimClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.c: SimCluster | None = None
        self.scenario: Scenario | None = None
        self.nemesis: Nemesis | None = None
        self.history: list[dict[str, Any]] = []
        self.clients: Clients | None = None  # single operations go through its operation()
        self.next_pid = 0
        self.writes = 0
        self.bursts = 0
        self.seed = 0
        self.broken = False

    # ------------------------------------------------------------ set up
    @initialize(nodes=st.integers(3, 5), rf=st.sampled_from((3, 2)), detector=st.booleans(),
                seed=st.integers(0, 1000))
    @_step
    def start(self, nodes: int, rf: int, detector: bool, seed: int) -> None:
        self._start(nodes, rf, seed, fail_after=3.0 if detector else 0.0)

    def _start(self, nodes: int, rf: int, seed: int, fail_after: float = 0.0) -> None:
        self.seed = seed
        self.scenario = Scenario("stateful", nodes=nodes, replication_factor=rf, fail_after=fail_after,
                                 quiet=10.0, workload=WORKLOAD)
        self.c = build_cluster(self.scenario, seed, Trace())
        assert _setup(self.c), "setup: no bootstrapped cluster"
        self.nemesis = Nemesis(self.c)
        self.clients = Clients(self.c, WORKLOAD, stop_at=0.0)
        self.clients.history = self.history

    # ------------------------------------------------------------ helpers
    def _now(self) -> float:
        return self.c.env.now

    def _fault(self, kind: str, node: str = "", **extra: Any) -> None:
        self.nemesis.apply(Fault(self._now(), kind, node, **extra))

    @staticmethod
    def _pick(candidates: list[str], choice: int | str) -> str | None:
        """An index into the sorted candidates (modulo their number), or ``leader`` passed on to
        the nemesis, which resolves it when the fault fires."""
        if choice == "leader":
            return "leader"
        nodes = sorted(candidates)
        return nodes[choice % len(nodes)] if nodes else None

    def _members(self) -> list[str]:
        return [n for n, node in self.c.nodes.items() if not node.removed]

    def _dead(self) -> list[str]:
        return [n for n, node in self.c.nodes.items() if not node.alive and not node.removed]

    def _paused(self) -> list[str]:
        return [n for n, node in self.c.nodes.items() if node.paused and node.alive]

    def _run(self, seconds: float) -> None:
        self.c.run(self._now() + seconds)

    # ------------------------------------------------------------ faults
    @rule(node=NODE, torn=st.booleans())
    @_step
    def kill(self, node: int | str, torn: bool) -> None:
        target = self._pick(self.c.live(), node)
        if target is not None:
            self._fault("kill", target, torn=torn)

    @precondition(lambda self: self.c is not None and bool(self._dead()))
    @rule(node=INDEX)
    @_step
    def restart(self, node: int) -> None:
        self._fault("restart", self._pick(self._dead(), node))

    @rule(node=NODE)
    @_step
    def pause(self, node: int | str) -> None:
        target = self._pick([n for n in self.c.live() if not self.c.nodes[n].paused], node)
        if target is not None:
            self._fault("pause", target)

    @precondition(lambda self: self.c is not None and bool(self._paused()))
    @rule(node=INDEX)
    @_step
    def resume(self, node: int) -> None:
        self._fault("resume", self._pick(self._paused(), node))

    @rule(shape=st.sampled_from(SHAPES))
    @_step
    def partition_shape(self, shape: str) -> None:
        self._fault("partition", shape=shape)

    @rule(sides=st.lists(st.integers(0, 2), min_size=MAX_NODES, max_size=MAX_NODES))
    @_step
    def partition_groups(self, sides: list[int]) -> None:
        """Member k (sorted) goes to group sides[k]; all in one group cuts nothing."""
        members = sorted(self._members())
        groups: dict[int, list[str]] = {}
        for k, nid in enumerate(members):
            groups.setdefault(sides[k % len(sides)], []).append(nid)
        self._fault("partition", groups=tuple(tuple(g) for _, g in sorted(groups.items())))

    @rule(of_leader=st.booleans())
    @_step
    def one_way_cut(self, of_leader: bool) -> None:
        """Everything one node sends is lost while it still hears everyone."""
        self._fault("partition", shape="one-way-leader" if of_leader else "one-way")

    @rule()
    @_step
    def heal(self) -> None:
        self._fault("heal")

    @rule(node=NODE, rate=st.sampled_from((1.0, 0.5, 0.8, 1.25, 2.0)))
    @_step
    def skew(self, node: int | str, rate: float) -> None:
        target = self._pick(self.c.live(), node)
        if target is not None:
            self._fault("skew", target, rate=rate)

    @rule(node=NODE, tenths=st.integers(1, 15))
    @_step
    def stall(self, node: int | str, tenths: int) -> None:
        target = self._pick(self.c.live(), node)
        if target is not None:
            self._fault("stall", target, seconds=tenths / 10)

    # ------------------------------------------------------------ membership
    @precondition(lambda self: self.c is not None and len(self._members()) < MAX_NODES)
    @rule()
    @_step
    def join(self) -> None:
        self._fault("join", "new")

    @rule(node=NODE)
    @_step
    def leave(self, node: int | str) -> None:
        """The nemesis refuses to take away an active member's data or a quorum for good."""
        target = self._pick(self.c.live(), node)
        if target is not None:
            self._fault("leave", target)

    @rule(node=NODE)
    @_step
    def fail(self, node: int | str) -> None:
        target = self._pick(self._members(), node)
        if target is not None:
            self._fault("fail", target)

    # ------------------------------------------------------------ clients
    @rule(node=NODE, key=st.integers(0, KEYS - 1), write=st.booleans())
    @_step
    def client_op(self, node: int | str, key: int, write: bool) -> None:
        """One put or get, asked of a node (the leader, or any live one: followers refuse writes,
        paused ones time out); it completes as virtual time advances."""
        nid = self.c.leader() if node == "leader" else self._pick(self.c.live(), node)
        if nid is None:
            return
        value = None
        if write:
            self.writes += 1
            value = f"w{self.writes}"  # unique, as the workload's values are
        self.next_pid += 1
        self.c.env.process(self.clients.operation(self.next_pid - 1, self.c.nodes[nid], f"k{key}", value))

    @rule(clients=st.integers(1, 3), tenths=st.integers(2, 15))
    @_step
    def burst(self, clients: int, tenths: int) -> None:
        """``sim.workload.Clients`` for a short while, then time runs on for that while."""
        self.bursts += 1
        workload = Workload(clients=clients, rate=10.0 * clients, keys=KEYS, timeout=WORKLOAD.timeout)
        burst = BurstClients(self.c, workload, self._now() + tenths / 10, self.history,
                             first_pid=self.next_pid, tag=f"b{self.bursts}.")
        self.next_pid += clients
        burst.start()
        self._run(tenths / 10)

    # ------------------------------------------------------------ time
    @rule(tenths=st.integers(1, 40))
    @_step
    def advance(self, tenths: int) -> None:
        self._run(tenths / 10)

    # ------------------------------------------------------------ invariants
    def _trace_tail(self, lines: int = 30) -> str:
        return "\n".join(self.c.trace.lines[-lines:])

    @invariant()
    @_step
    def partition_map_sound(self) -> None:
        if self.c is not None:
            assert not self.c.problems, "\n".join(self.c.problems) + "\n--- trace tail\n" + self._trace_tail()

    @invariant()
    @_step
    def logs_match(self) -> None:
        if self.c is not None:
            self.c.observer.check_logs(n.host for n in self.c.nodes.values() if n.alive)

    # ------------------------------------------------------------ the end
    def teardown(self) -> None:
        if self.c is None or self.broken:
            return  # a rule or invariant failed: that error is the report
        c = self.c
        self.nemesis.heal_everything()
        report = Report("stateful", self.seed)
        _quiet(c, self.scenario, report)
        c.observer.check_logs(n.host for n in c.nodes.values() if n.alive)
        problems = c.problems + report.problems
        assert not problems, "\n".join(problems) + "\n--- trace tail\n" + self._trace_tail()
        open_ops = collections.Counter(e["process"] for e in self.history if e["type"] == "invoke")
        open_ops.subtract(e["process"] for e in self.history if e["type"] != "invoke")
        pending = sorted(pid for pid, n in open_ops.items() if n)
        assert not pending, f"operations of processes {pending} never returned after the quiet phase"
        if self.history:
            text = "".join(json.dumps(op) + "\n" for op in self.history)
            ops = read_history(text, "jsonl", source=f"stateful seed {self.seed}")
            result = check_operations(ops, model_for("kv"), budget_seconds=10.0, clock=time.monotonic)
            assert result.verdict is not Verdict.NOT_LINEARIZABLE, result.explain()


SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    stateful_step_count=50,
    # No explain phase: tracing every line of a simulation makes a failure take minutes to report.
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestSimClusterStateful = SimClusterMachine.TestCase
TestSimClusterStateful.settings = SETTINGS


# ---------------------------------------------------------------- the machine finds a bug
class ThreeNodeMachine(SimClusterMachine):
    """Three nodes with RF 3 hold every partition everywhere, so the bootstrap moves nothing:
    whatever breaks, a rule had to break it."""

    @initialize(seed=st.integers(0, 1000))
    @_step
    def start(self, seed: int) -> None:  # type: ignore[override]
        self._start(3, 3, seed)


def _releases_old_owners_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the cluster state: a reassignment drops the old owners' copies at once instead of
    keeping them until the new owners confirm theirs."""
    reassign = ClusterState._reassign

    def broken(self: ClusterState, *args: Any, **kwargs: Any) -> Any:
        events = reassign(self, *args, **kwargs)
        self.holders = [tuple(h for h in hs if h in self.owners[p]) for p, hs in enumerate(self.holders)]
        return events

    monkeypatch.setattr(ClusterState, "_reassign", broken)


def test_the_machine_finds_a_copy_released_too_early(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ClusterState._reassign
    with monkeypatch.context() as patch:
        _releases_old_owners_early(patch)
        with pytest.raises(AssertionError, match="released too early"):
            run_state_machine_as_test(
                ThreeNodeMachine,
                settings=settings(SETTINGS, max_examples=30, stateful_step_count=10, report_multiple_bugs=False),
            )
    assert ClusterState._reassign is original  # the patch is gone


# ---------------------------------------------------------------- found by the machine
# What this machine found, as deterministic reproductions (each failed the same way for every
# seed tried), fixed since (b7ad208, 81817f1) and kept as regression tests.


def test_quiet_phase_retries_a_lost_probe() -> None:
    """The leader's disk stalls as the quiet phase begins: the probe is proposed on it, can't be
    sent, another node is elected and its entry takes the probe's index. The quiet phase must
    propose the probe again rather than report "no write committed". (Shrunk from the machine:
    stall the leader 1.3 s, join, 0.1 s, heal.)"""
    m = SimClusterMachine()
    m._start(3, 3, 0)
    m.nemesis.heal_everything()
    m._fault("stall", m.c.leader(), seconds=3.0)
    report = Report("stateful", 0)
    _quiet(m.c, m.scenario, report)
    assert report.problems == []


def test_a_proposal_truncated_away_ends() -> None:
    """A leader whose disk stalls, and whose every message is lost, appends six entries it can't
    send (a leader sends its appends while its own disk syncs them: only the cut stops them); a
    new leader writes two (its no-op and a host entry) and the cluster goes idle. The old leader's
    entries are cut from its log, but that alone does not make them fail: another node might
    hold them and win (issue 20, item 5). While its answers are cut the old leader never learns a
    commit past them, so they stay open (unknown); once it hears that an entry of the new term
    committed, every proposal must end (lost), including those at indexes no later entry takes,
    or whoever waits on one without a timeout (the quiet phase's probe) waits forever."""
    m = SimClusterMachine()
    m._start(3, 3, 0)
    c = m.c
    lead = c.leader()
    m._fault("stall", lead, seconds=3.0)
    m._fault("partition", shape="one-way-leader")
    proposals = [c.nodes[lead].host.propose(put_command("k", f"v{i}")) for i in range(6)]
    c._kick(c.nodes[lead])
    m._run(30.0)
    assert c.leader() not in (None, lead)
    assert not any(p.done for p in proposals)  # truncated, but nothing committed past them is known
    m.nemesis.heal_everything()
    m._run(5.0)
    assert [p.index for p in proposals if not p.done] == []
    assert not any(p.ok for p in proposals)
    assert all(p.error.startswith("lost") for p in proposals)


def test_the_detector_keeps_a_node_failed_by_hand_failed() -> None:
    """With failure detection on, the nemesis fails a follower (it dies; the leader marks it
    failed). It was heard less than 2 ticks before: the detector must not let it rejoin, dead
    (once out of Raft nobody would mark it failed again and its partitions would never move)."""
    m = SimClusterMachine()
    m._start(5, 3, 0, fail_after=3.0)
    c = m.c
    victim = sorted(n for n in c.live() if n != c.leader())[0]
    m._fault("fail", victim)
    m._run(0.5)
    assert not c.nodes[victim].alive
    assert c.nodes[c.leader()].kit.state.nodes[victim].status == FAILED


def test_a_new_leader_does_not_rejoin_a_dead_node() -> None:
    """With failure detection on, a dead follower is marked failed; then the leader dies. The new
    leader's progress for every peer starts at 0 inactive ticks: that must not count as having
    heard the dead node (it used to rejoin, then flap at every leader change)."""
    m = SimClusterMachine()
    m._start(5, 3, 0, fail_after=3.0)
    c = m.c
    lead = c.leader()
    victim = sorted(n for n in c.live() if n != lead)[0]
    m._fault("kill", victim)
    m._run(5.0)
    assert c.nodes[lead].kit.state.nodes[victim].status == FAILED
    m._fault("kill", lead)
    m._run(2.5)
    new = c.leader()
    assert new not in (None, lead) and not c.nodes[victim].alive
    assert c.nodes[new].kit.state.nodes[victim].status == FAILED


def test_nemesis_keeps_a_node_failed_while_joining_out() -> None:
    """n4 joins and its join command is in the leader's log, not applied yet, when the nemesis is
    asked to fail n4. Its leaving process would find no n4 in the cluster state and only take it
    out of Raft; then the join would apply, making n4 an active member, dead, that nobody marks
    failed. The nemesis must refuse (n4 isn't an active member) and the cluster recover."""
    m = SimClusterMachine()
    m._start(3, 3, 0)
    c = m.c
    m._fault("join", "new")
    assert c.submit(c.nodes["n4"].kit.join_command())
    m._fault("fail", "n4")
    m.nemesis.heal_everything()
    report = Report("stateful", 0)
    _quiet(c, m.scenario, report)
    assert report.problems == []


def test_nemesis_keeps_a_quorum_of_the_committed_configuration() -> None:
    """4 voters and a joining node; the leader is cut off and has appended (not committed) the
    removal of a follower A, as the nemesis's own leaving process does. Failing A, then the
    leader, counting only the leader's newest configuration (without A), would kill two of the
    four voters of the committed one for good: the nemesis must keep a quorum of both. (The
    machine found it as: fail the leader, kill and partition until a new leader appended that
    removal, fail the new leader.)"""
    m = SimClusterMachine()
    m._start(4, 3, 0)
    c = m.c
    lead = c.leader()
    a = sorted(n for n in c.live() if n != lead)[0]
    m._fault("join", "new")
    m._fault("partition", groups=((lead,),))
    c.nodes[lead].host.raft.remove_node(a)
    c._kick(c.nodes[lead])
    m._fault("fail", a)
    m._fault("fail", lead)
    m.nemesis.heal_everything()
    report = Report("stateful", 0)
    _quiet(c, m.scenario, report)
    assert report.problems == []


def test_a_leaving_node_keeps_ticking_until_it_is_out() -> None:
    """A node on its way out is still a voter: it must keep ticking (a leaving leader must
    heartbeat; a leaving node holding the only up-to-date log must campaign). The machine found
    a cluster left without a leader for good when its clock stopped as the leave began: 4 nodes;
    the leader n4 leaves; 1.1 s; isolate the new leader n3 (its entry removing n4 reached n4
    only); 0.5 s; a node joins; n3 fails for good. n1 and n2 need n4's vote, n4 refuses them
    (their logs are behind) and, not ticking, never campaigned."""
    m = SimClusterMachine()
    m._start(4, 3, 0)
    c = m.c
    follower = sorted(n for n in c.live() if n != c.leader())[0]
    host = c.nodes[follower].host
    ticks: list[float] = []
    tick = host.tick
    host.tick = lambda: (ticks.append(c.env.now), tick())[1]  # type: ignore[method-assign]
    m._fault("leave", follower)
    assert c.nodes[follower].removed  # the leave began
    m._run(0.5)
    assert follower in c.nodes[c.leader()].host.raft.voters and c.nodes[follower].alive
    assert len(ticks) >= 4


def test_map_check_sees_one_command_at_a_time() -> None:
    """Three nodes, RF 3. The leader appends two cluster-state commands while its followers'
    answers are cut, so both commit and apply in one batch: a follower leaves (two members
    remain, fewer than RF, so its copy goes at once, as ``check_holders_kept`` allows), then n9
    joins (its copy not confirmed yet). One command at a time both steps are sound; compared
    across the batch, with three members at the end, holders went from three to two, which the
    check used to report as "a copy was released too early". (The machine found it with two
    failures marked in one batch.)"""
    m = SimClusterMachine()
    m._start(3, 3, 0)
    c = m.c
    lead = c.leader()
    node, kit = c.nodes[lead], c.nodes[lead].kit
    followers = sorted(n for n in c.live() if n != lead)
    m._fault("partition", cuts=tuple((f, lead) for f in followers))
    node.host.propose(leave_command(followers[0]))
    node.host.propose(join_command(kit.options.cluster_config(), NodeInfo("n9", raft_addr="sim:9", api_addr="sim:9")))
    c._kick(node)
    m._run(0.3)
    m._fault("heal")
    m._run(1.0)
    assert kit.state.active() == sorted({*followers[1:], lead, "n9"})
    assert c.problems == []


def test_the_detector_survives_a_leadership_transfer() -> None:
    """With failure detection on, a follower dies and the leader starts handing leadership to a
    node it can't reach (as the nemesis does for a leaving leader). When the dead node has been
    silent long enough, the detector's proposal is refused (ProposalDropped: leadership is being
    transferred): it must be retried later, not raised through ``ClusterKit.tick`` and
    ``NodeHost.tick`` into the node's driver (fixed in 81817f1)."""
    m = SimClusterMachine()
    m._start(5, 3, 0, fail_after=3.0)
    c = m.c
    lead = c.leader()
    victim, target = sorted(n for n in c.live() if n != lead)[:2]
    m._fault("kill", victim)
    m._run(2.9)
    m._fault("partition", groups=((target,),))
    c.nodes[lead].host.raft.transfer_leadership(target)
    c._kick(c.nodes[lead])
    m._run(6.0)  # the transfer is abandoned after an election timeout; the retried fail commits
    assert c.nodes[c.leader()].kit.state.nodes[victim].status == FAILED
