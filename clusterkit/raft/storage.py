"""Durable Raft state: the ``Storage`` protocol and an in-memory implementation.

The core never writes storage itself. A driver takes a :class:`~.ready.Ready`,
writes its hard state and entries here, calls ``sync()``, and only then sends
the Ready's messages. The core reads storage once, when a node starts, to
rebuild its log; after that it keeps the (compacted) log in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import StorageError
from .messages import ConfState, Entry, HardState


@runtime_checkable
class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The last synced hard state and membership."""
        ...

    def first_index(self) -> int:
        """Index of the first entry held (1 when nothing was ever compacted)."""
        ...

    def last_index(self) -> int:
        """Index of the last entry held (first_index() - 1 when empty)."""
        ...

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi."""
        ...

    def append(self, entries: list[Entry]) -> None:
        """Store entries; an entry at an index already held replaces it and everything after it."""
        ...

    def set_hard_state(self, hs: HardState) -> None: ...

    def set_conf_state(self, cs: ConfState) -> None: ...

    def sync(self) -> None:
        """Make every earlier write durable (fsync). Called before messages are sent."""
        ...


@dataclass
class _Image:
    hard_state: HardState = field(default_factory=HardState)
    conf_state: ConfState = field(default_factory=ConfState)
    entries: list[Entry] = field(default_factory=list)  # entries[i].index == i + 1

    def append(self, ents: list[Entry]) -> None:
        if not ents:
            return
        first = ents[0].index
        if first > len(self.entries) + 1:
            raise StorageError(
                f"append at index {first} leaves a gap after last index {len(self.entries)}"
            )
        del self.entries[first - 1 :]
        self.entries.extend(ents)

    def copy(self) -> _Image:
        return _Image(self.hard_state, self.conf_state, list(self.entries))


class MemoryStorage:
    """In-memory storage with an fsync model.

    Writes land in a page-cache image immediately (reads see them) and reach
    the durable image on ``sync()``. ``crash()`` throws away what was written
    but not synced, as a power cut would: tests use it to check that the core
    never relies on unsynced state.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        self._durable = _Image(conf_state=conf_state or ConfState())
        self._current = self._durable.copy()
        self._pending: list[tuple[str, object]] = []

    # -- reads ---------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._current.hard_state, self._current.conf_state

    def first_index(self) -> int:
        return 1

    def last_index(self) -> int:
        return len(self._current.entries)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo < 1 or hi > len(self._current.entries) + 1 or lo > hi:
            raise StorageError(f"entries [{lo}, {hi}) out of range [1, {self.last_index() + 1})")
        return self._current.entries[lo - 1 : hi - 1]

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

    def sync(self) -> None:
        durable = self._durable
        for op, arg in self._pending:
            if op == "append":
                durable.append(arg)  # type: ignore[arg-type]
            elif op == "hard_state":
                durable.hard_state = arg  # type: ignore[assignment]
            else:
                durable.conf_state = arg  # type: ignore[assignment]
        self._pending.clear()

    # -- fault injection -----------------------------------------------------
    @property
    def unsynced_writes(self) -> int:
        return len(self._pending)

    def crash(self) -> None:
        """Lose every write since the last ``sync()``."""
        self._pending.clear()
        self._current = self._durable.copy()
