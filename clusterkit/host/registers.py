"""A replicated map of registers: the state machine the simulator's clients read and write.

Commands are ``b"R"`` + msgpack ``["put", key, value]`` (the tag lets a
:class:`~.composite.Composite` route them beside the cluster state's).
Reads don't go through the log: a client asks its node for a linearizable
read (ReadIndex) and, once the node has applied the read's index, reads
:meth:`RegisterMap.get` there.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..raft.messages import Entry, EntryType

TAG = b"R"
_NORMAL = int(EntryType.NORMAL)


def put_command(key: str, value: str) -> bytes:
    return TAG + msgpack.packb(["put", key, value], use_bin_type=True)


class RegisterMap:
    """Keys to values; every key starts as ``""`` (the checker's kv model assumes the same)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0

    def get(self, key: str) -> str:
        return self.values.get(key, "")

    def apply_entry(self, entry: Entry) -> Any:
        if entry.type != _NORMAL or entry.data[:1] != TAG:
            return None
        try:
            op, key, value = msgpack.unpackb(entry.data[1:], raw=False)
            if op != "put" or type(key) is not str or type(value) is not str:
                raise ValueError(f"not a register command: {op!r}")
        except Exception as exc:  # noqa: BLE001 - a bad entry is answered, never fatal
            return f"error: {exc}"
        self.values[key] = value
        self.writes += 1
        return "ok"

    def snapshot(self) -> bytes:
        return msgpack.packb([self.writes, self.values], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        if not data:
            self.values, self.writes = {}, 0
            return
        self.writes, values = msgpack.unpackb(data, raw=False)
        self.values = dict(values)
