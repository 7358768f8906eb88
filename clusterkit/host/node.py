"""One node, as every driver runs it: Raft, storage, state machine, address book, requests.

The host is sans-IO like the Raft core. A driver feeds it messages
(:meth:`NodeHost.step`) and ticks (:meth:`NodeHost.tick`); the work they make
is drained by the one Ready pipeline (:mod:`.pipeline`), which calls the
host's steps of a Ready in the order the durability contract demands:
:meth:`NodeHost.begin` writes a Ready to storage, :meth:`NodeHost.apply_stable`
applies what is already durable while the disk syncs, and
:meth:`NodeHost.finish` does the rest (restore a received snapshot, apply,
serve reads, advance, compact when due). :meth:`NodeHost.process` runs that
pipeline at once, on a disk without latency. The memnet network, the SimPy
simulator and the TCP node run the same pipeline, so a fix here is a fix in
all of them.

The host also keeps the **address book** (node id -> transport address) in
the replicated state: addresses arrive in membership changes' contexts and
in host entries that a new leader appends for the addresses it knows but the
log doesn't, and snapshots carry the book, so a leader elected after
compaction still knows where its learners live.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from ..raft.confchange import ConfChangeType, decode_entry
from ..raft.errors import NotLeader, ProposalDropped
from ..raft.messages import Entry, EntryType, Message, ReadState
from ..raft.node import RaftNode
from ..raft.ready import RaftConfig, Ready, Role
from ..raft.storage import Storage, write_ready
from .machine import StateMachine
from .pipeline import Pipeline
from .requests import Proposal, ReadRequest

log = logging.getLogger("clusterkit.host")

# NORMAL entries whose data starts with this byte belong to the host, not the state machine.
# 0xc1 is the one byte msgpack never uses, so no msgpack-encoded command can start with it.
HOST_ENTRY = b"\xc1"
_NORMAL = int(EntryType.NORMAL)
_CONF_CHANGE = int(EntryType.CONF_CHANGE)
_SNAPSHOT_VERSION = 1
_LOGGED_STEP_ERRORS = 100  # a node logs this many messages that raised, then only counts them


def _settle(proposal: Proposal, e: Entry, result: Any) -> None:
    """End ``proposal`` by the entry committed at its index: ours (same term) or another's."""
    if e.term == proposal.term:
        proposal.result = result
        proposal._finish(True)
    else:
        proposal._finish(False, f"lost: another leader's entry took index {e.index}")


def is_host_entry(data: bytes) -> bool:
    return data[:1] == HOST_ENTRY


def wrap_snapshot(addresses: Mapping[str, str], machine: bytes) -> bytes:
    """A Raft snapshot as the host takes it: the address book and the state machine's image."""
    return msgpack.packb([_SNAPSHOT_VERSION, dict(addresses), machine], use_bin_type=True)


def unwrap_snapshot(data: bytes) -> tuple[dict[str, str], bytes]:
    """(address book, state machine image) of a host snapshot (``b""``: empty)."""
    if not data:
        return {}, b""
    version, addresses, machine = msgpack.unpackb(data, raw=False)
    if version != _SNAPSHOT_VERSION:
        raise ValueError(f"unknown host snapshot version {version!r}")
    return dict(addresses), machine


class NodeHost:
    """One node's Raft node, storage, state machine and requests. Not thread-safe: one driver task."""

    def __init__(
        self,
        node_id: str,
        storage: Storage,
        machine: StateMachine,
        config: RaftConfig | None = None,
        *,
        rng: random.Random | None = None,
        joining: bool = False,
        admitted: bool = True,
        address: str = "",
        peers: Mapping[str, str] | None = None,
        auto_compact: bool = True,
        on_applied: Callable[[Entry], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.machine = machine
        self.config = config or RaftConfig()
        self.rng = rng if rng is not None else random.Random(node_id)
        self.joining = joining
        self.admitted = admitted  # False: a wiped (or new) node the cluster has not taken in yet
        self.address = address
        self.peers = dict(peers or {})  # bootstrap members' addresses, from the driver's config
        self.auto_compact = auto_compact
        self.on_applied = on_applied  # every applied entry (the safety monitor watches these)
        self.on_event = on_event  # one line per event that matters (role changes, snapshots)
        self.raft: RaftNode | None = None
        self.addresses: dict[str, str] = {}
        self.read_states: list[ReadState] = []  # reads asked of the Raft node directly, confirmed
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        self.incarnation = 0  # starts so far: tells a restarted node's reads from its old ones
        self._proposals: dict[int, Proposal] = {}
        # Proposals whose entry our log lost to a truncation: their outcome stays unknown until it
        # is certain (see _settle_orphans). ``_displaced``: those whose index a newer proposal of ours
        # took meanwhile (both wait; the entry that commits at the index decides between them).
        self._orphans: dict[int, Proposal] = {}
        self._displaced: dict[int, Proposal] = {}
        self._applied_early = 0  # of the outstanding Ready's committed entries (apply_stable)
        self._truncations = 0  # raft.log.truncations when proposals were last checked against the log
        self._reads: dict[bytes, ReadRequest] = {}  # asked, waiting for the leader's answer
        self._confirmed: list[ReadRequest] = []  # answered, waiting for this node to apply their index
        self._serial = 0
        self.step_errors = 0  # peer messages dropped because stepping them raised
        self.applying_index = 0  # the index of the entry being applied (state-machine callbacks read it)
        if hasattr(machine, "attach"):
            machine.attach(self)  # the facade reads leadership and proposes through its host
        self.start()

    # ------------------------------------------------------------ lifecycle
    @property
    def up(self) -> bool:
        return self.raft is not None

    def start(self) -> None:
        """Start (or restart) from storage: restore the snapshot's state, then re-apply the log after it."""
        if self.raft is not None:
            return
        snap = self.storage.snapshot()
        self.addresses, image = unwrap_snapshot(snap.data)
        self.addresses.update({k: v for k, v in self.peers.items() if k not in self.addresses})
        self.machine.restore(image)
        self.raft = RaftNode(
            self.id,
            self.storage,
            self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            applied=snap.meta.index,
            joining=self.joining,
            admitted=self.admitted,
        )
        self._truncations = 0
        self.incarnation += 1

    def admit(self) -> None:
        """The cluster took this node in (its join answered, as a learner in the committed
        membership): from now on it may vote once promoted. The driver makes that durable."""
        self.admitted = True
        if self.raft is not None:
            self.raft.admitted = True

    def crash(self, synced: bool = False, keep_writes: int = 0, keep_entries: int = 0) -> None:
        """Stop as a kill would: a pending Ready is written but, unless ``synced``, not synced, so
        the storage loses it (all but a prefix of ``keep_writes`` writes and ``keep_entries``
        entries of the next, on a disk that tears writes). Volatile state goes; the caller of
        every open request is told."""
        raft = self.raft
        if raft is None:
            return
        if raft.has_ready():
            rd = raft.ready()
            write_ready(self.storage, rd)
            if synced:
                self.storage.sync()
        crash = getattr(self.storage, "crash", None)  # a simulated disk loses what wasn't synced
        if crash is not None:
            crash(keep_writes, keep_entries) if (keep_writes or keep_entries) else crash()
        self.raft = None
        self.machine.restore(b"")
        self.read_states = []
        self._end_requests("unknown: the node crashed")

    def stop(self) -> None:
        """A clean stop: everything written is synced first."""
        if self.raft is None:
            return
        self.process()
        self.raft = None
        self.machine.restore(b"")
        self._end_requests("unknown: the node stopped")

    def halt(self, why: str) -> None:
        """Stop at once, writing nothing more (the storage failed: what it holds is all there is).
        Volatile state goes; every open request ends as unknown."""
        if self.raft is None:
            return
        self.raft = None
        self.machine.restore(b"")
        self.read_states = []
        self._end_requests(f"unknown: {why}")

    def _end_requests(self, why: str) -> None:
        proposals, self._proposals = self._proposals, {}
        displaced, self._displaced = self._displaced, {}
        self._orphans = {}
        for p in [*proposals.values(), *displaced.values()]:
            p._finish(False, why)
        reads = [*self._reads.values(), *self._confirmed]
        self._reads, self._confirmed = {}, []
        for r in reads:
            r._finish(False, why)

    # ------------------------------------------------------------ inputs
    def step(self, m: Message) -> None:
        """Feed one peer message. Whatever one message raises is contained here, logged and
        counted (``step_errors``): a bad or hostile message must never stop a node's loop."""
        raft = self.raft
        if raft is None:
            return
        try:
            raft.step(m)
        except Exception as exc:  # noqa: BLE001 - one message must not stop the node
            self.step_errors += 1
            if self.step_errors <= _LOGGED_STEP_ERRORS:
                log.error("%s: dropped a %s from %s that raised %s: %s (%d so far)", self.id,
                          type(m).__name__, getattr(m, "src", "?"), type(exc).__name__, exc, self.step_errors)
                log.debug("the message's traceback", exc_info=True)

    def tick(self) -> None:
        if self.raft is None:
            return
        self.raft.tick()
        tick = getattr(self.machine, "tick", None)
        if tick is not None:
            tick()

    def propose(self, data: bytes) -> Proposal:
        """Append ``data`` as leader; the :class:`Proposal` ends when its entry applies here.

        Raises NotLeader (with ``.leader``) on any other node: the caller forwards the request to
        the leader, which can tell it the outcome; ProposalDropped when the leader refuses it.
        """
        raft = self._live()
        self._check_data(data)
        if not raft.is_leader:
            raise NotLeader(self.id, raft.leader)
        index = raft.propose(data)
        assert index is not None
        proposal = Proposal(index=index, term=raft.term)
        old = self._proposals.get(index)
        if old is not None:
            self._displaced[index] = old
        self._proposals[index] = proposal
        return proposal

    def propose_batch(self, batch: list[bytes]) -> list[Proposal]:
        """:meth:`propose` for many entries at once, in order: one Raft append for all of them. All
        or nothing: an error (as :meth:`propose`'s) refuses the whole batch."""
        raft = self._live()
        for data in batch:
            if type(data) is not bytes or data[:1] == HOST_ENTRY:
                self._check_data(data)  # raises the error
        if not raft.is_leader:
            raise NotLeader(self.id, raft.leader)
        span = raft.propose_batch(batch)
        if span is None:
            return []
        term = raft.term
        proposals = [Proposal(index=index, term=term) for index in range(span[0], span[1] + 1)]
        if self._orphans:
            for index in range(span[0], span[1] + 1):
                old = self._proposals.get(index)
                if old is not None:
                    self._displaced[index] = old
        self._proposals.update(zip(range(span[0], span[1] + 1), proposals))
        return proposals

    def submit(self, data: bytes) -> Proposal | None:
        """Propose from any node: tracked on the leader, forwarded by Raft (fire and forget: None)
        on a follower. For commands that are safe to repeat, like the facade's."""
        raft = self._live()
        if raft.is_leader:
            return self.propose(data)
        self._check_data(data)
        raft.propose(data)
        return None

    def read(self) -> ReadRequest:
        """A linearizable read: done once confirmed by the leader and applied here."""
        raft = self._live()
        self._serial += 1
        context = b"%s/%d/%d" % (self.id.encode(), self.incarnation, self._serial)
        raft.read_index(context)
        req = ReadRequest(context=context)
        self._reads[context] = req
        return req

    def _live(self) -> RaftNode:
        if self.raft is None:
            raise NotLeader(self.id, None)
        return self.raft

    def check_proposal(self, data: bytes) -> None:
        """Raise what :meth:`propose` would for ``data`` itself (not for the node's state): TypeError,
        ValueError for the host's reserved byte, ProposalDropped when over ``max_entry_bytes``."""
        self._check_data(data)
        if len(data) > self.config.max_entry_bytes:
            raise ProposalDropped(
                f"proposal of {len(data)} bytes exceeds max_entry_bytes={self.config.max_entry_bytes}"
            )

    @staticmethod
    def _check_data(data: bytes) -> None:
        if type(data) is not bytes:
            raise TypeError(f"a proposal must be bytes, got {type(data).__name__}")
        if is_host_entry(data):
            raise ValueError("proposals may not start with byte 0xc1 (reserved for the host's own entries)")

    # ------------------------------------------------------------ state
    @property
    def is_leader(self) -> bool:
        return self.raft is not None and self.raft.is_leader

    @property
    def leader(self) -> str | None:
        return self.raft.leader if self.raft is not None else None

    def peer_silence(self, node_id: str) -> int | None:
        """On the leader: ticks since ``node_id`` last answered (None elsewhere, or for a node
        Raft doesn't track). The facade's failure detector reads it."""
        raft = self.raft
        if raft is None or not raft.is_leader or node_id == self.id:
            return None
        pr = raft.progress.get(node_id)
        return pr.inactive_ticks if pr is not None else None

    def peer_heard(self, node_id: str) -> bool:
        """On the leader: ``node_id`` has answered since this node became leader. A new leader's
        progress starts at 0 silent ticks, which must not pass for having heard a dead node."""
        raft = self.raft
        pr = raft.progress.get(node_id) if raft is not None and raft.is_leader else None
        return pr is not None and pr.heard

    @property
    def applied_index(self) -> int:
        return self.raft.log.applied if self.raft is not None else 0

    # ------------------------------------------------------------ the Ready loop
    def has_ready(self) -> bool:
        return self.raft is not None and self.raft.has_ready()

    def process(self) -> list[Message]:
        """Drain every Ready now (the pipeline, its syncs done inline); the messages to send."""
        out: list[Message] = []
        Pipeline(self, out.extend).kick()
        return out

    def begin(self) -> Ready | None:
        """Take the next Ready and write it to storage (not synced: the driver syncs when
        ``rd.must_sync()``, then calls :meth:`finish`). None when there is nothing to do."""
        raft = self.raft
        if raft is None or not raft.has_ready():
            return None
        rd = raft.ready()
        write_ready(self.storage, rd)
        self._applied_early = 0
        return rd

    def apply_stable(self, rd: Ready) -> int:
        """Optional, between :meth:`begin` and :meth:`finish` (while the driver syncs ``rd``): apply
        the committed entries of ``rd`` that an earlier sync already made durable here (at or below
        the log's stable index); :meth:`finish` applies the rest. A committed entry needs nothing of
        this Ready's sync, so its proposal need not wait for the fsync of the entries proposed since
        (under a steady stream of proposals, every Ready carries both). How many it applied."""
        raft = self.raft
        entries = rd.committed_entries
        if raft is None or rd.snapshot is not None or not entries:
            return 0
        # Committed entries have consecutive indexes: those up to the stable index are a prefix.
        early = self._applied_early
        upto = min(len(entries), raft.log.stable - entries[0].index + 1)
        if upto <= early:
            return 0
        self._apply_entries(entries[early:upto])
        self._applied_early = upto
        return upto - early

    def finish(self, rd: Ready) -> list[Message]:
        """After the sync: apply ``rd``, advance, compact when due; the messages to send."""
        raft = self.raft
        if raft is None:
            return []  # crashed while the disk was syncing: nothing of it leaves
        if rd.snapshot is not None:
            self._install(rd.snapshot.meta.index, rd.snapshot.data)
        early, self._applied_early = self._applied_early, 0
        if rd.committed_entries:
            self._apply_entries(rd.committed_entries[early:] if early else rd.committed_entries)
        for rs in rd.read_states:
            req = self._reads.pop(rs.context, None)
            if req is None:
                self.read_states.append(rs)
            else:
                req.index = rs.index
                self._confirmed.append(req)
        raft.advance(rd)
        if raft.log.truncations != self._truncations:
            self._truncations = raft.log.truncations
            if self._proposals:
                self._note_truncated(raft)
        if self._orphans:
            self._settle_orphans(raft)
        if self._confirmed:
            self._serve_reads()
        if rd.soft_state is not None:
            self._role_changed(raft)
        if self.auto_compact and raft.snapshot_due():
            self.take_snapshot()
        return rd.messages

    def take_snapshot(self) -> None:
        """Snapshot the state machine (and the address book) at the applied index; compact the log."""
        raft = self._live()
        raft.compact(raft.log.applied, wrap_snapshot(self.addresses, self.machine.snapshot()))
        self.snapshots_taken += 1

    def _install(self, index: int, data: bytes) -> None:
        self.addresses, image = unwrap_snapshot(data)
        self.machine.restore(image)
        self.snapshots_installed += 1
        self._emit(f"{self.id} installed a snapshot at {index}")
        for pending in (self._proposals, self._displaced):
            for i in [i for i in pending if i <= index]:
                self._orphans.pop(i, None)
                pending.pop(i)._finish(False, "unknown: a snapshot replaced the log")

    def _note_truncated(self, raft: RaftNode) -> None:
        """Note the proposals whose entry our log no longer holds. That is not a failure yet: the
        entry may be on another node that wins an election and commits it (we only lost it to a
        leader that lacked it). _settle_orphans ends them once their fate is certain."""
        log = raft.log
        for i, p in self._proposals.items():
            if i > log.offset and log.term(i) != p.term:
                self._orphans[i] = p

    def _settle_orphans(self, raft: RaftNode) -> None:
        """End the orphans whose outcome is now certain. Applying their index settles those at or
        below the applied index (_apply_entries). One above it can still commit only if no entry of
        a later term has committed: every future leader holds the committed entry, and a log's
        terms never decrease along its indexes, so an entry of an older term can't come after it.
        Without this an orphan at an index no later entry takes (an idle cluster) would wait
        forever."""
        log = raft.log
        applied = log.applied
        applied_term = log.term(applied) or 0
        for i, p in list(self._orphans.items()):
            if p.done:
                del self._orphans[i]
            elif i > applied and applied_term > p.term:
                del self._orphans[i]
                if self._proposals.get(i) is p:
                    del self._proposals[i]
                elif self._displaced.get(i) is p:
                    del self._displaced[i]
                p._finish(False, f"lost: entry {i} of term {p.term} can no longer commit "
                                 f"(an entry of term {applied_term} committed)")

    def _apply(self, e: Entry) -> None:
        self._apply_entries([e])

    def _apply_entries(self, entries: list[Entry]) -> None:
        """Apply committed entries in order, and end the proposals they answer."""
        apply_entry = self.machine.apply_entry
        on_applied = self.on_applied
        proposals = self._proposals
        for e in entries:
            result: Any = None
            etype = e.type
            self.applying_index = e.index
            if etype == _NORMAL and e.data[:1] == HOST_ENTRY:
                self._apply_host_entry(e.data)
            else:
                if etype == _CONF_CHANGE:
                    self._apply_conf_change(e.data)
                result = apply_entry(e)
            if on_applied is not None:
                on_applied(e)
            if proposals:
                proposal = proposals.pop(e.index, None)
                if proposal is not None:
                    _settle(proposal, e, result)
                    if self._displaced:
                        older = self._displaced.pop(e.index, None)
                        if older is not None:
                            _settle(older, e, result)

    def _apply_conf_change(self, data: bytes) -> None:
        cc, _ = decode_entry(data)
        if cc.op == ConfChangeType.REMOVE:
            self.addresses.pop(cc.node, None)
        elif cc.context:
            self.addresses[cc.node] = cc.context.decode("utf-8", "replace")

    def _apply_host_entry(self, data: bytes) -> None:
        try:
            body = msgpack.unpackb(data[1:], raw=False)
            addresses = body["addresses"]
            if not all(type(k) is str and type(v) is str for k, v in addresses.items()):
                raise TypeError("addresses must map str to str")
        except Exception as exc:  # noqa: BLE001 - a bad entry must not stop the node
            log.error("%s: ignoring a malformed host entry: %s", self.id, exc)
            return
        self.addresses.update(addresses)

    def _serve_reads(self) -> None:
        applied = self.applied_index
        waiting = []
        for req in self._confirmed:
            if req.index <= applied:
                req._finish(True)
            else:
                waiting.append(req)
        self._confirmed = waiting

    def _role_changed(self, raft: RaftNode) -> None:
        if raft.role is Role.LEADER:
            self._emit(f"{self.id} leads term {raft.term}")
            self._record_addresses(raft)

    def _record_addresses(self, raft: RaftNode) -> None:
        """A new leader appends the addresses it knows that the replicated book lacks."""
        known = dict(self.peers)
        if self.address:
            known[self.id] = self.address
        missing = {k: v for k, v in sorted(known.items()) if self.addresses.get(k) != v}
        if missing:
            raft.propose(HOST_ENTRY + msgpack.packb({"addresses": missing}, use_bin_type=True))

    def _emit(self, text: str) -> None:
        log.debug(text)
        if self.on_event is not None:
            self.on_event(text)
