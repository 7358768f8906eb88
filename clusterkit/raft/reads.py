"""The leader's queue of linearizable reads waiting for a heartbeat round (etcd's read_only.go).

A read arrives with a context (unique bytes) and the commit index at that
moment. It may be answered once a majority of voters has acknowledged a
heartbeat carrying its context or a later one: that proves the node was
still leader after the read arrived, so no other leader can have committed
anything the read index misses (Raft thesis §6.4). Pure bookkeeping: the
node sends the heartbeats and routes the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .messages import ReadState


@dataclass(slots=True)
class PendingRead:
    index: int
    origin: str  # who asked: the leader itself, or the follower the answer goes back to
    acks: set[str] = field(default_factory=set)  # voters that confirmed leadership after it arrived


@dataclass(slots=True)
class ReadQueue:
    pending: dict[bytes, PendingRead] = field(default_factory=dict)  # in arrival order
    waiting_commit: list[tuple[bytes, str]] = field(default_factory=list)  # until a commit in our term

    def add(self, context: bytes, origin: str, index: int, leader: str) -> bool:
        """Queue a read; False when the same context is already queued (it is answered once)."""
        if context in self.pending:
            return False
        self.pending[context] = PendingRead(index, origin, {leader})
        return True

    def ack(self, voter: str, context: bytes, voters: Sequence[str], quorum: int) -> list[tuple[ReadState, str]]:
        """``voter`` answered the heartbeat of ``context``: the reads now confirmed, with who asked."""
        req = self.pending.get(context)
        if req is None or voter not in voters:
            return []
        req.acks.add(voter)
        if sum(1 for v in voters if v in req.acks) < quorum:
            return []
        # This round confirms our leadership for every read that arrived before it, too.
        out: list[tuple[ReadState, str]] = []
        while self.pending:
            ctx = next(iter(self.pending))
            done = self.pending.pop(ctx)
            out.append((ReadState(done.index, ctx), done.origin))
            if ctx == context:
                break
        return out

    def last_context(self) -> bytes:
        """The newest pending read's context: every heartbeat carries it, so a lost round is retried
        and its answers confirm every read still pending (empty when none is)."""
        return next(reversed(self.pending), b"")

    def take_waiting(self) -> list[tuple[bytes, str]]:
        waiting, self.waiting_commit = self.waiting_commit, []
        return waiting

    def clear(self) -> int:
        """Leadership lost: drop every read (clients retry); returns how many."""
        dropped = len(self.pending) + len(self.waiting_commit)
        self.pending = {}
        self.waiting_commit = []
        return dropped
