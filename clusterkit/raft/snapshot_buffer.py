"""A follower's assembly of a snapshot arriving in InstallSnapshot chunks.

Chunks must arrive in order; anything else (a resend, a reordered or stale
chunk, a chunk of an older snapshot) leaves the buffer as it is; a chunk of
a newer snapshot restarts it; and the answer tells the leader which offset to send
next. The buffer lives in memory only: a restart loses it and the leader
starts over from the follower's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import ConfState, InstallSnapshot, Snapshot, SnapshotMeta


@dataclass(slots=True)
class SnapshotBuffer:
    index: int = -1
    term: int = -1
    data: bytearray = field(default_factory=bytearray)

    def receive(self, m: InstallSnapshot) -> Snapshot | None:
        """Take one chunk; the whole snapshot once its last byte has arrived, else None (see ``offset``)."""
        if m.offset + len(m.data) > m.size:
            return None  # a chunk past the snapshot's own size: not from a sane leader, ignore it
        if m.index < self.index:
            return None  # a chunk of an older snapshot (delayed, or a resend): keep the newer one we hold
        if (m.index, m.log_term) != (self.index, self.term):
            self.index, self.term, self.data = m.index, m.log_term, bytearray()
        if m.offset != len(self.data):
            return None
        self.data += m.data
        if len(self.data) < m.size:
            return None
        conf = ConfState(tuple(sorted(m.voters)), tuple(sorted(m.learners)))
        return Snapshot(SnapshotMeta(m.index, m.log_term, conf), bytes(self.data))

    @property
    def offset(self) -> int:
        """Bytes held: where the next chunk should start."""
        return len(self.data)
