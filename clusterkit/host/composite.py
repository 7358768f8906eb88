"""Several state machines on one Raft log: entries go to the part their first byte names.

A node hosting both the cluster state (its :class:`~clusterkit.facade.ClusterKit`)
and application data (say a :class:`~.registers.RegisterMap`) gives the host
one ``Composite``: entries starting with a registered tag go to that part,
everything else to the default part. The snapshot holds every part's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from ..raft.messages import Entry
from .machine import StateMachine


class Composite:
    def __init__(self, default: StateMachine, tagged: Mapping[bytes, StateMachine]) -> None:
        if any(len(tag) != 1 for tag in tagged):
            raise ValueError("tags are single bytes")
        self.default = default
        self.tagged = dict(tagged)

    def attach(self, host: Any) -> None:
        for part in (self.default, *self.tagged.values()):
            if hasattr(part, "attach"):
                part.attach(host)

    def tick(self) -> None:
        for part in (self.default, *self.tagged.values()):
            tick = getattr(part, "tick", None)
            if tick is not None:
                tick()

    def apply_entry(self, entry: Entry) -> Any:
        part = self.tagged.get(entry.data[:1])
        if part is not None:
            return part.apply_entry(entry)
        # Raft's own entries (NOOP, CONF_CHANGE) go to every part: each may count or ignore them.
        for other in self.tagged.values():
            other.apply_entry(entry)
        return self.default.apply_entry(entry)

    def snapshot(self) -> bytes:
        parts = {tag: part.snapshot() for tag, part in self.tagged.items()}
        return msgpack.packb([self.default.snapshot(), parts], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        if not data:
            for part in (self.default, *self.tagged.values()):
                part.restore(b"")
            return
        default, parts = msgpack.unpackb(data, raw=False)
        self.default.restore(default)
        for tag, part in self.tagged.items():
            part.restore(parts.get(tag, b""))
