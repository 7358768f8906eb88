"""The batch of work a Raft node hands its driver, and the role/config types around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .errors import ConfigError
from .messages import Entry, HardState, Message


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state worth reporting when it changes (not persisted)."""

    leader: str | None
    role: Role


@dataclass(slots=True)
class Ready:
    """Work the driver must do, in this order, then acknowledge with ``node.advance(ready)``.

    1. Persist: write ``hard_state`` (if not None) and ``entries`` to storage
       (an entry replaces any stored entry at the same or a later index), then
       sync. Nothing below may happen before the sync returns: a vote or an
       acknowledgement sent before its state is durable can elect two leaders
       or lose a committed entry after a crash.
    2. Send ``messages`` (in any order; the network may drop or reorder them).
    3. Apply ``committed_entries`` to the state machine, in order. Entries of
       type NOOP carry no data and only need to be skipped.
    4. Call ``advance(ready)``.

    ``soft_state`` is informational (leader or role changed since the last Ready).
    """

    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    soft_state: SoftState | None = None

    def must_sync(self) -> bool:
        return self.hard_state is not None or bool(self.entries)

    def is_empty(self) -> bool:
        return not (
            self.hard_state is not None
            or self.entries
            or self.messages
            or self.committed_entries
            or self.soft_state is not None
        )


@dataclass(frozen=True)
class RaftConfig:
    """Tunables. Times are in ticks; the driver decides how long a tick is."""

    election_ticks: int = 10  # followers campaign after a random timeout in [e, 2e)
    heartbeat_ticks: int = 1
    pre_vote: bool = True  # ask "would you vote for me?" before disrupting a term
    check_quorum: bool = True  # a leader that can't hear a majority steps down
    max_entries_per_msg: int = 4096
    max_bytes_per_msg: int = 1 << 20  # a single larger entry is still sent alone
    max_inflight: int = 64  # unacknowledged appends in flight to one follower
    max_entry_bytes: int = 8 << 20  # proposals larger than this are refused
    max_uncommitted_bytes: int = 256 << 20  # leader refuses proposals past this backlog (0: no limit)
    forward_proposals: bool = True  # followers forward proposals to a known leader

    def __post_init__(self) -> None:
        ints = {
            "election_ticks": self.election_ticks,
            "heartbeat_ticks": self.heartbeat_ticks,
            "max_entries_per_msg": self.max_entries_per_msg,
            "max_bytes_per_msg": self.max_bytes_per_msg,
            "max_inflight": self.max_inflight,
            "max_entry_bytes": self.max_entry_bytes,
            "max_uncommitted_bytes": self.max_uncommitted_bytes,
        }
        for name, value in ints.items():
            if type(value) is not int:
                raise ConfigError(f"{name} must be an int, got {type(value).__name__}")
        if self.heartbeat_ticks < 1:
            raise ConfigError("heartbeat_ticks must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("election_ticks must be greater than heartbeat_ticks")
        for name in ("max_entries_per_msg", "max_bytes_per_msg", "max_inflight", "max_entry_bytes"):
            if ints[name] < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.max_uncommitted_bytes < 0:
            raise ConfigError("max_uncommitted_bytes must be >= 0 (0 disables the limit)")
