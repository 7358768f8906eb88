"""The SimPy driver: node hosts on a simulated network and disks, in virtual time.

This module only moves bytes, time and disk syncs. Each node is the core's
:class:`~clusterkit.host.NodeHost` drained by the core's Ready
:class:`~clusterkit.host.pipeline.Pipeline` (the same host and pipeline
memnet and the TCP node run) whose state machine is its
:class:`~clusterkit.facade.ClusterKit` plus a
:class:`~clusterkit.host.registers.RegisterMap` for the clients' data. Each
node ticks by its own clock (rate and phase can drift); messages go through
the msgpack codec and the :class:`~.network.SimNetwork`; a node's disk
writes a Ready's record after a simulated fsync's delay (:class:`SimSyncs`),
while the pipeline goes on as on a real node (early sends, applying what is
already durable), and a crash meanwhile tears or loses that record. Every random
choice comes from one seeded generator, in event order, and SimPy orders
simultaneous events by insertion, so a run replays exactly from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import simpy

from clusterkit.check.partition_invariants import check_holders_kept
from clusterkit.check.raft_safety import RaftSafetyMonitor
from clusterkit.cluster_state import FAILED
from clusterkit.facade import ClusterKit, Options
from clusterkit.host import NodeHost
from clusterkit.host.observer import SafetyObserver
from clusterkit.host.composite import Composite
from clusterkit.host.pipeline import Pipeline
from clusterkit.host.syncs import Done
from clusterkit.host.registers import TAG, RegisterMap
from clusterkit.raft.codec import decode, encode
from clusterkit.raft.errors import RaftError
from clusterkit.raft.messages import ConfState, Message
from clusterkit.raft.ready import RaftConfig, Role
from clusterkit.raft.storage import MemoryStorage

from .network import Latency, SimNetwork
from .trace import Trace


@dataclass
class Counters:
    """What really happened in a run, so a scenario can require that its faults occurred."""

    elections: int = 0  # distinct (term, leader) pairs
    faults: dict[str, int] = field(default_factory=dict)  # by each fault kind's counter name
    torn_writes: int = 0
    migrations: int = 0  # partition copies confirmed
    marked_failed: int = 0  # nodes the cluster state marked failed (by the nemesis or the detector)
    rejoins: int = 0  # failed nodes that joined again
    rebalances: int = 0
    messages_sent: int = 0
    messages_delivered: int = 0
    messages_dropped: int = 0
    snapshots_installed: int = 0

    def bump(self, name: str) -> None:
        self.faults[name] = self.faults.get(name, 0) + 1

    def as_dict(self) -> dict[str, int]:
        out = {k: v for k, v in self.__dict__.items() if k != "faults"}
        return {"elections": out.pop("elections"), **self.faults, **out}


@dataclass(frozen=True, slots=True)
class DataMessage:
    """A data-layer message held for a paused node (Raft messages are held as bytes)."""

    src: str
    data: Any


@dataclass
class SimNode:
    id: str
    host: NodeHost
    kit: ClusterKit
    registers: RegisterMap
    disk: MemoryStorage
    rate: float = 1.0  # clock speed: 2.0 ticks twice as often as real time
    alive: bool = True
    paused: bool = False
    generation: int = 0  # bumps at every crash: callbacks of an earlier life are dropped
    inbox: list[Any] = field(default_factory=list)  # delivered while paused
    stall_until: float = 0.0
    copying: set[int] = field(default_factory=set)  # partitions this life is copying
    removed: bool = False  # leaving or failed for good: never restarted, never a fault's target
    gone: bool = False  # its process has exited for good (out of Raft, or failed): no more ticks
    wipes: int = 0  # disks lost so far: each starts a new life that must be taken in again
    pipeline: Pipeline | None = None  # drains the host's Readies (set once the node is made)

    @property
    def draining(self) -> bool:
        """A sync of this life is under way."""
        return self.pipeline is not None and self.pipeline.syncing

    @draining.setter
    def draining(self, _value: bool) -> None:
        pass  # (a crash ends the drain by itself: the pipeline tells a new life from the old)


@dataclass(eq=False)
class SimSyncs:
    """A node's disk syncs in virtual time: the record is written once a sampled fsync delay (longer
    on a slow node, until a stall ends) has passed, unless the node crashed meanwhile: then the
    record was never written, and the crash kept of it what it keeps of any unsynced write."""

    c: SimCluster
    node: SimNode

    def start(self, work: Callable[[], None], done: Done) -> None:
        c, node = self.c, self.node
        delay = c.fsync.sample(c.rng) / c.speed.get(node.id, 1.0) + max(0.0, node.stall_until - c.env.now)
        ev = c.env.timeout(delay)
        ev.callbacks.append(lambda _e, generation=node.generation: self._end(generation, work, done))

    def _end(self, generation: int, work: Callable[[], None], done: Done) -> None:
        if self.node.generation != generation:
            return  # crashed before the sync returned
        work()
        done(None)


class DataLayer(Protocol):
    """An application's data layer on every node (the KV store): it replaces the stand-in copier."""

    def bind(self, cluster: SimCluster) -> None: ...  # before the first node is added

    def attach(self, node: SimNode) -> None: ...  # a new node (its first life)

    def restart(self, node: SimNode) -> None: ...  # a new life of a crashed node, from its disk

    def wipe(self, node: SimNode) -> None: ...  # a crashed node's disk is lost: the next life starts empty

    def tick(self, node: SimNode) -> None: ...

    def deliver(self, node: SimNode, src: str, data: Any) -> None: ...


class SimCluster:
    """A cluster of node hosts in one SimPy environment."""

    def __init__(
        self,
        node_ids: list[str],
        seed: int,
        *,
        tick: float = 0.1,
        raft_config: RaftConfig | None = None,
        network: SimNetwork | None = None,
        fsync: Latency | None = None,
        codec: bool = True,
        partition_count: int = 16,
        replication_factor: int = 3,
        copy_time: float = 0.2,
        fail_after_ticks: int = 0,
        trace: Trace | None = None,
        monitor: RaftSafetyMonitor | None = None,
        data_layer: DataLayer | None = None,
    ) -> None:
        self.env = simpy.Environment()
        self.seed = seed
        self.rng = random.Random(seed)  # the network's and the disks' draws, in event order
        self.tick_seconds = tick
        self.raft_config = raft_config or RaftConfig()
        self.network = network or SimNetwork()
        self.fsync = fsync or Latency("constant", 0.0005, 0.0, 0.0)
        self.codec = codec
        self.partition_count = partition_count
        self.replication_factor = replication_factor
        self.copy_time = copy_time
        self.fail_after_ticks = fail_after_ticks
        self.trace = trace or Trace()
        self.monitor = monitor if monitor is not None else RaftSafetyMonitor()
        self.data_layer = data_layer
        if data_layer is not None:
            data_layer.bind(self)
        self.counters = Counters()
        # Nodes running slow (the "slow" fault): node id -> speed below 1; empty on the hot path.
        self.speed: dict[str, float] = {}
        self.nodes: dict[str, SimNode] = {}
        self.problems: list[str] = []  # invariant violations seen (the run fails if any)
        self._leaders_seen: set[tuple[int, str]] = set()
        self.observer = SafetyObserver(self.monitor)
        self._epoch_checked = 0  # the newest cluster-state epoch checked
        self._holders_seen: dict[str, list[str]] = {}  # partition -> live holders at the last check
        self._rebalances: set[int] = set()  # epochs at which a rebalance started (every node fires it)
        self._node_events: set[tuple[str, str, int]] = set()
        self._failed_once: set[str] = set()
        voters = ConfState(voters=tuple(sorted(node_ids)))
        for nid in sorted(node_ids):
            self._add(nid, MemoryStorage(voters), joining=False)

    # ------------------------------------------------------------ nodes
    def _options(self, nid: str) -> Options:
        return Options(
            node_id=nid,
            http_addr=f"sim:{1000 + len(self.nodes)}",
            raft_addr=f"sim:{2000 + len(self.nodes)}",
            partition_count=self.partition_count,
            replication_factor=self.replication_factor,
            fail_after_ticks=self.fail_after_ticks,
        )

    def _add(self, nid: str, disk: MemoryStorage, joining: bool) -> SimNode:
        kit = ClusterKit(self._options(nid))
        registers = RegisterMap()
        # Each node's randomness from its own stream: a node that joins mid-run must not shift the
        # network's draws (or a replay without that join would differ everywhere).
        node_rng = random.Random(f"node/{self.seed}/{nid}")
        host = NodeHost(
            nid,
            disk,
            Composite(kit, {TAG: registers}),
            self.raft_config,
            rng=random.Random(node_rng.getrandbits(64)),
            joining=joining,
            address=kit.options.raft_addr,
            on_applied=lambda e, nid=nid: self._applied(nid, e),
        )
        node = SimNode(nid, host, kit, registers, disk)
        node.pipeline = Pipeline(host, self._send_all, SimSyncs(self, node), held=lambda: node.paused,
                                 idle=lambda: self._observe(node))
        self.nodes[nid] = node
        if self.data_layer is not None:
            self.data_layer.attach(node)
        else:
            kit.on_partition_change(lambda e, node=node: self._copy(node, e))
        kit.on_rebalance_start(self._rebalance_seen)
        kit.on_node_leave(self._node_event_seen)
        kit.on_node_join(self._node_event_seen)
        # Each clock starts at its own phase, so ticks don't line up across nodes.
        self.env.process(self._clock(node, node_rng.uniform(0, self.tick_seconds)))
        self.start_copier(node)
        return node

    def _clock(self, node: SimNode, phase: float):  # a SimPy process
        yield self.env.timeout(phase)
        while not node.gone:  # a leaving node ticks until it is out: it may lead, or hold the newest log
            yield self.env.timeout(self.tick_seconds / node.rate)
            if node.alive and not node.paused:
                node.host.tick()
                self._kick(node)
                if self.data_layer is not None:
                    self.data_layer.tick(node)

    # ------------------------------------------------------------ the Ready loop, with a disk
    def _kick(self, node: SimNode) -> None:
        if node.alive and not node.paused and node.host.has_ready():
            node.pipeline.kick()  # type: ignore[union-attr]

    def _send_all(self, messages: list[Message]) -> None:
        self.observer.sent(messages)
        for m in messages:
            self._send(m)

    def _applied(self, nid: str, entry: Any) -> None:
        self.monitor.applied_seen(nid, entry)
        node = self.nodes.get(nid)
        if node is not None and node.kit.state.epoch > self._epoch_checked:
            self._check_partition_map(node)  # the first node to apply a change checks it, one at a time

    def _observe(self, node: SimNode) -> None:
        raft = node.host.raft
        if raft is None:
            return
        self.observer.observe(node.host)
        if raft.role is Role.LEADER:
            if (raft.term, node.id) not in self._leaders_seen:
                self._leaders_seen.add((raft.term, node.id))
                self.counters.elections += 1
                self.trace.event(self.env.now, f"{node.id} leads term {raft.term}")

    def _check_partition_map(self, node: SimNode) -> None:
        """After every cluster-state change, one command at a time (checked by the first node to
        apply it; every node applies the same commands in the same order): owners distinct and
        known, and no partition's data on fewer live holders than min(RF, what it had, the
        members left) (migration safety)."""
        state = node.kit.state
        if state.config is None or state.epoch <= self._epoch_checked:
            return  # checked already (by a node that applied it first)
        self._epoch_checked = state.epoch
        problems = []
        for p, owners in enumerate(state.owners):
            if len(set(owners)) != len(owners) or any(o not in state.nodes for o in owners):
                problems.append(f"partition {p}: owners {owners} not distinct known nodes")
        holders = {f"partition-{p}": state.live_holders(p) for p in range(len(state.owners))}
        failed = [n for n, info in state.nodes.items() if info.status == FAILED]
        previous, self._holders_seen = self._holders_seen, holders
        problems += check_holders_kept(previous, holders, failed, state.config.replication_factor, state.active())
        for problem in problems:
            self.violation(f"partition map at epoch {state.epoch}: {problem}")

    def violation(self, text: str) -> None:
        self.problems.append(f"{self.env.now:.3f}s {text}")
        self.trace.event(self.env.now, f"VIOLATION {text}")

    # ------------------------------------------------------------ the network
    def _send(self, m: Message) -> None:
        self.counters.messages_sent += 1
        data: Any = encode(m) if self.codec else m
        delays = self._slowed(m.src, m.dst, self.network.fate(m.src, m.dst, self.rng))
        self.trace.message(self.env.now, m, len(delays))
        if not delays:
            self.counters.messages_dropped += 1
        for d in delays:
            ev = self.env.timeout(d)
            ev.callbacks.append(lambda _e, data=data, src=m.src, dst=m.dst: self._deliver(src, dst, data))

    def _slowed(self, src: str, dst: str, delays: list[float]) -> list[float]:
        """A slow node's links: its messages both ways take 1/speed times as long."""
        if not self.speed:
            return delays
        speed = min(self.speed.get(src, 1.0), self.speed.get(dst, 1.0))
        return [d / speed for d in delays]

    def send_data(self, src: str, dst: str, data: Any, deliver: Callable[[str, str, Any], None]) -> None:
        """A data-layer message on the same simulated network as Raft's (latency, loss, cuts)."""
        self.counters.messages_sent += 1
        delays = self._slowed(src, dst, self.network.fate(src, dst, self.rng))
        if not delays:
            self.counters.messages_dropped += 1
        for d in delays:
            ev = self.env.timeout(d)
            ev.callbacks.append(lambda _e: deliver(src, dst, data))

    def deliver_data(self, src: str, dst: str, data: Any) -> None:
        """A data-layer message reaching node ``dst``: dropped if it is down or cut off, held while paused."""
        node = self.nodes.get(dst)
        if node is None or not node.alive or not self.network.reachable(src, dst):
            self.counters.messages_dropped += 1
            return
        if node.paused:
            node.inbox.append(DataMessage(src, data))
            return
        self._step(node, DataMessage(src, data))

    def _deliver(self, src: str, dst: str, data: Any) -> None:
        node = self.nodes.get(dst)
        if node is None or not node.alive or not self.network.reachable(src, dst):
            self.counters.messages_dropped += 1  # cut while in flight, or nobody listening
            return
        if node.paused:
            node.inbox.append(data)
            return
        self._step(node, data)

    def _step(self, node: SimNode, data: Any) -> None:
        self.counters.messages_delivered += 1
        if isinstance(data, DataMessage):
            assert self.data_layer is not None
            self.data_layer.deliver(node, data.src, data.data)
            return
        host = node.host
        errors = host.step_errors
        host.step(decode(data) if self.codec else data)
        if host.step_errors != errors:  # contained on a real node; a bug to report here
            self.violation(f"{node.id}: stepping a message raised (step_errors {host.step_errors})")
        self._kick(node)

    # ------------------------------------------------------------ hooks: the data layer copies
    def _node_event_seen(self, event: Any) -> None:
        key = (event.kind, event.node.id, event.epoch)
        if key in self._node_events:
            return  # every node fires it: count it once
        self._node_events.add(key)
        if event.kind == "failure":
            self.counters.marked_failed += 1
            self._failed_once.add(event.node.id)
            self.trace.event(self.env.now, f"{event.node.id} marked failed at epoch {event.epoch}")
        elif event.kind == "join" and event.node.id in self._failed_once:
            self.counters.rejoins += 1
            self.trace.event(self.env.now, f"{event.node.id} rejoined at epoch {event.epoch}")

    def _rebalance_seen(self, event: Any) -> None:
        if event.epoch not in self._rebalances:
            self._rebalances.add(event.epoch)
            self.counters.rebalances += 1
            self.trace.event(self.env.now, f"rebalance at epoch {event.epoch} ({event.reason})")

    def _copy(self, node: SimNode, event: Any) -> None:
        if event.copy_to is None or event.copy_to.id != node.id or event.number in node.copying:
            return
        node.copying.add(event.number)
        self.env.process(self._copy_partition(node, event.number, node.generation))

    def start_copier(self, node: SimNode) -> None:
        """A node's data layer, for one life: besides the hooks, look every second for partitions
        this node must copy and isn't copying (a restarted node restored from a snapshot gets no
        events for changes the snapshot already holds: it reads its assignment instead)."""
        if self.data_layer is not None:
            self.data_layer.restart(node)  # the real data layer copies, and reconciles, by itself
            return
        self.env.process(self._reconcile(node, node.generation))

    def _reconcile(self, node: SimNode, generation: int):  # a SimPy process
        node.copying = set()
        while node.alive and node.generation == generation and not node.removed:
            state = node.kit.state
            if state.config is not None:
                for p in range(len(state.owners)):
                    if p not in node.copying and node.id in state.incoming(p):
                        node.copying.add(p)
                        self.env.process(self._copy_partition(node, p, generation))
            yield self.env.timeout(1.0)

    def _copy_partition(self, node: SimNode, partition: int, generation: int):  # a SimPy process
        """As a user's data layer would: copy for a while, then confirm; again until the map shows
        the copy confirmed (a forwarded confirmation can be lost), while this life lasts."""
        yield self.env.timeout(self.copy_time)
        while node.alive and node.generation == generation and not node.removed:
            state = node.kit.state
            if state.config is None or node.id not in state.incoming(partition):
                node.copying.discard(partition)
                if state.config is not None and node.id in state.owners[partition]:
                    self.counters.migrations += 1  # our copy is confirmed
                return
            try:
                node.kit.confirm_copy(partition)
                self._kick(node)
            except RaftError:
                pass
            yield self.env.timeout(1.0)

    # ------------------------------------------------------------ queries
    def leader(self) -> str | None:
        """The live leader with the highest term (the simulator's global view, for faults)."""
        best: tuple[int, str] | None = None
        for nid, node in self.nodes.items():
            raft = node.host.raft
            if node.alive and raft is not None and raft.is_leader and (best is None or raft.term > best[0]):
                best = (raft.term, nid)
        return best[1] if best else None

    def live(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.alive and not n.removed]

    def run(self, until: float) -> None:
        self.env.run(until=until)

    def submit(self, command: bytes, on_done: Callable[[Any], None] | None = None) -> bool:
        """Propose ``command`` on the current leader (tracked); False when there is none."""
        lead = self.leader()
        if lead is None:
            return False
        node = self.nodes[lead]
        try:
            proposal = node.host.propose(command)
        except RaftError:
            return False
        if on_done is not None:
            proposal.add_done_callback(on_done)
        self._kick(node)
        return True
