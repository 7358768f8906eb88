"""A deterministic in-memory network of Raft nodes, for tests, the demo and benchmarks.

Everything that could vary (delivery order, drops, duplicates, partitions,
crashes, election timeouts) is chosen either by the caller or by one seeded
``random.Random``: the same seed and the same calls give the same run. It is
not the SimPy simulator (no virtual clock, no latency model): it is the
smallest harness that can drive the core through every interleaving.

Every node is driven exactly as a real driver would: take the Ready, write
it to its :class:`MemoryStorage`, sync, send, restore a received snapshot,
apply, advance, and take a snapshot of its state machine when the node says
one is due. An optional :class:`RaftSafetyMonitor` checks the Raft
invariants after every step.

By default the state machine of each node is the list of entries it
applied; its snapshot is that list, msgpack-encoded, so a node restored from
a snapshot can be compared entry by entry with one that applied the log. A
state machine above Raft (the cluster state, say) brings its own
``snapshot_of`` and ``restore``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgpack

from ..check.raft_safety import RaftSafetyMonitor
from ..raft.errors import NotLeader, ProposalDropped
from ..raft.messages import ConfState, Entry, EntryType, Message, ReadState
from ..raft.node import RaftNode
from ..raft.ready import RaftConfig, Role
from ..raft.storage import MemoryStorage, write_ready


def encode_applied(entries: list[Entry]) -> bytes:
    """The in-memory state machine's snapshot: every applied entry."""
    return msgpack.packb([[e.term, e.index, e.data, e.type] for e in entries], use_bin_type=True)


def decode_applied(data: bytes) -> list[Entry]:
    if not data:
        return []
    return [Entry(t, i, d, k) for t, i, d, k in msgpack.unpackb(data, raw=False)]


@dataclass
class MemNode:
    id: str
    storage: MemoryStorage
    raft: RaftNode | None  # None while crashed
    applied: list[Entry] = field(default_factory=list)  # the state machine: every applied entry in order
    read_states: list[ReadState] = field(default_factory=list)  # reads confirmed, in order
    snapshots_taken: int = 0
    snapshots_installed: int = 0

    @property
    def up(self) -> bool:
        return self.raft is not None

    def applied_data(self) -> list[bytes]:
        return [e.data for e in self.applied if e.type == EntryType.NORMAL]


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
        on_apply: Callable[[str, Entry], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        auto_compact: bool = True,
        snapshot_of: Callable[[str], bytes] | None = None,
        restore: Callable[[str, bytes], None] | None = None,
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
        self.on_apply = on_apply  # a state machine above Raft: called for every applied entry
        self.on_restart = on_restart  # ... and told when a node restarts (it re-applies from its log)
        self.auto_compact = auto_compact  # take a snapshot whenever a node says one is due
        # The state machine's image for a snapshot, and restoring one (at a restart, or received).
        self.snapshot_of = snapshot_of or (lambda nid: encode_applied(self.nodes[nid].applied))
        self.restore = restore or self._restore_applied
        self._joiners: set[str] = set()  # nodes added after bootstrap: they start with no membership
        self.inflight: list[Message] = []
        self.blocked: set[tuple[str, str]] = set()  # (src, dst) links that lose everything
        self.stats = NetStats()
        self.proposals = 0
        self._commit_reported: dict[str, int] = {}  # per node: last committed index shown to the monitor
        self.nodes: dict[str, MemNode] = {}
        conf = ConfState(voters=tuple(self.ids))
        for nid in self.ids:
            storage = MemoryStorage(conf)
            self.nodes[nid] = MemNode(nid, storage, self._new_raft(nid, storage))

    # ------------------------------------------------------------ plumbing
    def _new_raft(self, nid: str, storage: MemoryStorage) -> RaftNode:
        return RaftNode(
            nid,
            storage,
            self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            applied=storage.snapshot().meta.index,
            joining=nid in self._joiners,
        )

    def _emit(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def _restore_applied(self, nid: str, data: bytes) -> None:
        self.nodes[nid].applied = decode_applied(data)

    def add_node(self, nid: str) -> MemNode:
        """A new, empty node on the network. It joins the group once a leader adds it (e.g. ``add_learner``)."""
        if nid in self.nodes:
            raise ValueError(f"{nid} is already on the network")
        self._joiners.add(nid)
        self.ids = sorted([*self.ids, nid])
        storage = MemoryStorage()
        node = self.nodes[nid] = MemNode(nid, storage, self._new_raft(nid, storage))
        return node

    def process(self, nid: str) -> None:
        """Drain every Ready of ``nid``: persist, sync, send, apply, advance."""
        node = self.nodes[nid]
        raft = node.raft
        if raft is None:
            return
        while raft.has_ready():
            rd = raft.ready()
            if write_ready(node.storage, rd):
                node.storage.sync()
            for m in rd.messages:
                self._send(m)
            if rd.snapshot is not None:
                node.applied = []
                self.restore(nid, rd.snapshot.data)
                node.snapshots_installed += 1
            for e in rd.committed_entries:
                node.applied.append(e)
                if self.monitor is not None:
                    self.monitor.applied_seen(nid, e)
                if self.on_apply is not None:
                    self.on_apply(nid, e)
            node.read_states.extend(rd.read_states)
            if rd.soft_state is not None and rd.soft_state.role is Role.LEADER:
                self._emit(f"{nid} leads term {raft.term}")
            raft.advance(rd)
            if self.auto_compact and raft.snapshot_due():
                raft.compact(raft.log.applied, self.snapshot_of(nid))
                node.snapshots_taken += 1
        self.observe(nid)

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
        mon = self.monitor
        raft = self.nodes[nid].raft
        if mon is None or raft is None:
            return
        if raft.role is Role.LEADER:
            mon.leader_seen(nid, raft.term)
        log = raft.log
        # Every node's committed entries are compared, each once per node lifetime.
        first_new = max(log.offset, self._commit_reported.get(nid, 0)) + 1
        if log.committed >= first_new:
            mon.committed_seen(nid, raft.term, log.slice(first_new, log.committed + 1))
            self._commit_reported[nid] = log.committed
        if raft.role is Role.LEADER:
            mon.check_leader_completeness(nid, raft.term, log.offset, log.entries)

    def check_logs(self) -> None:
        if self.monitor is not None:
            self.monitor.check_log_matching(
                {nid: (n.raft.log.offset, n.raft.log.entries) for nid, n in self.nodes.items() if n.raft is not None}
            )

    # ------------------------------------------------------------- actions
    def tick(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.raft is not None:
            node.raft.tick()
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
        dst.raft.step(m)
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
        if node.raft.has_ready():
            rd = node.raft.ready()
            write_ready(node.storage, rd)
            if synced:
                node.storage.sync()
        node.storage.crash()
        node.raft = None
        node.applied = []
        node.read_states = []
        self.stats.crashes += 1
        self._emit(f"{nid} crashed")

    def restart(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.raft is None:
            node.raft = self._new_raft(nid, node.storage)
            node.applied = []
            self._commit_reported[nid] = 0  # a restarted node re-reports what it reloaded
            if self.on_restart is not None:
                self.on_restart(nid)
            self.restore(nid, node.storage.snapshot().data)  # then the log after it is re-applied
            self._emit(f"{nid} restarted at term {node.raft.term}")
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
        else:
            self.heal()
            self._emit("healed")
