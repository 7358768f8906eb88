"""Durable Raft state: the ``Storage`` protocol and an in-memory implementation.

The core never writes storage itself. A driver takes a :class:`~.ready.Ready`,
writes it here (:func:`write_ready` does it in the right order), calls
``sync()``, and only then sends the Ready's messages. The core reads storage
once, when a node starts, to rebuild its log; after that it keeps the
(compacted) log in memory.

A storage holds: the hard state, the bootstrap membership, the latest
snapshot, and the log after a compaction point (``first_index() - 1``, whose
term is still known so the consistency check works across it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import StorageError
from .messages import ConfState, Entry, HardState, Snapshot
from .ready import Ready


@runtime_checkable
class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The last synced hard state and the bootstrap membership (empty for a node joining later)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot (``Snapshot()``, index 0, when none was ever taken)."""
        ...

    def first_index(self) -> int:
        """Index of the first entry held (1 when nothing was ever compacted)."""
        ...

    def last_index(self) -> int:
        """Index of the last entry held (first_index() - 1 when empty)."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at ``index``, for first_index() - 1 <= index <= last_index()."""
        ...

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi."""
        ...

    def append(self, entries: list[Entry]) -> None:
        """Store entries; an entry at an index already held replaces it and everything after it."""
        ...

    def set_hard_state(self, hs: HardState) -> None: ...

    def set_conf_state(self, cs: ConfState) -> None: ...

    def save_snapshot(self, snap: Snapshot) -> None:
        """Keep ``snap`` (taken locally) as the latest snapshot; the log is untouched."""
        ...

    def compact(self, index: int) -> None:
        """Drop the entries up to ``index`` (at most the snapshot's index)."""
        ...

    def apply_snapshot(self, snap: Snapshot) -> None:
        """A snapshot received from the leader replaces the snapshot and the whole log."""
        ...

    def sync(self) -> None:
        """Make every earlier write durable (fsync). Called before messages are sent."""
        ...


def write_ready(storage: Storage, rd: Ready) -> bool:
    """Write what ``rd`` asks to persist, in order; returns whether ``storage.sync()`` is needed."""
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot)
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    if rd.compaction is not None:
        storage.save_snapshot(rd.compaction.snapshot)
        storage.compact(rd.compaction.compact_to)
    return rd.must_sync()


@dataclass
class _Image:
    hard_state: HardState = field(default_factory=HardState)
    conf_state: ConfState = field(default_factory=ConfState)
    snap: Snapshot = field(default_factory=Snapshot)
    offset: int = 0  # index just before entries[0]
    offset_term: int = 0
    entries: list[Entry] = field(default_factory=list)  # entries[i].index == offset + i + 1

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def append(self, ents: list[Entry]) -> None:
        if not ents:
            return
        first = ents[0].index
        if first > self.last_index() + 1:
            raise StorageError(f"append at index {first} leaves a gap after last index {self.last_index()}")
        if first <= self.offset:
            # Already covered by the compacted prefix (committed, so identical): keep the rest.
            ents = ents[self.offset - first + 1 :]
            if not ents:
                return
            first = ents[0].index
        del self.entries[first - self.offset - 1 :]
        self.entries.extend(ents)

    def term(self, index: int) -> int:
        if index == self.offset:
            return self.offset_term
        if not self.offset < index <= self.last_index():
            raise StorageError(f"no term for index {index}: held are {self.offset}..{self.last_index()}")
        return self.entries[index - self.offset - 1].term

    def compact(self, index: int) -> None:
        if index <= self.offset:
            return
        if index > self.snap.meta.index or index > self.last_index():
            raise StorageError(
                f"cannot compact to {index}: snapshot covers {self.snap.meta.index}, log ends at {self.last_index()}"
            )
        term = self.term(index)
        del self.entries[: index - self.offset]
        self.offset, self.offset_term = index, term

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.snap = snap
        self.offset, self.offset_term = snap.meta.index, snap.meta.term
        self.entries = []

    def copy(self) -> _Image:
        return _Image(self.hard_state, self.conf_state, self.snap, self.offset, self.offset_term, list(self.entries))


class MemoryStorage:
    """In-memory storage with an fsync model.

    Writes land in a page-cache image immediately (reads see them) and reach
    the durable image on ``sync()``, or in three steps as on net/disk.py's
    DiskStorage: :meth:`prepare_sync` (the record: the writes so far),
    :meth:`write_record` (they reach the disk: the step a driver runs later, or
    elsewhere), :meth:`finish_sync`. ``crash()`` throws away what was written
    but not synced, as a power cut would, a record under way included: tests
    and the simulator use it to check that the core never relies on unsynced
    state.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        self._durable = _Image(conf_state=conf_state or ConfState())
        self._current = self._durable.copy()
        self._pending: list[tuple[str, object]] = []
        self._record = 0  # pending writes in the record under way (prepare_sync .. finish_sync)
        self._written = 0  # of those, already on the disk (write_record returned)

    # -- reads ---------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._current.hard_state, self._current.conf_state

    def snapshot(self) -> Snapshot:
        return self._current.snap

    def first_index(self) -> int:
        return self._current.offset + 1

    def last_index(self) -> int:
        return self._current.last_index()

    def term(self, index: int) -> int:
        return self._current.term(index)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        img = self._current
        if lo <= img.offset or hi > img.last_index() + 1 or lo > hi:
            raise StorageError(f"entries [{lo}, {hi}) out of range [{img.offset + 1}, {img.last_index() + 1})")
        return img.entries[lo - img.offset - 1 : hi - img.offset - 1]

    # -- writes --------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        if entries:
            self._current.append(entries)
            self._pending.append(("append", entries))

    def set_hard_state(self, hs: HardState) -> None:
        self._current.hard_state = hs
        self._pending.append(("hard_state", hs))

    def set_conf_state(self, cs: ConfState) -> None:
        self._current.conf_state = cs
        self._pending.append(("conf_state", cs))

    def save_snapshot(self, snap: Snapshot) -> None:
        if snap.meta.index < self._current.snap.meta.index:
            raise StorageError(
                f"snapshot at {snap.meta.index} is older than the one held ({self._current.snap.meta.index})"
            )
        self._current.snap = snap
        self._pending.append(("save_snapshot", snap))

    def compact(self, index: int) -> None:
        self._current.compact(index)
        self._pending.append(("compact", index))

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._current.apply_snapshot(snap)
        self._pending.append(("apply_snapshot", snap))

    def sync(self) -> None:
        self._flush(self._pending[self._written :])
        self._pending.clear()
        self._record = self._written = 0

    def prepare_sync(self) -> int | None:
        """The record that makes the writes so far durable (how many they are), for
        :meth:`write_record` then :meth:`finish_sync`; None when there is nothing to sync."""
        if self._record:
            raise StorageError("a sync is already under way")
        if not self._pending:
            return None
        self._record = len(self._pending)
        return self._record

    def write_record(self, record: int) -> None:
        """The record's writes reach the disk (a crash from now on keeps them)."""
        if record != self._record or self._written:
            raise StorageError(f"record of {record} writes is not the one under way ({self._record})")
        self._flush(self._pending[:record])
        self._written = record

    def finish_sync(self, record: int) -> None:
        if record != self._record or self._written != record:
            raise StorageError(f"record of {record} writes was not written")
        del self._pending[:record]
        self._record = self._written = 0

    def _flush(self, writes: list[tuple[str, object]]) -> None:
        durable = self._durable
        for op, arg in writes:
            if op == "append":
                durable.append(arg)  # type: ignore[arg-type]
            elif op == "hard_state":
                durable.hard_state = arg  # type: ignore[assignment]
            elif op == "conf_state":
                durable.conf_state = arg  # type: ignore[assignment]
            elif op == "save_snapshot":
                durable.snap = arg  # type: ignore[assignment]
            elif op == "compact":
                durable.compact(arg)  # type: ignore[arg-type]
            else:
                durable.apply_snapshot(arg)  # type: ignore[arg-type]

    # -- fault injection -----------------------------------------------------
    @property
    def unsynced_writes(self) -> int:
        return len(self._pending) - self._written

    def crash(self, keep_writes: int = 0, keep_entries: int = 0) -> None:
        """Lose every write since the last ``sync()``, except that the first ``keep_writes`` of
        them reached the disk anyway (the OS flushed them on its own), and of the write after
        those, if it appends entries, the first ``keep_entries`` did: a torn write at the log's
        tail. Writes reach the disk in order, so what survives is always a prefix. A record under
        way (prepare_sync, not yet written) is unsynced writes like any other: it may be torn."""
        pending = self._pending[self._written :]
        survivors = pending[:keep_writes]
        nxt = pending[keep_writes] if keep_writes < len(pending) else None
        if nxt is not None and nxt[0] == "append" and keep_entries > 0:
            survivors.append(("append", nxt[1][:keep_entries]))  # type: ignore[index]
        self._flush(survivors)
        self._pending.clear()
        self._record = self._written = 0
        self._current = self._durable.copy()
