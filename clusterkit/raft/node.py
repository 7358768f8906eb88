"""The Raft consensus state machine (sans-IO).

Inputs: :meth:`RaftNode.step` (a message from a peer), :meth:`RaftNode.tick`
(one unit of logical time), :meth:`RaftNode.propose` (new data). Output: a
:class:`~.ready.Ready` from :meth:`RaftNode.ready`, acknowledged with
:meth:`RaftNode.advance`. The node never touches a socket, a clock, a file or
a global random generator, so the simulator, the asyncio driver and the tests
all drive the same object the same way.

Follows the Raft paper and etcd's raft: PreVote (§9.6 of Ongaro's thesis),
CheckQuorum, commit only of current-term entries (§5.4.2), fast log
backtracking with conflict-term hints, pipelined appends per follower;
single-server membership changes with learners (thesis §4, with the 2015
errata fix), snapshots with chunked InstallSnapshot, leadership transfer
(TimeoutNow, thesis §3.10) and linearizable reads by ReadIndex (§6.4).
"""

from __future__ import annotations

import random
from typing import Any

from .confchange import ConfChange, ConfChangeType, apply_change, decode_entry, encode_entry
from .errors import ConfigError, NotLeader, ProposalDropped, RaftError, StorageError
from .log import RaftLog
from .membership import next_membership_change
from .messages import (
    MAX_NUMBER,
    AppendEntries,
    AppendResponse,
    CommitNotice,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    ReadState,
    RequestVote,
    Snapshot,
    SnapshotMeta,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from .progress import OwnProgress, Progress, ProgressState
from .reads import ReadQueue
from .ready import Compaction, RaftConfig, Ready, Role, SoftState
from .snapshot_buffer import SnapshotBuffer
from .storage import Storage

_MESSAGE_TYPES = (
    AppendEntries,
    AppendResponse,
    RequestVote,
    VoteResponse,
    Heartbeat,
    HeartbeatResponse,
    Propose,
    InstallSnapshot,
    SnapshotResponse,
    TimeoutNow,
    ReadIndex,
    ReadIndexResponse,
    CommitNotice,
)
_MAX_TERM = MAX_NUMBER - 1  # the highest term a node may adopt is one below this: it can still campaign
# A term more than this far ahead of ours is refused: a hostile peer would need 2**30 adopted
# messages to walk a cluster up to the ceiling, while a node cut off for years, campaigning
# twice a second without pre-vote, stays far below the jump.
_MAX_TERM_JUMP = 1 << 32
# What a node not yet taken in keeps to itself (it still writes what it is sent, and answers votes,
# with a refusal): a leader would count these toward its commits and its read quorums.
_ACKS = (AppendResponse, HeartbeatResponse, SnapshotResponse)
_MAX_DEFERRED_CHANGES = 16  # forwarded membership changes a leader queues while another is in flight
# Messages only a leader sends: receiving one of a newer term means that sender leads it.
_FROM_LEADER = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow, CommitNotice)
# Messages a follower takes as its leader's sign of life (they reset its election timer).
_LEADER_SIGNS = (AppendEntries, Heartbeat, InstallSnapshot, CommitNotice)


class RaftNode:
    """One member of a Raft group. Not thread-safe: a driver owns it from one task."""

    def __init__(
        self,
        node_id: str,
        storage: Storage,
        config: RaftConfig | None = None,
        rng: random.Random | None = None,
        applied: int = 0,
        joining: bool = False,
        admitted: bool = True,
    ) -> None:
        """``applied``: how far a durable state machine has already applied (it restores itself
        from ``storage.snapshot()`` first, so at least the snapshot's index). ``joining``: the
        storage holds no membership yet; the node waits for a leader to send it the log.
        ``admitted=False``: the node lost (or never had) its state and the cluster has not taken it
        in as a new member yet: it grants no vote and never campaigns (see :attr:`admitted`)."""
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError("node_id must be a non-empty string")
        self.id = node_id
        self.config = config or RaftConfig()
        # Injected so that a seeded run replays exactly; never the module global.
        self.rng = rng if rng is not None else random.Random(node_id)
        self.storage = storage

        hs, cs = storage.initial_state()
        snap = storage.snapshot()
        first, last = storage.first_index(), storage.last_index()
        offset = first - 1
        if offset > snap.meta.index:
            raise ConfigError(
                f"storage compacted its log to {offset} but its snapshot covers only {snap.meta.index}"
            )
        offset_term = storage.term(offset) if offset > 0 else 0
        self.log = RaftLog(storage.entries(first, last + 1), offset=offset, offset_term=offset_term)
        commit = max(hs.commit, snap.meta.index)
        if commit > self.log.last_index():
            raise ConfigError(f"stored commit {commit} is beyond the stored log ({self.log.last_index()})")
        self.log.committed = commit
        self.log.applied = min(max(applied, snap.meta.index, offset), commit)
        self.snapshot: Snapshot | None = snap if snap.meta.index > 0 else None
        # Membership before the first CONF_CHANGE entry of the log held.
        self._base_conf = snap.meta.conf if self.snapshot is not None else cs
        self.voters: tuple[str, ...] = ()
        self.learners: tuple[str, ...] = ()
        self.role = Role.FOLLOWER
        self._conf_key = (-1, -1)  # (index, term) of the entry the membership came from
        self._refresh_conf(force=True)
        if not self.voters and not joining:
            raise ConfigError("storage holds no voters: bootstrap it with a ConfState, or pass joining=True")

        self.term = hs.term
        self.vote: str | None = hs.vote
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.msgs: list[Message] = []
        # Leader: per follower, its last append among ``msgs`` with entries, and their bytes (until
        # the next Ready hands ``msgs`` out): new entries for it may join that append.
        self._unsent_appends: dict[str, tuple[AppendEntries, int]] = {}
        self._bcast_pending = False  # leader: proposals appended since the last Ready, not yet sent
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self.uncommitted_bytes = 0
        self.dropped_proposals = 0
        self.refused_terms = 0  # messages dropped for a term no node could ever advance past
        # A node whose id may still be a voter but whose disk was wiped has forgotten its votes and
        # the entries it acknowledged: its vote could elect a leader that lacks a committed entry.
        # It votes (and campaigns) only once the cluster has taken it in again, as a learner.
        self.admitted = admitted
        self.dropped_reads = 0
        self._lead_transferee: str | None = None
        self._transfer_elapsed = 0
        # With lease reads, a restarted node may have promised a leader its lease and forgotten it:
        # it refuses votes for a full election timeout after starting, as if it had just heard from one.
        self._startup_lease = self.config.election_ticks if self.config.lease_reads else 0
        self._ticks_since_start = 0
        self._leave_pending: ConfChange | None = None  # removal of ourselves, to forward after a transfer
        self._departed: list[str] = []  # leader: removed members still sent the log until they know
        self._deferred_changes: list[ConfChange] = []  # leader: forwarded changes that must wait their turn
        self._reads = ReadQueue()
        self._ticks = 0  # ticks since this node started: the leader's clock for its lease
        self._commit_told = 0  # leader: the commit index a heartbeat (or broadcast) last carried
        self._round = 0  # leader: the last heartbeat round sent (reads and lease wait on rounds)
        self._round_sent: dict[int, int] = {}  # leader: recent rounds -> the tick they were sent at
        self._snap_buffer: SnapshotBuffer | None = None  # follower: a snapshot arriving in chunks
        self._install: Snapshot | None = None  # received, for the next Ready
        self._compaction: Compaction | None = None  # taken locally, for the next Ready

        self._prev_hard_state = hs
        self._prev_soft_state = SoftState(None, Role.FOLLOWER)
        self._ready_outstanding = False
        self._become_follower(self.term, None)

    # ------------------------------------------------------------------ API
    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def conf_state(self) -> ConfState:
        return ConfState(self.voters, self.learners)

    def committed_conf_state(self) -> ConfState:
        """The membership as of the commit index (``conf_state`` may hold an uncommitted change)."""
        return self._conf_at(self.log.committed)

    @property
    def removed(self) -> bool:
        """This node's removal from the group has committed: its driver may shut it down."""
        return (
            self.id not in self.voters
            and self.id not in self.learners
            and 0 < self._conf_key[0] <= self.log.committed
        )

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._ticks += 1
        if self._ticks_since_start < self._startup_lease:
            self._ticks_since_start += 1
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def campaign(self) -> None:
        """Start an election now (skipping PreVote), as a timeout would."""
        if self.role is not Role.LEADER and self._may_campaign():
            self._campaign(pre_vote=False)

    def propose(self, data: bytes) -> int | None:
        """Propose one entry. Returns its log index on the leader, None when forwarded."""
        span = self.propose_batch([data])
        return span[0] if span else None

    def propose_batch(self, batch: list[bytes]) -> tuple[int, int] | None:
        """Propose many entries at once. Returns (first, last) index on the leader, None when forwarded.

        Raises NotLeader when there is no leader to forward to (or forwarding is
        off), ProposalDropped when an entry is too large, the backlog is full or
        leadership is being transferred, TypeError when an entry is not bytes.
        """
        size = 0
        for data in batch:
            if type(data) is not bytes:
                raise TypeError(f"a proposal must be bytes, got {type(data).__name__}")
            if len(data) > self.config.max_entry_bytes:
                raise ProposalDropped(
                    f"proposal of {len(data)} bytes exceeds max_entry_bytes={self.config.max_entry_bytes}"
                )
            size += len(data)
        if not batch:
            return None
        if self.role is Role.LEADER:
            if self._lead_transferee is not None:
                raise ProposalDropped(f"leadership is being transferred to {self._lead_transferee}")
            return self._leader_append(batch, size)
        if self.leader is not None and self.config.forward_proposals:
            ents = [Entry(0, 0, d) for d in batch]
            self.msgs.append(Propose(0, self.id, self.leader, ents))
            return None
        raise NotLeader(self.id, self.leader)

    # -- membership ----------------------------------------------------------
    def propose_conf_change(self, cc: ConfChange) -> int | None:
        """Propose a single-server membership change. Returns its index on the leader, None when forwarded.

        Refused with ProposalDropped while another change is uncommitted, before
        the leader has committed an entry of its own term (the fix for the
        single-server change bug), or during a leadership transfer; with
        ConfigError when the change does nothing, would leave no voter, or would
        exceed ``max_voters`` (add the node as a learner instead).
        """
        if self.role is Role.LEADER:
            new = apply_change(self.conf_state, cc)
            limit = self.config.max_voters
            if cc.op == ConfChangeType.ADD_VOTER and limit and len(new.voters) > limit:
                raise ConfigError(
                    f"{len(self.voters)} voters already (max_voters={limit}): add {cc.node} as a learner"
                )
            if cc.op == ConfChangeType.REMOVE and cc.node == self.id and len(self.voters) > 1:
                # Leaving gracefully: hand leadership over first, then ask the new leader.
                self._leave_pending = cc
                self.transfer_leadership()
                return None
            return self._append_conf_change(cc, new)
        if self.leader is not None and self.config.forward_proposals:
            data = encode_entry(cc, apply_change(self.conf_state, cc))
            self.msgs.append(Propose(0, self.id, self.leader, [Entry(0, 0, data, EntryType.CONF_CHANGE)]))
            return None
        raise NotLeader(self.id, self.leader)

    def add_learner(self, node_id: str, context: bytes = b"") -> int | None:
        """Add a node that receives the log but does not vote; the leader promotes it once caught up."""
        return self.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node_id, context))

    def add_voter(self, node_id: str, context: bytes = b"") -> int | None:
        """Add a voter, or promote a learner."""
        return self.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, node_id, context))

    def remove_node(self, node_id: str) -> int | None:
        """Remove a node. A leader removing itself transfers leadership first."""
        return self.propose_conf_change(ConfChange(ConfChangeType.REMOVE, node_id))

    # -- leadership transfer ---------------------------------------------------
    def transfer_leadership(self, to: str | None = None) -> str:
        """Hand leadership to voter ``to`` (default: the most caught-up one); returns the target.

        Proposals are refused until the target has taken over or the transfer
        is abandoned after an election timeout.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader)
        if to is None:
            others = [v for v in self.voters if v != self.id]
            if not others:
                raise ConfigError("no other voter to transfer leadership to")
            to = max(others, key=lambda v: (self.progress[v].match, -self.progress[v].inactive_ticks, v))
        if to == self.id:
            return to
        if to not in self.voters:
            raise ConfigError(f"cannot transfer leadership to {to}: not a voter")
        self._lead_transferee = to
        self._transfer_elapsed = 0
        if self.progress[to].match == self.log.last_index():
            self._send(TimeoutNow(self.term, self.id, to))
        else:
            self._send_append(to)
        return to

    # -- linearizable reads ------------------------------------------------------
    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read tagged ``context`` (any bytes: the core matches reads to
        heartbeat rounds, not to contexts, so a reused context is safe).

        A :class:`ReadState` with the same context appears in a later Ready's
        ``read_states`` once the leader has confirmed its leadership; serve the
        read when the state machine has applied its index. A read whose
        leadership round fails (partition, leader change) never answers: retry.
        """
        if type(context) is not bytes:
            raise TypeError(f"a read context must be bytes, got {type(context).__name__}")
        if self.role is Role.LEADER:
            self._leader_read(context, self.id)
        elif self.leader is not None:
            self._send(ReadIndex(self.term, self.id, self.leader, context))
        else:
            raise NotLeader(self.id, self.leader)

    # -- snapshots ----------------------------------------------------------------
    def snapshot_due(self) -> bool:
        """Enough entries applied since the last snapshot (``snapshot_threshold``) to take one."""
        threshold = self.config.snapshot_threshold
        since = self.snapshot.meta.index if self.snapshot is not None else 0
        return bool(threshold) and self.log.applied - since >= threshold

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Record ``data``, the state machine's image after applying through ``index``, as a snapshot.

        The next Ready carries it (store it) and compacts the log up to
        ``index - snapshot_trailing``. Followers behind that point are sent it.
        """
        if type(data) is not bytes:
            raise TypeError(f"snapshot data must be bytes, got {type(data).__name__}")
        if index > self.log.applied:
            raise StorageError(f"cannot snapshot at {index}: only {self.log.applied} applied")
        since = self.snapshot.meta.index if self.snapshot is not None else 0
        if index <= since:
            raise StorageError(f"cannot snapshot at {index}: the last snapshot already covers {since}")
        term = self.log.term(index)
        assert term is not None
        snap = Snapshot(SnapshotMeta(index, term, self._conf_at(index)), data)
        compact_to = max(self.log.offset, index - self.config.snapshot_trailing)
        self.snapshot = snap
        self._base_conf = snap.meta.conf
        self.log.compact(compact_to)
        self._refresh_conf(force=True)
        self._compaction = Compaction(snap, compact_to)
        return snap

    # -- driving ---------------------------------------------------------------------
    def step(self, m: Message) -> None:
        """Feed one message received from a peer."""
        if not isinstance(m, _MESSAGE_TYPES):
            raise TypeError(f"not a Raft message: {type(m).__name__}")
        if m.dst != self.id:
            raise ValueError(f"message for {m.dst!r} delivered to {self.id!r}")
        if m.src == self.id:
            return
        if m.term >= _MAX_TERM or m.term > self.term + _MAX_TERM_JUMP:
            # A term we could never advance past would stop every later election; so would a
            # chain of such jumps toward it. Real terms grow by one per election: only a broken
            # or hostile peer sends these (the codec refuses the first kind off the wire).
            self.refused_terms += 1
            return
        if isinstance(m, Propose):
            self._step_forwarded_proposal(m)
            return

        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and (self.leader is not None or self._ticks_since_start < self._startup_lease)
                    and self.election_elapsed < self.config.election_ticks
                )
                if in_lease and not m.transfer:
                    # We heard from a live leader within an election timeout:
                    # a node that can't see it must not depose it.
                    return
            if isinstance(m, RequestVote) and m.pre_vote:
                pass  # a pre-vote never changes our term
            elif isinstance(m, VoteResponse) and m.pre_vote and not m.reject:
                pass  # a granted pre-vote carries the term we would campaign in
            else:
                lead = m.src if isinstance(m, _FROM_LEADER) else None
                self._become_follower(m.term, lead)
        elif m.term < self.term:
            if isinstance(m, _FROM_LEADER) and (self.config.check_quorum or self.config.pre_vote):
                # A stale leader (e.g. back from a partition): our term makes it step down.
                self._send(AppendResponse(self.term, self.id, m.src, 0))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(VoteResponse(self.term, self.id, m.src, reject=True, pre_vote=True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def has_ready(self) -> bool:
        if self._ready_outstanding:
            return False
        log = self.log
        if self.msgs or log.last_index() > log.stable or log.committed > log.applied:
            return True
        if self.read_states or self._install is not None or self._compaction is not None:
            return True
        # Field comparisons, not new HardState/SoftState objects: this runs after every message.
        hs, ss = self._prev_hard_state, self._prev_soft_state
        return (
            self.term != hs.term
            or self.vote != hs.vote
            or log.committed != hs.commit
            or self.leader != ss.leader
            or self.role is not ss.role
        )

    def ready(self) -> Ready:
        """Take the pending work. Call :meth:`advance` before the next ``ready()``."""
        if self._ready_outstanding:
            raise RuntimeError("ready() called again before advance()")
        if self._bcast_pending:
            self._bcast_pending = False
            self._bcast_append()
        log = self.log
        prev, prev_ss = self._prev_hard_state, self._prev_soft_state
        # Field comparisons first: most Readies change neither state, so build no object for them.
        changed = self.term != prev.term or self.vote != prev.vote
        rd = Ready(
            hard_state=self._hard_state() if changed or log.committed != prev.commit else None,
            hard_state_changed=changed,
            entries=log.unstable_entries(),
            messages=self.msgs,
            committed_entries=log.next_committed(),
            soft_state=(
                self._soft_state() if self.leader != prev_ss.leader or self.role is not prev_ss.role else None
            ),
            snapshot=self._install,
            compaction=self._compaction,
            read_states=self.read_states,
        )
        self.msgs = []
        self._unsent_appends = {}
        self.read_states = []
        self._install = None
        self._compaction = None
        self.log.mark_persisting()
        self._ready_outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied ``rd``."""
        if not self._ready_outstanding:
            raise RuntimeError("advance() without an outstanding ready()")
        self._ready_outstanding = False
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft_state = rd.soft_state
        if rd.entries:
            self.log.stable_to_persisting()
            own = self.progress.get(self.id) if self.role is Role.LEADER else None
            if own is not None and own.maybe_update(self.log.stable) and self._maybe_commit():
                self._bcast_commit()  # our own copy of these entries counts now (see OwnProgress)
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)

    def status(self) -> dict[str, Any]:
        """A snapshot of this node's view, for logs, HTTP status pages and tests."""
        out: dict[str, Any] = {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "vote": self.vote,
            "leader": self.leader,
            "commit": self.log.committed,
            "applied": self.log.applied,
            "last_index": self.log.last_index(),
            "first_index": self.log.offset + 1,
            "snapshot_index": self.snapshot.meta.index if self.snapshot is not None else 0,
            "voters": list(self.voters),
            "learners": list(self.learners),
        }
        if self.role is Role.LEADER:
            out["progress"] = {
                peer: {"match": pr.match, "next": pr.next, "state": pr.state.value, "learner": pr.learner}
                for peer, pr in self.progress.items()
            }
            out["transferring_to"] = self._lead_transferee
        return out

    # ------------------------------------------------------- state changes
    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.rng.randint(
            self.config.election_ticks, 2 * self.config.election_ticks - 1
        )
        self.votes = {}
        self.progress = {}
        self._unsent_appends = {}
        self._bcast_pending = False
        self._departed = []
        self._deferred_changes = []
        self._sync_progress()
        self.uncommitted_bytes = 0
        self._lead_transferee = None
        # Reads waiting on a leadership round can't be answered by a node that lost it.
        self.dropped_reads += self._reads.clear()

    def _sync_progress(self) -> None:
        """One Progress per member (and ourselves, and departed members until they learn it);
        new ones start probing at our log's end."""
        last = self.log.last_index()
        members = set(self.voters) | set(self.learners) | {self.id} | set(self._departed)
        for peer in list(self.progress):
            if peer not in members:
                del self.progress[peer]
        for peer in self.voters + self.learners + (self.id,):
            pr = self.progress.get(peer)
            if pr is None:
                if peer == self.id:
                    pr = self.progress[peer] = OwnProgress(last + 1, self.config.max_inflight, self.log)
                    pr.match = self.log.stable
                else:
                    pr = self.progress[peer] = Progress(last + 1, self.config.max_inflight)
            pr.learner = peer not in self.voters

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # Term and vote stay: a pre-vote round changes nothing durable.
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.leader = None

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        if self._conf_key[0] > self.log.committed:
            # An uncommitted removal from an earlier term: keep telling the removed nodes too.
            prev = self._conf_at(self._conf_key[0] - 1)
            self._track_departed(prev.voters + prev.learners)
        self.progress[self.id].become_replicate()
        self.progress[self.id].recent_active = True
        # A no-op of our own term lets entries of earlier terms commit (§5.4.2).
        entry = Entry(self.term, self.log.last_index() + 1, b"", EntryType.NOOP)
        self.log.append([entry])
        self.progress[self.id].maybe_update(entry.index)
        self._maybe_commit()
        self._bcast_append()

    # ---------------------------------------------------------- membership
    def _conf_at(self, index: int) -> ConfState:
        """The membership in force at ``index`` (the last CONF_CHANGE at or before it)."""
        for ci in reversed(self.log.conf_indexes):
            if ci <= index:
                return decode_entry(self.log.entry(ci).data)[1]
        return self._base_conf

    def _refresh_conf(self, force: bool = False) -> None:
        """Adopt the membership of the last CONF_CHANGE entry held (uncommitted ones too)."""
        log = self.log
        if log.conf_indexes:
            index = log.conf_indexes[-1]
            key = (index, log.entry(index).term)
        else:
            key = (0, 0)
        if key == self._conf_key and not force:
            return
        conf = decode_entry(log.entry(key[0]).data)[1] if key[0] else self._base_conf
        self._conf_key = key
        before = self.voters + self.learners
        self.voters, self.learners = conf.voters, conf.learners
        if self.role is Role.LEADER:
            # A removed node still gets the entry that removes it, so it can tell it is out.
            self._track_departed(before)
            if self._lead_transferee is not None and self._lead_transferee not in self.voters:
                self._lead_transferee = None

    def _track_departed(self, previous: tuple[str, ...]) -> None:
        """Leader: keep a Progress for members of ``previous`` that the current membership dropped."""
        now = self.voters + self.learners
        self._departed = [n for n in previous if n not in now and n != self.id]
        for n in now:
            if n not in previous and n != self.id:
                # Added (again): whatever we knew of it is of another life (a node replaced after
                # losing its disk). A stale match would let it be promoted with an empty log.
                self.progress.pop(n, None)
        self._sync_progress()

    def _can_change_conf(self) -> str | None:
        """Why a membership change must wait, or None when one may be appended now."""
        log = self.log
        if self._conf_key[0] > log.committed:
            return f"the membership change at index {self._conf_key[0]} has not committed yet"
        if log.term(log.committed) != self.term:
            return f"no entry of term {self.term} has committed yet"
        if self._lead_transferee is not None:
            return f"leadership is being transferred to {self._lead_transferee}"
        return None

    def _append_conf_change(self, cc: ConfChange, new: ConfState) -> int:
        wait = self._can_change_conf()
        if wait is not None:
            raise ProposalDropped(f"membership change refused: {wait}")
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, encode_entry(cc, new), EntryType.CONF_CHANGE)])
        self._refresh_conf()
        if self.id in self.progress:
            self.progress[self.id].maybe_update(index)
        self._maybe_commit()
        self._bcast_append()
        return index

    def _manage_membership(self) -> None:
        """Keep up to ``max_voters`` voters: promote caught-up learners, replace voters that are down."""
        if self.role is not Role.LEADER or not self.config.auto_promote or self._can_change_conf() is not None:
            return
        cc = next_membership_change(
            self.id, self.voters, self.learners, self.progress, self.log.last_index(), self.config
        )
        if cc is not None:
            self._append_conf_change(cc, apply_change(self.conf_state, cc))

    def _maybe_step_down_removed(self) -> None:
        """A leader whose own removal (or demotion) has committed hands over and steps down."""
        if self.id in self.voters or self._conf_key[0] > self.log.committed:
            return
        last = self.log.last_index()
        caught_up = [v for v in self.voters if self.progress[v].match == last]
        if caught_up:
            self._send(TimeoutNow(self.term, self.id, caught_up[0]))  # no election timeout to wait out
        self._become_follower(self.term, None)

    # -------------------------------------------------------------- timers
    def _may_campaign(self) -> bool:
        """A voter may campaign; so may a node whose removal has not committed yet, since it
        may hold the only up-to-date log (Ongaro's thesis §4.2.2, figure 4.6)."""
        if not self.admitted:
            return False
        if self.id in self.voters:
            return True
        index = self._conf_key[0]
        return index > self.log.committed and self.id in self._conf_at(index - 1).voters

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self._may_campaign():
            self.election_elapsed = 0
            self._campaign(pre_vote=self.config.pre_vote)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        for peer, pr in self.progress.items():
            if peer != self.id:
                pr.inactive_ticks += 1
        if self._lead_transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self._lead_transferee = None  # abandoned: the target did not take over in time
                if self._leave_pending is not None:
                    # Leave without a hand-over: remove ourselves; we step down once it commits.
                    cc, self._leave_pending = self._leave_pending, None
                    try:
                        self._append_conf_change(cc, apply_change(self.conf_state, cc))
                    except (ProposalDropped, ConfigError):
                        self.dropped_proposals += 1  # another change got there first: ask again
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                self.progress[self.id].recent_active = True
                active = sum(1 for v in self.voters if self.progress[v].recent_active)
                if active < self.quorum():
                    self._become_follower(self.term, None)
                    return
                for peer, pr in self.progress.items():
                    if peer != self.id:
                        pr.recent_active = False
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            # Every round also confirms the reads still pending, so a lost round is retried.
            self._bcast_heartbeat()
        elif self._commit_told < self.log.committed:
            self._commit_told = self.log.committed
            self._bcast_append()
        self._manage_membership()

    # ----------------------------------------------------------- elections
    def _campaign(self, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        if self._poll(self.id, True) == "won":
            if pre_vote:
                self._campaign(pre_vote=False, transfer=transfer)
            else:
                self._become_leader()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self.voters:
            if peer != self.id:
                self._send(RequestVote(term, self.id, peer, last_index, last_term, pre_vote, transfer))

    def _poll(self, voter: str, granted: bool) -> str:
        self.votes.setdefault(voter, granted)
        yes = sum(1 for v in self.voters if self.votes.get(v) is True)
        no = sum(1 for v in self.voters if self.votes.get(v) is False)
        if yes >= self.quorum():
            return "won"
        if no > len(self.voters) - self.quorum():
            return "lost"
        return "pending"

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = self.admitted and (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A granted pre-vote answers in the proposed term so the candidate can count it.
            self._send(VoteResponse(m.term, self.id, m.src, reject=False, pre_vote=m.pre_vote))
            if not m.pre_vote:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(VoteResponse(self.term, self.id, m.src, reject=True, pre_vote=m.pre_vote))

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, _LEADER_SIGNS):
            self._become_follower(m.term, m.src)
            self._step_follower(m)
        elif isinstance(m, VoteResponse):
            if m.pre_vote != (self.role is Role.PRE_CANDIDATE):
                return  # an answer to an earlier round
            result = self._poll(m.src, not m.reject)
            if result == "won":
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre_vote=False)
                else:
                    self._become_leader()
            elif result == "lost":
                self._become_follower(self.term, None)

    # ------------------------------------------------------------ follower
    def _step_follower(self, m: Message) -> None:
        if isinstance(m, _LEADER_SIGNS):
            self.election_elapsed = 0
            self.leader = m.src
            if self._leave_pending is not None:
                # We handed leadership over to leave: ask the new leader to remove us.
                cc, self._leave_pending = self._leave_pending, None
                data = encode_entry(cc, apply_change(self.conf_state, cc))  # the leader recomputes it
                self._send(Propose(0, self.id, m.src, [Entry(0, 0, data, EntryType.CONF_CHANGE)]))
            if isinstance(m, AppendEntries):
                self._handle_append(m)
            elif isinstance(m, Heartbeat):
                self._handle_heartbeat(m)
            elif isinstance(m, CommitNotice):
                self.log.commit_to(min(m.commit, self.log.last_index()))
            else:
                self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            if self._may_campaign():
                self._campaign(pre_vote=False, transfer=True)
        elif isinstance(m, ReadIndexResponse):
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(AppendResponse(self.term, self.id, m.src, log.committed))
            return
        last = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last is not None:
            if log.conf_indexes or self._conf_key[0]:
                self._refresh_conf()
            self._send(AppendResponse(self.term, self.id, m.src, last))
            return
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(
            AppendResponse(self.term, self.id, m.src, m.index, reject=True, reject_hint=hint_index, log_term=hint_term)
        )

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(HeartbeatResponse(self.term, self.id, m.src, m.round))

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        log = self.log
        if not m.voters:
            return  # not a snapshot any leader would send: ignore it
        if m.index <= log.committed or log.match_term(m.index, m.log_term):
            # We hold that entry already (committed entries agree): no need to restore.
            log.commit_to(max(log.committed, min(m.index, log.last_index())))
            self._snap_buffer = None
            self._send(SnapshotResponse(self.term, self.id, m.src, m.index, m.size, done=True))
            return
        if self._snap_buffer is None:
            self._snap_buffer = SnapshotBuffer()
        snap = self._snap_buffer.receive(m)
        if snap is None:
            self._send(SnapshotResponse(self.term, self.id, m.src, m.index, self._snap_buffer.offset))
            return
        self._restore(snap)
        self._send(SnapshotResponse(self.term, self.id, m.src, m.index, m.size, done=True))

    def _restore(self, snap: Snapshot) -> None:
        self._snap_buffer = None
        self.log.restore(snap.meta.index, snap.meta.term)
        self.snapshot = snap
        self._base_conf = snap.meta.conf
        self._install = snap
        self._compaction = None  # superseded: the installed snapshot replaces the log it compacted
        self._refresh_conf(force=True)

    def _step_forwarded_proposal(self, m: Propose) -> None:
        if self.role is Role.LEADER:
            datas = [e.data for e in m.entries if e.type == EntryType.NORMAL]
            size = sum(len(d) for d in datas)
            for e in m.entries:
                if e.type == EntryType.CONF_CHANGE:
                    try:
                        cc = decode_entry(e.data)[0]
                    except ValueError:
                        self.dropped_proposals += 1
                        continue
                    if self._can_change_conf() is not None and len(self._deferred_changes) < _MAX_DEFERRED_CHANGES:
                        # Another change in flight, or no commit in our term yet (a follower that just
                        # handed leadership to us asks to be removed): wait for our turn, don't drop it.
                        self._deferred_changes.append(cc)
                        continue
                    self._forwarded_change(cc)
            if not datas:
                return
            if (
                self._lead_transferee is None
                and all(len(d) <= self.config.max_entry_bytes for d in datas)
                and self._room_for(size)
            ):
                self._leader_append(datas, size)
            else:
                self.dropped_proposals += len(datas)
        elif self.leader is not None and self.leader != m.src and self.config.forward_proposals:
            self.msgs.append(Propose(0, self.id, self.leader, m.entries))
        else:
            self.dropped_proposals += len(m.entries)

    def _forwarded_change(self, cc: ConfChange) -> None:
        try:
            self.propose_conf_change(cc)
        except RaftError:
            self.dropped_proposals += 1

    # -------------------------------------------------------------- leader
    def _room_for(self, size: int) -> bool:
        limit = self.config.max_uncommitted_bytes
        return not limit or self.uncommitted_bytes == 0 or self.uncommitted_bytes + size <= limit

    def _leader_append(self, batch: list[bytes], size: int) -> tuple[int, int]:
        if not self._room_for(size):
            raise ProposalDropped(
                f"uncommitted backlog of {self.uncommitted_bytes} bytes is at max_uncommitted_bytes"
            )
        first = self.log.last_index() + 1
        term = self.term
        self.log.append([Entry(term, first + i, data) for i, data in enumerate(batch)], normal_only=True)
        self.uncommitted_bytes += size
        last = self.log.last_index()
        self.progress[self.id].maybe_update(last)  # OwnProgress: counts once synced (advance)
        # The appends go out once, when the next Ready is taken: proposals arriving one at a time
        # (each awaited by its own caller) then cost one append per follower per Ready, not one each.
        self._bcast_pending = True
        return first, last

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return  # not a member (removed, or a stray message)
        pr.inactive_ticks = 0
        pr.heard = True
        if isinstance(m, AppendResponse):
            pr.recent_active = True
            if pr.state is ProgressState.SNAPSHOT:
                return  # answers to appends sent before the snapshot started
            if m.reject:
                next_probe = m.reject_hint
                if m.log_term > 0:
                    next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
                if pr.maybe_decrease_to(m.index, next_probe):
                    if pr.state is ProgressState.REPLICATE:
                        pr.become_probe()
                    self._send_append(m.src)
                return
            if m.index > self.log.last_index():
                return  # cannot be ours: ignore rather than trust it
            was_paused = pr.is_paused()
            if pr.maybe_update(m.index):
                if pr.state is ProgressState.PROBE:
                    pr.become_replicate()
                if self._maybe_commit():
                    self._bcast_commit()
                elif was_paused:
                    self._send_append(m.src)
                # Keep the pipeline to this follower full.
                while pr.next <= self.log.last_index() and self._send_append(m.src, send_if_empty=False):
                    pass
                if pr.next > self.log.last_index():
                    self._notify_commit(m.src, pr)  # its answer came after the commit it completes
                if m.src == self._lead_transferee and pr.match == self.log.last_index():
                    self._send(TimeoutNow(self.term, self.id, m.src))
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            pr.paused = False
            self._round_acked(pr, m.round)
            if m.src in self._departed and min(pr.match, self.log.committed) >= self._conf_key[0]:
                # It has acknowledged its removal and heard that it committed: stop sending.
                self._departed.remove(m.src)
                del self.progress[m.src]
                return
            if pr.state is ProgressState.SNAPSHOT:
                if not pr.snapshot_progress:
                    pr.snapshot_resync = True  # stuck for an interval: the chunk or its answer was lost
                    self._send_snapshot(m.src)
                pr.snapshot_progress = False
            elif pr.state is ProgressState.REPLICATE and pr.is_paused():
                # Every append in the pipeline may have been lost: free one slot
                # so an append goes out and, if the follower is behind, is rejected.
                pr.inflight.popleft()
            if pr.state is not ProgressState.SNAPSHOT and pr.match < self.log.last_index():
                self._send_append(m.src)
        elif isinstance(m, SnapshotResponse):
            pr.recent_active = True
            if pr.state is not ProgressState.SNAPSHOT or m.index != pr.pending_snapshot:
                return  # about a snapshot we are no longer sending
            if m.done:
                pr.snapshot_done(m.index)
                if self._maybe_commit():
                    self._bcast_append()
                else:
                    self._send_append(m.src)
            elif m.offset > pr.snapshot_offset or pr.snapshot_resync:
                pr.snapshot_offset = m.offset
                pr.snapshot_progress = True
                pr.snapshot_resync = False
                self._send_snapshot(m.src)
        elif isinstance(m, ReadIndex):
            self._leader_read(m.context, m.src)

    def _maybe_commit(self) -> bool:
        if not self.voters:
            return False
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        candidate = matches[len(self.voters) // 2]
        # Only an entry of our own term is committed by counting replicas (§5.4.2, figure 8).
        if candidate > self.log.committed and self.log.term(candidate) == self.term:
            old = self.log.committed
            self.log.commit_to(candidate)
            if self.uncommitted_bytes:
                done = sum(len(e.data) for e in self.log.slice(old + 1, candidate + 1))
                self.uncommitted_bytes = max(0, self.uncommitted_bytes - done)
            if self._reads.waiting_commit:
                for context, origin in self._reads.take_waiting():
                    self._leader_read(context, origin)
            if self._conf_key[0] and old < self._conf_key[0] <= candidate:
                self._maybe_step_down_removed()
            if self._deferred_changes and self.role is Role.LEADER and self._can_change_conf() is None:
                self._forwarded_change(self._deferred_changes.pop(0))
            return True
        return False

    # ------------------------------------------------------------- reads
    def _leader_read(self, context: bytes, origin: str) -> None:
        log = self.log
        if log.term(log.committed) != self.term:
            # Until an entry of our term commits we may not know the latest commit index (§6.4).
            self._reads.waiting_commit.append((context, origin))
            return
        if self.voters == (self.id,) or (self.config.lease_reads and self._lease_holds()):
            self._answer_read(ReadState(log.committed, context), origin)
        else:
            self._reads.add(context, origin, log.committed, self._round + 1)
            self._bcast_heartbeat()

    def _lease_holds(self) -> bool:
        """A quorum of voters answered a heartbeat round that we sent within half an election
        timeout. A follower refuses to vote for anyone else until a full election timeout after it
        last *received* an append, heartbeat or snapshot from us, which was no earlier than we sent
        it; so no other leader can exist yet. The lease rests only on answers to our own heartbeat
        rounds, timed from when we sent them: any other message from a follower (a forwarded read,
        say) proves nothing about its election timer, and an answer's arrival time overstates it.
        The other half of the timeout is the margin for clocks that drift apart. A node that
        restarts keeps its promise by refusing votes for an election timeout after it starts."""
        if self._lead_transferee is not None:
            return False  # the target campaigns past every lease: ours may end at any moment
        oldest = self._ticks - self.config.election_ticks // 2
        fresh = sum(1 for v in self.voters if v == self.id or self.progress[v].acked_round_sent > oldest)
        return fresh >= self.quorum()

    def _round_acked(self, pr: Progress, round_: int) -> None:
        """A member answered heartbeat round ``round_``: record it, then answer the reads a quorum
        of voters has now confirmed."""
        if round_ <= pr.acked_round or round_ > self._round:
            return  # stale, duplicate, or not a round we sent
        pr.acked_round = round_
        pr.acked_round_sent = self._round_sent.get(round_, -1)
        if not self._reads.pending or pr.learner:
            return
        rounds = sorted((self._round if v == self.id else self.progress[v].acked_round for v in self.voters), reverse=True)
        for rs, origin in self._reads.confirmed(rounds[self.quorum() - 1]):
            self._answer_read(rs, origin)

    def _answer_read(self, rs: ReadState, origin: str) -> None:
        if origin == self.id:
            self.read_states.append(rs)
        else:
            self._send(ReadIndexResponse(self.term, self.id, origin, rs.index, rs.context))

    # --------------------------------------------------------- replication
    def _bcast_append(self) -> None:
        log = self.log
        for peer, pr in self.progress.items():
            if peer != self.id and self._send_append(peer):
                # A follower in step takes a pipeline of appends, up to max_inflight.
                while pr.next <= log.last_index() and self._send_append(peer, send_if_empty=False):
                    pass

    def _bcast_commit(self) -> None:
        """A new commit index, for the followers. One with entries still to send gets it with them.
        For the others, while later entries are still uncommitted their commit is coming and will
        be told too: until then the next heartbeat (at the next tick at the latest) tells them, not
        an empty append of its own and its answer, which doubled the messages per write under load.
        Once everything is committed no later commit is coming: a CommitNotice tells them now (see
        :meth:`_notify_commit`)."""
        log = self.log
        for peer, pr in self.progress.items():
            if peer == self.id:
                continue
            if pr.next <= log.last_index():
                while pr.next <= log.last_index() and self._send_append(peer, send_if_empty=False):
                    pass
            else:
                self._notify_commit(peer, pr)

    def _notify_commit(self, peer: str, pr: Progress) -> None:
        """When everything the leader holds is committed, tell a follower that has nothing more to
        receive the commit index it can take (capped at its match, as a heartbeat's) if nothing
        has told it yet, as an idle leader should: its state machine, and anything reading it,
        would otherwise lag until the next tick. Also when its answer comes after the commit."""
        log = self.log
        commit = min(pr.match, log.committed)
        if log.committed == log.last_index() and commit > pr.commit_sent:
            pr.commit_sent = commit
            self._send(CommitNotice(self.term, self.id, peer, commit))

    def _bcast_heartbeat(self) -> None:
        self._commit_told = self.log.committed
        self._round += 1
        self._round_sent[self._round] = self._ticks
        # A round sent over an election timeout ago can't support a lease: forget its send time.
        sent, horizon = self._round_sent, self._ticks - self.config.election_ticks
        while sent[next(iter(sent))] < horizon:
            del sent[next(iter(sent))]
        for peer, pr in self.progress.items():
            if peer != self.id:
                commit = min(pr.match, self.log.committed)
                pr.commit_sent = max(pr.commit_sent, commit)
                self._send(Heartbeat(self.term, self.id, peer, commit, self._round))

    def _send_append(self, to: str, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        # Also false once a commit made us step down (our own removal) in the middle of a step.
        if pr.is_paused() or self.role is not Role.LEADER:
            return False
        log = self.log
        prev = pr.next - 1
        if not send_if_empty and prev >= log.offset + len(log.entries):
            return False  # nothing new for it
        prev_term = log.term(prev)
        if prev_term is None:
            # The entries this follower needs are compacted away: it gets the snapshot.
            self._send_snapshot(to)
            return True
        lo = prev - log.offset
        hi = min(len(log.entries), lo + self.config.max_entries_per_msg)
        if hi > lo:
            max_bytes = self.config.max_bytes_per_msg
            size = 0
            entries = log.entries
            for i in range(lo, hi):
                n = len(entries[i].data)
                if size + n > max_bytes and i > lo:
                    hi = i
                    break
                size += n
            ents = entries[lo:hi]
            if pr.state is ProgressState.REPLICATE:
                unsent = self._unsent_appends.get(to)
                if unsent is not None and self._extend_unsent(to, pr, unsent, prev, ents, size):
                    return True
        else:
            if not send_if_empty:
                return False
            ents = []
        msg = AppendEntries(self.term, self.id, to, prev, prev_term, log.committed, ents)
        self._send(msg)
        pr.sent(prev + len(ents), len(ents))
        if log.committed > pr.commit_sent:
            pr.commit_sent = max(pr.commit_sent, min(log.committed, prev + len(ents)))
        if ents and pr.state is ProgressState.REPLICATE:
            self._unsent_appends[to] = (msg, size)
        return True

    def _extend_unsent(
        self, to: str, pr: Progress, unsent: tuple[AppendEntries, int], prev: int, ents: list[Entry], size: int
    ) -> bool:
        """Coalesce: new entries for a follower whose last append, ending just before them, is still
        in this Ready (not handed to the driver yet) join that append instead of travelling in one
        of their own, with its own answer (entries proposed during a sync all wait for the same
        Ready). Exactly what the two appends would do, delivered in order; False when they don't
        fit in one message."""
        msg, msg_size = unsent
        end = msg.index + len(msg.entries)
        if (
            end != prev
            or not pr.inflight
            or pr.inflight[-1] != end
            or len(msg.entries) + len(ents) > self.config.max_entries_per_msg
            or msg_size + size > self.config.max_bytes_per_msg
        ):
            return False
        msg.entries.extend(ents)
        msg.commit = self.log.committed
        last = prev + len(ents)
        pr.commit_sent = max(pr.commit_sent, min(msg.commit, last))
        pr.next = last + 1
        pr.inflight[-1] = last  # still one append in flight, and its answer covers them all
        self._unsent_appends[to] = (msg, msg_size + size)
        return True

    def _send_snapshot(self, to: str) -> None:
        snap = self.snapshot
        if snap is None:
            raise AssertionError(f"{self.id}: log compacted to {self.log.offset} without a snapshot")
        pr = self.progress[to]
        if pr.state is not ProgressState.SNAPSHOT or pr.pending_snapshot != snap.meta.index:
            pr.become_snapshot(snap.meta.index)  # a newer snapshot replaces one half sent
        off = pr.snapshot_offset
        meta = snap.meta
        self._send(
            InstallSnapshot(
                self.term,
                self.id,
                to,
                meta.index,
                meta.term,
                list(meta.conf.voters),
                list(meta.conf.learners),
                len(snap.data),
                off,
                snap.data[off : off + self.config.snapshot_chunk_bytes],
            )
        )

    # ------------------------------------------------------------- helpers
    def _send(self, m: Message) -> None:
        if not self.admitted and type(m) in _ACKS:
            return  # not counted toward any quorum until taken in: what it forgot may be acknowledged
        self.msgs.append(m)
