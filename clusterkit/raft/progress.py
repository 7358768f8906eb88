"""The leader's view of one follower's log (etcd's Progress, simplified).

PROBE: we don't know where the follower's log matches; send one append and
wait for its answer (or a heartbeat answer) before sending another.
REPLICATE: the follower is in step; stream appends optimistically, at most
``max_inflight`` unacknowledged at once.
SNAPSHOT: the entries the follower needs are compacted; send the snapshot in
chunks, the next one when an answer moves the offset forward (stale and
duplicate answers are ignored, so only one chunk is ever in flight). A
heartbeat interval without progress resends the current chunk and takes the
follower's answer as the truth, which restarts a transfer a follower lost.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Any


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "paused",
        "inflight",
        "max_inflight",
        "recent_active",
        "learner",
        "pending_snapshot",
        "snapshot_offset",
        "snapshot_progress",
        "snapshot_resync",
        "inactive_ticks",
        "heard",
        "acked_round",
        "acked_round_sent",
        "commit_sent",
    )

    def __init__(self, next_index: int, max_inflight: int, learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.paused = False  # PROBE: an append is out, wait for its answer
        self.inflight: deque[int] = deque()  # REPLICATE: last index of each unacknowledged append
        self.max_inflight = max_inflight
        self.recent_active = False  # heard from within the last election timeout (CheckQuorum)
        self.learner = learner
        self.pending_snapshot = 0  # SNAPSHOT: index of the snapshot being sent
        self.snapshot_offset = 0  # SNAPSHOT: bytes the follower has acknowledged
        self.snapshot_progress = False  # SNAPSHOT: the offset moved since the last heartbeat answer
        self.snapshot_resync = False  # SNAPSHOT: a chunk was resent; believe the next answer's offset
        self.inactive_ticks = 0  # leader ticks since this peer last answered (membership manager)
        self.heard = False  # any answer from this peer since this leadership began
        self.acked_round = 0  # newest heartbeat round this peer answered (reads)
        self.acked_round_sent = -1  # leader tick at which that round was sent, -1 if unknown (lease)
        self.commit_sent = 0  # the highest commit index sent to this peer it could take (appends, notices)

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"paused={self.paused}, inflight={len(self.inflight)})"
        )

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.paused = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.paused = False
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_offset = 0
        self.snapshot_progress = True
        self.snapshot_resync = False
        self.paused = False
        self.inflight.clear()

    def snapshot_done(self, index: int) -> None:
        """The follower's log now matches at ``index``: probe onwards from there."""
        self.match = max(self.match, index)
        self.pending_snapshot = 0
        self.become_probe()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.paused
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def sent(self, last_index: int, n_entries: int) -> None:
        """Record an append that carried entries up to ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            if n_entries:
                self.next = last_index + 1
                self.inflight.append(last_index)
        else:
            self.paused = True

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to ``index``. Returns whether match moved."""
        updated = index > self.match
        if updated:
            self.match = index
            self.paused = False
        if index + 1 > self.next:
            self.next = index + 1
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append at ``rejected``. Returns False when the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.paused = False
        return True


class OwnProgress(Progress):
    """The leader's view of its own log. Its match is what the leader's disk holds (the log's
    stable index), never more: the driver may send the leader's appends while it syncs them
    (``Ready.take_early_messages``), so the leader counts itself toward a commit only for entries
    already synced, and an entry committed without it is on a majority of the other nodes' disks
    (Ongaro's thesis, §10.2.1). ``maybe_update`` is capped there; ``RaftNode.advance`` moves it
    once a Ready's entries are synced."""

    __slots__ = ("_log",)

    def __init__(self, next_index: int, max_inflight: int, log: Any) -> None:
        super().__init__(next_index, max_inflight)
        self._log = log  # anything with a ``stable`` index: the node's RaftLog

    def maybe_update(self, index: int) -> bool:
        return super().maybe_update(min(index, self._log.stable))
