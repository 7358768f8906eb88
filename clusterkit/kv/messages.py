"""The KV data path's messages, between nodes and from clients, and their msgpack form.

Every request carries a request id (``rid``) that its answer repeats, and
every request about a partition carries the partition's epoch as the sender
sees it (see :mod:`clusterkit.kv.server` for the fence). On the wire a
message is ``[tag, field, ...]``; :func:`decode` checks every field's type and
raises :class:`ProtocolError`, so a malformed frame is refused, not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack

from .records import Record


class ProtocolError(ValueError):
    """A frame that is not a well-formed KV message."""


@dataclass(frozen=True, slots=True)
class Query:
    """Node-to-node: the newest record you hold for ``key`` (ABD's first phase)."""

    TAG: ClassVar[int] = 1
    rid: int
    partition: int
    epoch: int
    key: str


@dataclass(frozen=True, slots=True)
class Store:
    """Keep ``record`` for ``key`` unless you hold a newer one (ABD's second phase)."""

    TAG: ClassVar[int] = 2
    rid: int
    partition: int
    epoch: int
    key: str
    record: Record


@dataclass(frozen=True, slots=True)
class Pull:
    """A migration batch: up to ``limit`` records of the partition with keys after ``after``."""

    TAG: ClassVar[int] = 3
    rid: int
    partition: int
    epoch: int
    after: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class Replicate:
    """ASYNC's background copy of records the primary acknowledged (merged, never fenced)."""

    TAG: ClassVar[int] = 4
    rid: int
    partition: int
    items: list[tuple[str, Record]]


@dataclass(frozen=True, slots=True)
class Set:
    """Client: write (``value`` None: delete) through the node; ``w`` raises the write quorum."""

    TAG: ClassVar[int] = 5
    rid: int
    key: str
    value: str | bytes | None
    w: int | None = None
    hops: int = 0  # forwarded this many times (a stale map can bounce a request; it stops at 2)


@dataclass(frozen=True, slots=True)
class Get:
    TAG: ClassVar[int] = 6
    rid: int
    key: str
    hops: int = 0


@dataclass(frozen=True, slots=True)
class Found:
    """Answer to Query: the record held (None: never written here)."""

    TAG: ClassVar[int] = 10
    rid: int
    record: Record | None


@dataclass(frozen=True, slots=True)
class Ack:
    TAG: ClassVar[int] = 11
    rid: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Answer to Pull; ``done`` when no key follows the last one."""

    TAG: ClassVar[int] = 12
    rid: int
    items: list[tuple[str, Record]]
    done: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """The request can't be served here now. ``reason``: ``stale`` (the sender's placement is
    older than ours: refresh), ``behind`` (ours is older: retry soon), ``not_serving``,
    ``not_primary``, ``overloaded``, ``bad_request``, ``timeout``, ``unavailable``."""

    TAG: ClassVar[int] = 13
    rid: int
    reason: str
    epoch: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """Answer to a client's Set or Get: the value read (or written) and its version."""

    TAG: ClassVar[int] = 14
    rid: int
    record: Record | None
    outcome: str = "ok"  # ok | fail (nothing written) | info (may or may not have been written)
    detail: str = ""


Message = Query | Store | Pull | Replicate | Set | Get | Found | Ack | Batch | Refused | Result
_TYPES: dict[int, Any] = {cls.TAG: cls for cls in (Query, Store, Pull, Replicate, Set, Get, Found, Ack, Batch, Refused, Result)}


def _to_wire(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_wire()
    if isinstance(value, list):
        return [[k, r.to_wire()] for k, r in value]
    return value


def encode(msg: Message) -> bytes:
    return msgpack.packb([msg.TAG, *(_to_wire(getattr(msg, f.name)) for f in fields(msg))], use_bin_type=True)


def _check(cls: Any, name: str, kind: str, value: Any) -> Any:
    """One field, by its annotation (kept as strings: ``from __future__ import annotations``)."""
    optional = kind.endswith("| None")
    if value is None and optional:
        return None
    base = kind.removesuffix(" | None")
    try:
        if base == "int":
            if type(value) is not int:
                raise ValueError("not an integer")
            return value
        if base == "str":
            if not isinstance(value, str):
                raise ValueError("not a string")
            return value
        if base == "bool":
            if type(value) is not bool:
                raise ValueError("not a boolean")
            return value
        if base == "str | bytes":
            if not isinstance(value, (str, bytes)):
                raise ValueError("not a string or bytes")
            return value
        if base == "Record":
            return Record.from_wire(value)
        if base == "list[tuple[str, Record]]":
            if not isinstance(value, list):
                raise ValueError("not a list")
            out = []
            for item in value:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise ValueError("items are [key, record]")
                out.append((item[0], Record.from_wire(item[1])))
            return out
    except ValueError as exc:
        raise ProtocolError(f"{cls.__name__}.{name}: {exc}") from None
    raise AssertionError(f"no check for {kind}")  # a field type this codec doesn't know


def from_doc(doc: Any) -> Message:
    if not (isinstance(doc, list) and doc and type(doc[0]) is int):
        raise ProtocolError("a KV message is [tag, fields...]")
    cls = _TYPES.get(doc[0])
    if cls is None:
        raise ProtocolError(f"unknown KV message type {doc[0]}")
    spec = fields(cls)
    required = sum(1 for f in spec if f.default is f.default_factory)  # fields without defaults
    values = doc[1:]
    if not required <= len(values) <= len(spec):
        raise ProtocolError(f"{cls.__name__} takes {required} to {len(spec)} fields, got {len(values)}")
    return cls(*(_check(cls, f.name, f.type, v) for f, v in zip(spec, values)))


def decode(data: bytes) -> Message:
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - any undecodable frame is refused
        raise ProtocolError(f"undecodable KV message: {exc}") from None
    return from_doc(doc)
