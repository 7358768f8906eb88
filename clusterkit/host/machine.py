"""The state machine a node host applies committed entries to, and the in-memory default.

A state machine sees every committed entry in log order (NOOP and
CONF_CHANGE entries too, so it can count or ignore them), can produce an
image of itself for a Raft snapshot, and can be restored from one (``b""``:
empty, as after a crash with no snapshot).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgpack

from ..raft.messages import Entry, EntryType


@runtime_checkable
class StateMachine(Protocol):
    def apply_entry(self, entry: Entry) -> Any:
        """Apply one committed entry; the return value answers the proposal that made it."""
        ...

    def snapshot(self) -> bytes:
        """An image of everything applied so far."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with ``data`` from :meth:`snapshot` (``b""``: empty)."""
        ...


def encode_applied(entries: list[Entry]) -> bytes:
    """:class:`AppliedLog`'s snapshot: every applied entry."""
    return msgpack.packb([[e.term, e.index, e.data, e.type] for e in entries], use_bin_type=True)


def decode_applied(data: bytes) -> list[Entry]:
    if not data:
        return []
    return [Entry(t, i, d, k) for t, i, d, k in msgpack.unpackb(data, raw=False)]


class AppliedLog:
    """The in-memory test state machine: the list of every entry applied, in order. Its snapshot
    is that list, so a node restored from a snapshot can be compared entry by entry with one
    that applied the log."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def apply_entry(self, entry: Entry) -> int:
        self.entries.append(entry)
        return entry.index

    def snapshot(self) -> bytes:
        return encode_applied(self.entries)

    def restore(self, data: bytes) -> None:
        self.entries = decode_applied(data)

    def data(self) -> list[bytes]:
        return [e.data for e in self.entries if e.type == EntryType.NORMAL]
