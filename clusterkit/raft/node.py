"""The Raft consensus state machine (sans-IO).

Inputs: :meth:`RaftNode.step` (a message from a peer), :meth:`RaftNode.tick`
(one unit of logical time), :meth:`RaftNode.propose` (new data). Output: a
:class:`~.ready.Ready` from :meth:`RaftNode.ready`, acknowledged with
:meth:`RaftNode.advance`. The node never touches a socket, a clock, a file or
a global random generator, so the simulator, the asyncio driver and the tests
all drive the same object the same way.

Follows the Raft paper and etcd's raft: PreVote (§9.6 of Ongaro's thesis),
CheckQuorum, commit only of current-term entries (§5.4.2), fast log
backtracking with conflict-term hints, pipelined appends per follower.
"""

from __future__ import annotations

import random
from typing import Any

from .errors import ConfigError, NotLeader, ProposalDropped
from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    Propose,
    RequestVote,
    VoteResponse,
)
from .progress import Progress, ProgressState
from .ready import RaftConfig, Ready, Role, SoftState
from .storage import Storage

_MESSAGE_TYPES = (AppendEntries, AppendResponse, RequestVote, VoteResponse, Heartbeat, HeartbeatResponse, Propose)


class RaftNode:
    """One member of a Raft group. Not thread-safe: a driver owns it from one task."""

    def __init__(
        self,
        node_id: str,
        storage: Storage,
        config: RaftConfig | None = None,
        rng: random.Random | None = None,
        applied: int = 0,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError("node_id must be a non-empty string")
        self.id = node_id
        self.config = config or RaftConfig()
        # Injected so that a seeded run replays exactly; never the module global.
        self.rng = rng if rng is not None else random.Random(node_id)
        self.storage = storage

        hs, cs = storage.initial_state()
        if not cs.voters:
            raise ConfigError("storage holds no voters: bootstrap it with a ConfState")
        first, last = storage.first_index(), storage.last_index()
        self.log = RaftLog(storage.entries(first, last + 1), offset=first - 1)
        if hs.commit > self.log.last_index():
            raise ConfigError(f"stored commit {hs.commit} is beyond the stored log ({self.log.last_index()})")
        self.log.committed = hs.commit
        self.log.applied = min(max(applied, self.log.offset), hs.commit)

        self.term = hs.term
        self.vote: str | None = hs.vote
        self.voters: tuple[str, ...] = tuple(sorted(cs.voters))
        self.learners: tuple[str, ...] = tuple(sorted(cs.learners))
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.msgs: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self.uncommitted_bytes = 0
        self.dropped_proposals = 0

        self._prev_hard_state = hs
        self._prev_soft_state = SoftState(None, Role.FOLLOWER)
        self._ready_outstanding = False
        self._become_follower(self.term, None)

    # ------------------------------------------------------------------ API
    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def campaign(self) -> None:
        """Start an election now (skipping PreVote), as a timeout would."""
        if self.role is not Role.LEADER and self.id in self.voters:
            self._campaign(pre_vote=False)

    def propose(self, data: bytes) -> int | None:
        """Propose one entry. Returns its log index on the leader, None when forwarded."""
        span = self.propose_batch([data])
        return span[0] if span else None

    def propose_batch(self, batch: list[bytes]) -> tuple[int, int] | None:
        """Propose many entries at once. Returns (first, last) index on the leader, None when forwarded.

        Raises NotLeader when there is no leader to forward to (or forwarding is
        off), ProposalDropped when an entry is too large or the backlog is full,
        TypeError when an entry is not bytes.
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
            return self._leader_append(batch, size)
        if self.leader is not None and self.config.forward_proposals:
            ents = [Entry(0, 0, d) for d in batch]
            self.msgs.append(Propose(0, self.id, self.leader, ents))
            return None
        raise NotLeader(self.id, self.leader)

    def step(self, m: Message) -> None:
        """Feed one message received from a peer."""
        if not isinstance(m, _MESSAGE_TYPES):
            raise TypeError(f"not a Raft message: {type(m).__name__}")
        if m.dst != self.id:
            raise ValueError(f"message for {m.dst!r} delivered to {self.id!r}")
        if m.src == self.id:
            return
        if isinstance(m, Propose):
            self._step_forwarded_proposal(m)
            return

        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and self.leader is not None
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
                lead = m.src if isinstance(m, (AppendEntries, Heartbeat)) else None
                self._become_follower(m.term, lead)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat)) and (self.config.check_quorum or self.config.pre_vote):
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
        hs = self._hard_state()
        ss = self._soft_state()
        rd = Ready(
            hard_state=hs if hs != self._prev_hard_state else None,
            entries=self.log.unstable_entries(),
            messages=self.msgs,
            committed_entries=self.log.next_committed(),
            soft_state=ss if ss != self._prev_soft_state else None,
        )
        self.msgs = []
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
            "voters": list(self.voters),
        }
        if self.role is Role.LEADER:
            out["progress"] = {
                peer: {"match": pr.match, "next": pr.next, "state": pr.state.value}
                for peer, pr in self.progress.items()
            }
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
        last = self.log.last_index()
        self.progress = {}
        for peer in self.voters + self.learners:
            pr = Progress(last + 1, self.config.max_inflight, learner=peer in self.learners)
            if peer == self.id:
                pr.match = last
            self.progress[peer] = pr
        self.uncommitted_bytes = 0

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
        self.progress[self.id].become_replicate()
        self.progress[self.id].recent_active = True
        # A no-op of our own term lets entries of earlier terms commit (§5.4.2).
        entry = Entry(self.term, self.log.last_index() + 1, b"", EntryType.NOOP)
        self.log.append([entry])
        self.progress[self.id].maybe_update(entry.index)
        self._maybe_commit()
        self._bcast_append()

    # -------------------------------------------------------------- timers
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.id in self.voters and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._campaign(pre_vote=self.config.pre_vote)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
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
            self._bcast_heartbeat()

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
        can_vote = (
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
        if isinstance(m, AppendEntries):
            self._become_follower(m.term, m.src)
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._become_follower(m.term, m.src)
            self._handle_heartbeat(m)
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
        if isinstance(m, AppendEntries):
            self.election_elapsed = 0
            self.leader = m.src
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self.election_elapsed = 0
            self.leader = m.src
            self._handle_heartbeat(m)

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(AppendResponse(self.term, self.id, m.src, log.committed))
            return
        last = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last is not None:
            self._send(AppendResponse(self.term, self.id, m.src, last))
            return
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(
            AppendResponse(self.term, self.id, m.src, m.index, reject=True, reject_hint=hint_index, log_term=hint_term)
        )

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(HeartbeatResponse(self.term, self.id, m.src, m.context))

    def _step_forwarded_proposal(self, m: Propose) -> None:
        if self.role is Role.LEADER:
            datas = [e.data for e in m.entries]
            size = sum(len(d) for d in datas)
            if datas and all(len(d) <= self.config.max_entry_bytes for d in datas) and self._room_for(size):
                self._leader_append(datas, size)
            else:
                self.dropped_proposals += len(m.entries)
        elif self.leader is not None and self.leader != m.src and self.config.forward_proposals:
            self.msgs.append(Propose(0, self.id, self.leader, m.entries))
        else:
            self.dropped_proposals += len(m.entries)

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
        self.log.append([Entry(term, first + i, data) for i, data in enumerate(batch)])
        self.uncommitted_bytes += size
        last = self.log.last_index()
        self.progress[self.id].maybe_update(last)
        self._maybe_commit()  # a single-voter group commits at once
        self._bcast_append()
        return first, last

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return  # not a member (removed, or a stray message)
        if isinstance(m, AppendResponse):
            pr.recent_active = True
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
                    self._bcast_append()
                elif was_paused:
                    self._send_append(m.src)
                # Keep the pipeline to this follower full.
                while self._send_append(m.src, send_if_empty=False):
                    pass
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            pr.paused = False
            if pr.state is ProgressState.REPLICATE and pr.is_paused():
                # Every append in the pipeline may have been lost: free one slot
                # so an append goes out and, if the follower is behind, is rejected.
                pr.inflight.popleft()
            if pr.match < self.log.last_index():
                self._send_append(m.src)

    def _maybe_commit(self) -> bool:
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        candidate = matches[len(self.voters) // 2]
        # Only an entry of our own term is committed by counting replicas (§5.4.2, figure 8).
        if candidate > self.log.committed and self.log.term(candidate) == self.term:
            old = self.log.committed
            self.log.commit_to(candidate)
            if self.uncommitted_bytes:
                done = sum(len(e.data) for e in self.log.slice(old + 1, candidate + 1))
                self.uncommitted_bytes = max(0, self.uncommitted_bytes - done)
            return True
        return False

    def _bcast_append(self) -> None:
        for peer in self.progress:
            if peer != self.id and self._send_append(peer):
                # A follower in step takes a pipeline of appends, up to max_inflight.
                while self._send_append(peer, send_if_empty=False):
                    pass

    def _bcast_heartbeat(self) -> None:
        for peer, pr in self.progress.items():
            if peer != self.id:
                self._send(Heartbeat(self.term, self.id, peer, min(pr.match, self.log.committed)))

    def _send_append(self, to: str, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            return False  # compacted: needs a snapshot (Raft completeness work)
        lo = prev - log.offset
        hi = min(len(log.entries), lo + self.config.max_entries_per_msg)
        if hi > lo:
            max_bytes = self.config.max_bytes_per_msg
            size = 0
            entries = log.entries
            for i in range(lo, hi):
                size += len(entries[i].data)
                if size > max_bytes and i > lo:
                    hi = i
                    break
            ents = entries[lo:hi]
        else:
            if not send_if_empty:
                return False
            ents = []
        self._send(AppendEntries(self.term, self.id, to, prev, prev_term, log.committed, ents))
        pr.sent(prev + len(ents), len(ents))
        return True

    # ------------------------------------------------------------- helpers
    def _send(self, m: Message) -> None:
        self.msgs.append(m)
