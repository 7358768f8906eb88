"""The one msgpack codec for Raft messages.

Wire form: a msgpack array ``[tag, field1, field2, ...]`` with fields in
dataclass order; entries are ``[term, index, data, type]``. Positional arrays
keep frames small and decoding cheap. Decoding validates everything: an
unknown tag, a wrong field count or a wrong field type raises
:class:`CodecError` and never yields a half-built message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import msgpack

from .confchange import decode_entry
from .errors import CodecError
from .messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryType,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)

# Stable wire tags: never renumber, only add.
_TAGS: MappingProxyType[type, int] = MappingProxyType(
    {
        AppendEntries: 1,
        AppendResponse: 2,
        RequestVote: 3,
        VoteResponse: 4,
        Heartbeat: 5,
        HeartbeatResponse: 6,
        Propose: 7,
        InstallSnapshot: 8,
        SnapshotResponse: 9,
        TimeoutNow: 10,
        ReadIndex: 11,
        ReadIndexResponse: 12,
    }
)


_CONF_CHANGE = int(EntryType.CONF_CHANGE)


def _check_int(v: Any) -> bool:
    return type(v) is int and v >= 0


def _check_str(v: Any) -> bool:
    return type(v) is str


def _check_bool(v: Any) -> bool:
    return type(v) is bool


def _check_bytes(v: Any) -> bool:
    return type(v) is bytes


def _check_optstr(v: Any) -> bool:
    return v is None or type(v) is str


def _check_strlist(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


_CHECKS: MappingProxyType[str, Callable[[Any], bool]] = MappingProxyType(
    {
        "int": _check_int,
        "str": _check_str,
        "bool": _check_bool,
        "bytes": _check_bytes,
        "str | None": _check_optstr,
        "list[str]": _check_strlist,
    }
)


def _field_specs(cls: type) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, str(f.type)) for f in dataclasses.fields(cls))


_SPECS: MappingProxyType[int, tuple[type, tuple[tuple[str, str], ...]]] = MappingProxyType(
    {tag: (cls, _field_specs(cls)) for cls, tag in _TAGS.items()}
)


def _entries_from_wire(raw: Any, where: str) -> list[Entry]:
    if type(raw) is not list:
        raise CodecError(f"{where}: entries must be an array, got {type(raw).__name__}")
    out: list[Entry] = []
    for i, item in enumerate(raw):
        if type(item) is not list or len(item) != 4:
            raise CodecError(f"{where}: entry {i} must be [term, index, data, type]")
        term, index, data, etype = item
        # The _check_* rules inlined: this loop runs for every entry of every append.
        if not (
            type(term) is int
            and type(index) is int
            and type(data) is bytes
            and type(etype) is int
            and term >= 0
            and index >= 0
            and etype >= 0
        ):
            raise CodecError(f"{where}: entry {i} has a field of the wrong type")
        if etype > 1:  # one comparison on the hot path: only CONF_CHANGE (2) is valid above NOOP
            if etype != _CONF_CHANGE:
                raise CodecError(f"{where}: entry {i} has unknown entry type {etype}")
            try:
                decode_entry(data)
            except CodecError as exc:
                raise CodecError(f"{where}: entry {i}: {exc}") from None
        out.append(Entry(term, index, data, etype))
    return out


# Per tag, precomputed once: the class, and per field its name, its check (None for entries) and
# whether it holds entries. The loops below run for every message sent or received.
_FAST: MappingProxyType[int, tuple[type, tuple[tuple[str, Callable[[Any], bool] | None], ...]]] = MappingProxyType(
    {
        tag: (cls, tuple((name, None if kind == "list[Entry]" else _CHECKS[kind]) for name, kind in fields))
        for tag, (cls, fields) in _SPECS.items()
    }
)


def to_wire(msg: Message) -> list[Any]:
    """The msgpack-ready array for ``msg`` (exposed for drivers that batch frames)."""
    tag = _TAGS.get(type(msg))
    if tag is None:
        raise CodecError(f"cannot encode {type(msg).__name__}: not a Raft message")
    out: list[Any] = [tag]
    for name, check in _FAST[tag][1]:
        value = getattr(msg, name)
        out.append(value if check is not None else [[e.term, e.index, e.data, e.type] for e in value])
    return out


def from_wire(raw: Any) -> Message:
    """Validate a decoded msgpack array and build the message it describes."""
    if type(raw) is not list or not raw:
        raise CodecError("a message must be a non-empty array")
    tag = raw[0]
    spec = _FAST.get(tag) if type(tag) is int else None
    if spec is None:
        raise CodecError(f"unknown message type tag {tag!r}")
    cls, fields = spec
    if len(raw) != len(fields) + 1:
        raise CodecError(
            f"{cls.__name__}: expected {len(fields)} fields, got {len(raw) - 1}"
        )
    values: list[Any] = raw[1:]
    for i, (name, check) in enumerate(fields):
        value = values[i]
        if check is None:
            values[i] = _entries_from_wire(value, f"{cls.__name__}.{name}")
        elif not check(value):
            kind = dict(_SPECS[tag][1])[name]
            raise CodecError(
                f"{cls.__name__}.{name}: expected {kind}, got {type(value).__name__} {value!r:.40}"
            )
    return cls(*values)


def encode(msg: Message) -> bytes:
    return msgpack.packb(to_wire(msg), use_bin_type=True)


def decode(data: bytes) -> Message:
    try:
        raw = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CodecError(f"malformed msgpack frame: {exc}") from None
    return from_wire(raw)
