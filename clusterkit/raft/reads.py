"""The leader's queue of linearizable reads waiting for a heartbeat round (etcd's read_only.go).

A read arrives with a context (the caller's tag, any bytes) and the commit
index at that moment, and is given the number of the next heartbeat round
the leader sends. It may be answered once a majority of voters has answered
that round or a later one: that proves the node was still leader after the
read arrived, so no other leader can have committed anything the read index
misses (Raft thesis §6.4). Reads are matched to answers by round number,
which only the leader hands out, never by the caller's context: a delayed
answer from an earlier round can't confirm a later read, whatever contexts
the caller reuses. Pure bookkeeping: the node sends the heartbeats and
routes the answers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .messages import ReadState


@dataclass(slots=True, frozen=True)
class PendingRead:
    context: bytes
    index: int  # the commit index when the read arrived
    origin: str  # who asked: the leader itself, or the follower the answer goes back to
    round: int  # the first heartbeat round sent after it arrived


@dataclass(slots=True)
class ReadQueue:
    pending: deque[PendingRead] = field(default_factory=deque)  # in arrival order, so rounds never decrease
    waiting_commit: list[tuple[bytes, str]] = field(default_factory=list)  # until a commit in our term

    def add(self, context: bytes, origin: str, index: int, round_: int) -> None:
        self.pending.append(PendingRead(context, index, origin, round_))

    def confirmed(self, round_: int) -> list[tuple[ReadState, str]]:
        """A quorum has answered round ``round_`` (or later): the reads that proves, with who asked."""
        out: list[tuple[ReadState, str]] = []
        while self.pending and self.pending[0].round <= round_:
            done = self.pending.popleft()
            out.append((ReadState(done.index, done.context), done.origin))
        return out

    def take_waiting(self) -> list[tuple[bytes, str]]:
        waiting, self.waiting_commit = self.waiting_commit, []
        return waiting

    def clear(self) -> int:
        """Leadership lost: drop every read (clients retry); returns how many."""
        dropped = len(self.pending) + len(self.waiting_commit)
        self.pending = deque()
        self.waiting_commit = []
        return dropped
