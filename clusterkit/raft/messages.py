"""Raft log entries, persistent state and wire messages.

Every message is a small slotted dataclass. ``src``/``dst`` are node ids
(strings); ``term`` is the sender's term. The one codec for all of them lives
in :mod:`clusterkit.raft.codec`; both drivers and the simulator use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


# Every term, index, commit, size and round, on the wire and on disk, is below this bound. A node
# must always be able to add one to a term it adopted (msgpack stops at 2**64 - 1): a frame carrying
# more is refused by the codec, and a node never adopts a term at or above it.
MAX_NUMBER = 1 << 62


class EntryType(IntEnum):
    NORMAL = 0  # application data
    NOOP = 1  # appended by every new leader (commits entries of earlier terms)
    CONF_CHANGE = 2  # membership change: data is an encoded ConfChange (see confchange.py)


@dataclass(slots=True)
class Entry:
    term: int
    index: int
    data: bytes = b""
    type: int = EntryType.NORMAL


@dataclass(slots=True, frozen=True)
class HardState:
    """What must survive a crash: written before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(slots=True, frozen=True)
class ConfState:
    """Cluster membership: voters decide elections and commits, learners only receive the log."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class SnapshotMeta:
    """What a snapshot covers: every entry up to ``index`` (of ``term``), and the membership then."""

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(slots=True, frozen=True)
class Snapshot:
    """The state machine's image at ``meta.index``; ``data`` is opaque to Raft."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied ``index``."""

    index: int
    context: bytes


@dataclass(slots=True)
class AppendEntries:
    term: int
    src: str
    dst: str
    index: int  # index of the entry just before ``entries``
    log_term: int  # term of that entry
    commit: int
    entries: list[Entry] = field(default_factory=list)


@dataclass(slots=True)
class AppendResponse:
    term: int
    src: str
    dst: str
    index: int  # accepted: last index now matching; rejected: the ``index`` that was rejected
    reject: bool = False
    reject_hint: int = 0  # rejected: the follower's best guess of the last index that may match
    log_term: int = 0  # rejected: term of the follower's entry at ``reject_hint``


@dataclass(slots=True)
class RequestVote:
    term: int  # for a pre-vote: the term the candidate would campaign in
    src: str
    dst: str
    index: int  # candidate's last log index
    log_term: int  # candidate's last log term
    pre_vote: bool = False
    transfer: bool = False  # campaign ordered by a leadership transfer: bypasses the lease


@dataclass(slots=True)
class VoteResponse:
    term: int
    src: str
    dst: str
    reject: bool
    pre_vote: bool = False


@dataclass(slots=True)
class Heartbeat:
    """``round`` numbers the leader's heartbeat rounds within its term: the answer echoes it, so the
    leader knows which round (sent when) a follower confirmed, for reads and the lease."""

    term: int
    src: str
    dst: str
    commit: int
    round: int = 0


@dataclass(slots=True)
class CommitNotice:
    """Leader -> follower: the commit index, capped as a heartbeat's (``min(match, commit)``), when
    everything the leader holds has just committed, so no later append or commit is coming to
    carry it. Never answered: it only saves the follower waiting for the next heartbeat."""

    term: int
    src: str
    dst: str
    commit: int


@dataclass(slots=True)
class HeartbeatResponse:
    term: int
    src: str
    dst: str
    round: int = 0


@dataclass(slots=True)
class Propose:
    """A proposal forwarded by a follower to the leader (term 0: not subject to term checks)."""

    term: int
    src: str
    dst: str
    entries: list[Entry] = field(default_factory=list)


@dataclass(slots=True)
class InstallSnapshot:
    """One chunk of the leader's snapshot, for a follower behind the compacted log.

    Every chunk carries the snapshot's metadata, so a follower can tell a
    chunk of a newer snapshot from a stale one and restart its buffer.
    """

    term: int
    src: str
    dst: str
    index: int  # last index the snapshot covers
    log_term: int  # term of that entry
    voters: list[str]
    learners: list[str]
    size: int  # total bytes of the snapshot data
    offset: int  # where this chunk starts
    data: bytes  # the chunk


@dataclass(slots=True)
class SnapshotResponse:
    term: int
    src: str
    dst: str
    index: int  # the snapshot being transferred
    offset: int  # bytes the follower holds: the next chunk should start here
    done: bool = False  # installed (or not needed): the follower's log now matches at ``index``


@dataclass(slots=True)
class TimeoutNow:
    """From the leader in a leadership transfer: campaign now, bypassing PreVote and the lease."""

    term: int
    src: str
    dst: str


@dataclass(slots=True)
class ReadIndex:
    """A follower asks the leader for a read index on behalf of a client read tagged ``context``."""

    term: int
    src: str
    dst: str
    context: bytes


@dataclass(slots=True)
class ReadIndexResponse:
    term: int
    src: str
    dst: str
    index: int
    context: bytes


Message = (
    AppendEntries
    | AppendResponse
    | RequestVote
    | VoteResponse
    | Heartbeat
    | HeartbeatResponse
    | Propose
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
    | ReadIndex
    | ReadIndexResponse
    | CommitNotice
)
