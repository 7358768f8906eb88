"""The Raft log as one node sees it: entries, and how far they are stable, committed, applied.

Indexes: ``offset`` is the index just before the first entry held (0 until a
snapshot compacts the log), ``stable`` the last index synced to storage,
``committed`` the last index known committed, ``applied`` the last index
handed to the state machine. Always: offset <= applied <= committed <= last_index.
``conf_indexes`` lists, in order, the indexes of the CONF_CHANGE entries held,
so the node finds its configuration without scanning the log.
"""

from __future__ import annotations

from .errors import StorageError
from .messages import Entry, EntryType

_CONF = int(EntryType.CONF_CHANGE)


class RaftLog:
    __slots__ = ("offset", "offset_term", "entries", "stable", "committed", "applied", "conf_indexes", "_persisting",
                 "truncations")

    def __init__(self, entries: list[Entry], offset: int = 0, offset_term: int = 0) -> None:
        self.offset = offset
        self.offset_term = offset_term
        self.entries = entries
        self.stable = self.last_index()
        self.committed = offset
        self.applied = offset
        self.conf_indexes = [e.index for e in entries if e.type == _CONF]
        # Last index handed to the driver in an unacknowledged Ready; pulled
        # back when a conflicting leader truncates what was handed out.
        self._persisting = self.stable
        # Times entries held were dropped other than by compaction (a conflicting leader's entries
        # replaced them, or a received snapshot replaced the log): lets the host skip looking for
        # proposals that lost their entry when nothing was ever dropped.
        self.truncations = 0

    # -- queries -------------------------------------------------------------
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``, or None if not held (compacted or beyond the end)."""
        if index == self.offset:
            return self.offset_term
        i = index - self.offset - 1
        if 0 <= i < len(self.entries):
            return self.entries[i].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi."""
        if lo <= self.offset:
            raise StorageError(f"entry {lo} is compacted (log starts after {self.offset})")
        return self.entries[lo - self.offset - 1 : hi - self.offset - 1]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a log ending at (last_index, last_term) at least as up to date as ours (§5.4.1)?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i <= index and term(i) <= term: the fast-backtracking hint."""
        index = min(index, self.last_index())
        while index > self.offset:
            t = self.entries[index - self.offset - 1].term
            if t <= term:
                return index, t
            index -= 1
        return self.offset, self.offset_term

    # -- mutation ------------------------------------------------------------
    def append(self, entries: list[Entry], normal_only: bool = False) -> None:
        """Leader path: entries follow the current last index (``normal_only``: no conf change among them)."""
        self.entries.extend(entries)
        if not normal_only:
            self.conf_indexes.extend([e.index for e in entries if e.type == _CONF])

    def maybe_append(self, index: int, log_term: int, commit: int, entries: list[Entry]) -> int | None:
        """Follower path: the consistency check, then append. Returns the new last matching index."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(f"entry {conflict} conflicts with committed entry (commit {self.committed})")
            self._truncate_and_append(entries[conflict - index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def _find_conflict(self, entries: list[Entry]) -> int:
        """First index in ``entries`` that is new or disagrees with ours; 0 if all are held."""
        last = self.last_index()
        for e in entries:
            if e.index > last:
                return e.index
            if self.term(e.index) != e.term:
                return e.index
        return 0

    def _truncate_and_append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        if first <= self.offset:
            raise AssertionError(f"cannot overwrite compacted entry {first}")
        del self.entries[first - self.offset - 1 :]
        self.truncations += 1
        while self.conf_indexes and self.conf_indexes[-1] >= first:
            self.conf_indexes.pop()
        self.append(entries)
        self.stable = min(self.stable, first - 1)
        self._persisting = min(self._persisting, first - 1)

    def compact(self, index: int) -> None:
        """Drop the entries up to ``index`` (which must be applied): a snapshot now covers them."""
        if index <= self.offset:
            return
        if index > self.applied:
            raise AssertionError(f"cannot compact to {index}: only {self.applied} applied")
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.offset]
        self.offset, self.offset_term = index, term
        while self.conf_indexes and self.conf_indexes[0] <= index:
            self.conf_indexes.pop(0)

    def restore(self, index: int, term: int) -> None:
        """Install a snapshot ending at (index, term): the log restarts after it, all of it committed."""
        self.entries = []
        self.conf_indexes = []
        self.truncations += 1
        self.offset, self.offset_term = index, term
        self.stable = self._persisting = index
        self.committed = self.applied = index

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index
            return True
        return False

    # -- Ready bookkeeping ---------------------------------------------------
    def unstable_entries(self) -> list[Entry]:
        return self.entries[self.stable - self.offset :]

    def has_unstable(self) -> bool:
        return self.last_index() > self.stable

    def next_committed(self) -> list[Entry]:
        if self.committed > self.applied:
            return self.slice(self.applied + 1, self.committed + 1)
        return []

    def mark_persisting(self) -> None:
        self._persisting = self.last_index()

    def stable_to_persisting(self) -> None:
        self.stable = max(self.stable, self._persisting)

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise AssertionError(f"applied {index} beyond commit {self.committed}")
        # Smaller only when a snapshot was restored after this Ready was taken: it covers these.
        self.applied = max(self.applied, index)
