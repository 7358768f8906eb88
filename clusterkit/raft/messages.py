"""Raft log entries, persistent state and wire messages.

Every message is a small slotted dataclass. ``src``/``dst`` are node ids
(strings); ``term`` is the sender's term. The one codec for all of them lives
in :mod:`clusterkit.raft.codec`; both drivers and the simulator use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class EntryType(IntEnum):
    NORMAL = 0  # application data
    NOOP = 1  # appended by every new leader (commits entries of earlier terms)
    CONF_CHANGE = 2  # membership change (see the Raft completeness work)


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
    term: int
    src: str
    dst: str
    commit: int
    context: bytes = b""


@dataclass(slots=True)
class HeartbeatResponse:
    term: int
    src: str
    dst: str
    context: bytes = b""


@dataclass(slots=True)
class Propose:
    """A proposal forwarded by a follower to the leader (term 0: not subject to term checks)."""

    term: int
    src: str
    dst: str
    entries: list[Entry] = field(default_factory=list)


Message = (
    AppendEntries
    | AppendResponse
    | RequestVote
    | VoteResponse
    | Heartbeat
    | HeartbeatResponse
    | Propose
)
