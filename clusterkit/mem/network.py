"""A deterministic in-memory network of Raft nodes, for tests, the demo and benchmarks.

Everything that could vary (delivery order, drops, duplicates, partitions,
one-way cuts, crashes, election timeouts) is chosen either by the caller or
by one seeded ``random.Random``: the same seed and the same calls give the
same run. It is not the SimPy simulator (no virtual clock, no latency
model): it is the smallest harness that can drive the core through every
interleaving.

Each node is a :class:`~clusterkit.host.NodeHost` drained by the Ready
:class:`~clusterkit.host.pipeline.Pipeline`, the same host and pipeline the
simulator and the TCP node run: this module only moves messages and decides
who ticks. Its disks sync at once, unless the caller stalls one
(:meth:`MemNetwork.stall`): then the node's pipeline waits, as on a slow
disk, while the node goes on taking messages, until :meth:`MemNetwork.unstall`.
An optional :class:`RaftSafetyMonitor` checks the Raft invariants after
every step.

By default the state machine of each node is an
:class:`~clusterkit.host.AppliedLog` (the list of entries it applied), so a
node restored from a snapshot can be compared entry by entry with one that
applied the log. A state machine above Raft (the cluster state, say) comes
from the ``machine`` factory.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..check.raft_safety import RaftSafetyMonitor
from ..host import AppliedLog, NodeHost, StateMachine
from ..host.machine import decode_applied, encode_applied
from ..host.observer import SafetyObserver
from ..host.pipeline import Pipeline
from ..host.syncs import INLINE, Done
from ..raft.errors import NotLeader, ProposalDropped
from ..raft.messages import ConfState, Entry, Message
from ..raft.ready import RaftConfig, Role
from ..raft.storage import MemoryStorage

__all__ = ["MemNetwork", "MemNode", "NetStats", "decode_applied", "encode_applied"]


class MemNode(NodeHost):
    """A node host with the test conveniences of the default state machine."""

    @property
    def applied(self) -> list[Entry]:
        machine = self.machine
        return machine.entries if isinstance(machine, AppliedLog) else []

    def applied_data(self) -> list[bytes]:
        machine = self.machine
        return machine.data() if isinstance(machine, AppliedLog) else []


class MemSyncs:
    """A memnet node's disk: a sync is done when started, unless the disk is stalled."""

    def __init__(self) -> None:
        self.stalled = False
        self.waiting: list[tuple[Callable[[], None], Done]] = []

    def start(self, work: Callable[[], None], done: Done) -> None:
        if self.stalled:
            self.waiting.append((work, done))
        else:
            INLINE.start(work, done)

    def release(self) -> None:
        self.stalled = False
        waiting, self.waiting = self.waiting, []
        for work, done in waiting:
            INLINE.start(work, done)


@dataclass
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    crashes: int = 0


class MemNetwork:
    def __init__(
        self,
        ids: Iterable[str],
        seed: int = 0,
        config: RaftConfig | None = None,
        drop_rate: float = 0.0,
        dup_rate: float = 0.0,
        monitor: RaftSafetyMonitor | None = None,
        on_event: Callable[[str], None] | None = None,
        auto_compact: bool = True,
        machine: Callable[[str], StateMachine] | None = None,
    ) -> None:
        self.ids = sorted(ids)
        if not self.ids:
            raise ValueError("a network needs at least one node")
        self.rng = random.Random(seed)
        self.config = config or RaftConfig()
        self.drop_rate = drop_rate
        self.dup_rate = dup_rate
        self.monitor = monitor
        self.on_event = on_event
        self.auto_compact = auto_compact  # take a snapshot whenever a node says one is due
        self.machine = machine or (lambda nid: AppliedLog())
        self.inflight: list[Message] = []
        self.blocked: set[tuple[str, str]] = set()  # (src, dst) links that lose everything
        self.stats = NetStats()
        self.proposals = 0
        self._observer = SafetyObserver(monitor) if monitor is not None else None
        self.nodes: dict[str, MemNode] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.disks: dict[str, MemSyncs] = {}
        conf = ConfState(voters=tuple(self.ids))
        for nid in self.ids:
            self.nodes[nid] = self._new_node(nid, MemoryStorage(conf), joining=False)

    # ------------------------------------------------------------ plumbing
    def _new_node(self, nid: str, storage: MemoryStorage, joining: bool) -> MemNode:
        monitor = self.monitor
        node = MemNode(
            nid,
            storage,
            self.machine(nid),
            self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            joining=joining,
            auto_compact=self.auto_compact,
            on_applied=(lambda e, nid=nid: monitor.applied_seen(nid, e)) if monitor is not None else None,
            on_event=self.on_event,
        )
        self.disks[nid] = disk = MemSyncs()
        self.pipelines[nid] = Pipeline(node, self._send_all, disk, idle=lambda: self.observe(nid))
        return node

    def _emit(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def add_node(self, nid: str) -> MemNode:
        """A new, empty node on the network. It joins the group once a leader adds it (e.g. ``add_learner``)."""
        if nid in self.nodes:
            raise ValueError(f"{nid} is already on the network")
        self.ids = sorted([*self.ids, nid])
        node = self.nodes[nid] = self._new_node(nid, MemoryStorage(), joining=True)
        return node

    def process(self, nid: str) -> None:
        """Drain every Ready of ``nid`` (the host persists, syncs, applies, advances); send what it says."""
        if self.nodes[nid].raft is not None:
            self.pipelines[nid].kick()

    def _send_all(self, messages: list[Message]) -> None:
        if self._observer is not None:
            self._observer.sent(messages)
        for m in messages:
            self._send(m)

    def _send(self, m: Message) -> None:
        self.stats.sent += 1
        if self.drop_rate and self.rng.random() < self.drop_rate:
            self.stats.dropped += 1
            return
        self.inflight.append(m)
        if self.dup_rate and self.rng.random() < self.dup_rate:
            self.stats.duplicated += 1
            self.inflight.append(m)

    def observe(self, nid: str) -> None:
        """Report ``nid``'s state to the monitor (if any)."""
        if self._observer is not None:
            self._observer.observe(self.nodes[nid])

    def check_logs(self) -> None:
        if self._observer is not None:
            self._observer.check_logs(self.nodes.values())

    # ------------------------------------------------------------- actions
    def tick(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.raft is not None:
            node.tick()
            self.process(nid)

    def tick_all(self) -> None:
        for nid in self.ids:
            self.tick(nid)

    def deliver(self, k: int = 0) -> bool:
        """Deliver the in-flight message at position ``k`` (modulo the queue length)."""
        if not self.inflight:
            return False
        m = self.inflight.pop(k % len(self.inflight))
        dst = self.nodes.get(m.dst)
        if dst is None or dst.raft is None or (m.src, m.dst) in self.blocked:
            self.stats.dropped += 1
            return True
        self.stats.delivered += 1
        dst.step(m)
        self.process(m.dst)
        return True

    def deliver_all(self, max_messages: int = 100_000) -> int:
        """Deliver in FIFO order until nothing is in flight (or the bound is hit)."""
        n = 0
        while self.inflight and n < max_messages:
            self.deliver(0)
            n += 1
        return n

    def drop(self, k: int = 0) -> None:
        if self.inflight:
            self.inflight.pop(k % len(self.inflight))
            self.stats.dropped += 1

    def duplicate(self, k: int = 0) -> None:
        if self.inflight:
            self.inflight.append(self.inflight[k % len(self.inflight)])
            self.stats.duplicated += 1

    def propose(self, nid: str, data: bytes) -> int | None:
        """Propose on ``nid``; returns the index on a leader, None if forwarded or refused."""
        node = self.nodes[nid]
        if node.raft is None:
            return None
        try:
            index = node.raft.propose(data)
        except (NotLeader, ProposalDropped):
            return None
        self.process(nid)
        return index

    def crash(self, nid: str, synced: bool = False) -> None:
        """Kill ``nid``. Its pending Ready is persisted but, unless ``synced``, not synced, so it is lost."""
        node = self.nodes[nid]
        if node.raft is None:
            return
        node.crash(synced)
        self.disks[nid].waiting.clear()  # a sync under way dies with the process
        self.stats.crashes += 1
        self._emit(f"{nid} crashed")

    def restart(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.raft is None:
            node.start()
            assert node.raft is not None
            self._emit(f"{nid} restarted at term {node.raft.term}")
            self.process(nid)

    def stall(self, nid: str) -> None:
        """``nid``'s disk stops completing syncs: the one under way (or the next) waits."""
        self.disks[nid].stalled = True

    def unstall(self, nid: str) -> None:
        """The stalled syncs complete (now, in order), and the node's pipeline goes on."""
        self.disks[nid].release()
        self.process(nid)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups; nodes not named form one more group."""
        sides: dict[str, int] = {}
        for g, members in enumerate(groups):
            for nid in members:
                sides[nid] = g
        rest = len(groups)
        self.blocked = {
            (a, b)
            for a in self.ids
            for b in self.ids
            if a != b and sides.get(a, rest) != sides.get(b, rest)
        }

    def cut(self, src: str, dst: str) -> None:
        """Lose everything ``src`` sends to ``dst`` (one way: ``dst`` still reaches ``src``)."""
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked = set()

    # ------------------------------------------------------------- queries
    def leaders(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.raft is not None and n.raft.role is Role.LEADER]

    def leader(self) -> str | None:
        """The leader with the highest term, if any."""
        best: tuple[int, str] | None = None
        for nid in self.leaders():
            term = self.nodes[nid].raft.term  # type: ignore[union-attr]
            if best is None or term > best[0]:
                best = (term, nid)
        return best[1] if best else None

    def up(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.raft is not None]

    def run_until(self, cond: Callable[[], bool], max_rounds: int = 500) -> bool:
        """Tick everyone and deliver everything, round after round, until ``cond()`` (bounded)."""
        for _ in range(max_rounds):
            if cond():
                return True
            self.tick_all()
            self.deliver_all()
        return cond()

    def elect(self, max_rounds: int = 500) -> str:
        """Run until there is a leader that a majority of nodes follows; return it."""

        def settled() -> bool:
            lead = self.leader()
            if lead is None:
                return False
            raft = self.nodes[lead].raft
            assert raft is not None
            followers = 0
            for v in raft.voters:
                other = self.nodes[v].raft if v in self.nodes else None
                if other is not None and other.leader == lead and other.term == raft.term:
                    followers += 1
            return followers >= raft.quorum()

        if not self.run_until(settled, max_rounds):
            raise TimeoutError(f"no stable leader after {max_rounds} rounds")
        return self.leader()  # type: ignore[return-value]

    # ------------------------------------------------------ random schedules
    def random_step(self, propose_rate: float = 0.1, fault_rate: float = 0.02) -> None:
        """One step chosen by the network's seed: deliver, tick, propose, or a fault."""
        r = self.rng.random()
        if r < fault_rate:
            self._random_fault()
        elif r < fault_rate + propose_rate:
            nid = self.rng.choice(self.ids)
            self.proposals += 1
            self.propose(nid, f"x{self.proposals}".encode())
        elif self.inflight and r < 0.75:
            self.deliver(self.rng.randrange(len(self.inflight)))
        else:
            self.tick(self.rng.choice(self.ids))

    def _random_fault(self) -> None:
        kind = self.rng.choice(("crash", "restart", "partition", "heal"))
        nid = self.rng.choice(self.ids)
        if kind == "crash":
            self.crash(nid, synced=self.rng.random() < 0.5)
        elif kind == "restart":
            self.restart(nid)
        elif kind == "partition":
            shuffled = list(self.ids)
            self.rng.shuffle(shuffled)
            cut = self.rng.randrange(1, len(shuffled)) if len(shuffled) > 1 else 1
            self.partition(shuffled[:cut])
            self._emit(f"partition {sorted(shuffled[:cut])} | {sorted(shuffled[cut:])}")
        elif self.blocked:
            self.heal()
            self._emit("healed")
