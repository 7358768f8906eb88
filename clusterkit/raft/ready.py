"""The batch of work a Raft node hands its driver, and the role/config types around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .errors import ConfigError
from .messages import AppendEntries, CommitNotice, Entry, HardState, Heartbeat, Message, ReadState, Snapshot

# What a leader may send while its own disk syncs the Ready (see Ready.take_early_messages).
_EARLY = (AppendEntries, Heartbeat, CommitNotice)


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


@dataclass(slots=True, frozen=True)
class Compaction:
    """A snapshot the node took of its own state machine: store it, then drop the log up to ``compact_to``."""

    snapshot: Snapshot
    compact_to: int


@dataclass(slots=True)
class Ready:
    """Work the driver must do, in this order, then acknowledge with ``node.advance(ready)``.

    1. Persist: ``snapshot`` (received from the leader: it replaces the
       stored snapshot and log), then ``entries`` (an entry replaces any
       stored entry at the same or a later index), ``hard_state``, and
       ``compaction`` (store its snapshot, then drop the log up to
       ``compact_to``); then sync when :meth:`must_sync` says so (a
       hard state whose only change is the commit index needn't be synced: a
       restart learns the commit index again). :func:`~.storage.write_ready`
       does the writes. Nothing below may happen before the sync returns: a
       vote or an acknowledgement sent before its state is durable can elect
       two leaders or lose a committed entry after a crash.
    2. Send ``messages`` (in any order; the network may drop or reorder them). A driver may
       send some of them before the sync instead: see :meth:`take_early_messages`.
    3. Apply: first, if ``snapshot`` is set, restore the state machine from
       it; then ``committed_entries``, in order. NOOP entries carry no data;
       CONF_CHANGE entries carry a membership change the core has already
       taken into account (decode with ``confchange.decode_entry`` to see it).
    4. Serve the reads in ``read_states`` once the state machine has applied
       their ``index`` (at once if it already has).
    5. Call ``advance(ready)``.

    ``soft_state`` is informational (leader or role changed since the last Ready).
    """

    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    soft_state: SoftState | None = None
    snapshot: Snapshot | None = None
    compaction: Compaction | None = None
    read_states: list[ReadState] = field(default_factory=list)
    # The hard state's term or vote changed (not only its commit index): it must reach the disk
    # before the messages leave. A commit index alone needn't: a restart learns it again.
    hard_state_changed: bool = False

    def must_sync(self) -> bool:
        """Whether ``storage.sync()`` must run before the messages are sent (etcd's MustSync):
        new entries, a new term or vote, or a snapshot to keep."""
        return (
            self.hard_state_changed
            or bool(self.entries)
            or self.snapshot is not None
            or self.compaction is not None
        )

    def take_early_messages(self) -> list[Message]:
        """Remove from ``messages`` and return those that may be sent before the sync: a leader's
        appends, heartbeats and commit notices, when the term and vote are already durable (the
        last Ready's sync made them so: ``hard_state_changed`` is false) and no snapshot is being
        installed. Raft lets a leader write its log in parallel with replicating it (Ongaro's
        thesis, §10.2.1): it counts itself toward a commit only for entries its own disk holds
        (the core moves its own match in ``advance``), so an entry that commits while the leader
        still syncs it is on the disks of a majority of the others. The commit index these
        messages carry is committed already. Everything that acknowledges something (append and
        vote answers, snapshot answers) stays for after the sync."""
        if self.hard_state_changed or self.snapshot is not None or not self.messages:
            return []
        early, rest = [], []
        for m in self.messages:
            (early if isinstance(m, _EARLY) else rest).append(m)
        self.messages = rest
        return early

    def is_empty(self) -> bool:
        return not (
            self.hard_state is not None
            or self.entries
            or self.messages
            or self.committed_entries
            or self.soft_state is not None
            or self.snapshot is not None
            or self.compaction is not None
            or self.read_states
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
    snapshot_threshold: int = 10_000  # snapshot_due() once this many entries applied since the last (0: never)
    snapshot_trailing: int = 1_000  # entries kept behind a snapshot, so slightly slow followers need no snapshot
    snapshot_chunk_bytes: int = 1 << 20  # InstallSnapshot chunk size
    max_voters: int = 5  # voters kept at most; further members are learners (0: no limit)
    auto_promote: bool = True  # leader promotes caught-up learners and replaces voters that are down
    promote_lag: int = 100  # a learner this many entries behind the leader still counts as caught up
    voter_down_ticks: int = 30  # a voter unheard for this long is replaced by a caught-up learner
    lease_reads: bool = False  # serve reads on the leader's lease, no heartbeat round (needs bounded clock drift)

    def __post_init__(self) -> None:
        ints = {
            "election_ticks": self.election_ticks,
            "heartbeat_ticks": self.heartbeat_ticks,
            "max_entries_per_msg": self.max_entries_per_msg,
            "max_bytes_per_msg": self.max_bytes_per_msg,
            "max_inflight": self.max_inflight,
            "max_entry_bytes": self.max_entry_bytes,
            "max_uncommitted_bytes": self.max_uncommitted_bytes,
            "snapshot_threshold": self.snapshot_threshold,
            "snapshot_trailing": self.snapshot_trailing,
            "snapshot_chunk_bytes": self.snapshot_chunk_bytes,
            "max_voters": self.max_voters,
            "promote_lag": self.promote_lag,
            "voter_down_ticks": self.voter_down_ticks,
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
        for name in ("pre_vote", "check_quorum", "forward_proposals", "auto_promote", "lease_reads"):
            if type(getattr(self, name)) is not bool:
                raise ConfigError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        for name in ("max_uncommitted_bytes", "snapshot_threshold", "snapshot_trailing", "max_voters", "promote_lag"):
            if ints[name] < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.snapshot_chunk_bytes < 1:
            raise ConfigError("snapshot_chunk_bytes must be at least 1")
        if self.voter_down_ticks < self.election_ticks:
            raise ConfigError("voter_down_ticks must be at least election_ticks")
        if self.lease_reads and not self.check_quorum:
            raise ConfigError("lease_reads needs check_quorum: the lease is the quorum check")
