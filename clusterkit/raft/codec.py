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
    MAX_NUMBER,
    AppendEntries,
    AppendResponse,
    CommitNotice,
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
        CommitNotice: 13,
    }
)


_CONF_CHANGE = int(EntryType.CONF_CHANGE)


def _check_int(v: Any) -> bool:
    return type(v) is int and 0 <= v < MAX_NUMBER


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
            and 0 <= term < MAX_NUMBER
            and 0 <= index < MAX_NUMBER
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


_INLINE_CHECKS: MappingProxyType[str, str] = MappingProxyType(
    {
        "int": "type({v}) is int and 0 <= {v} < MAX_NUMBER",
        "str": "type({v}) is str",
        "bool": "type({v}) is bool",
        "bytes": "type({v}) is bytes",
        "str | None": "({v} is None or type({v}) is str)",
        "list[str]": "(type({v}) is list and all(type(x) is str for x in {v}))",
        "list[Entry]": "True",  # checked entry by entry in _entries_from_wire
    }
)


def _compile(tag: int, cls: type, fields: tuple[tuple[str, str], ...]) -> tuple[Callable[[Any], list[Any]],
                                                                              Callable[[list[Any]], Any]]:
    """An encoder and a decoder for one message class, generated once (as dataclasses generates
    __init__): every field's check inlined in one expression, no per-field calls or loops. Only a
    message that fails the checks takes the generic path below, which names the field."""
    enc = ", ".join(
        f"[[e.term, e.index, e.data, e.type] for e in m.{n}]" if kind == "list[Entry]" else f"m.{n}"
        for n, kind in fields
    )
    checks = " and ".join(_INLINE_CHECKS[kind].format(v=f"v{i}") for i, (_, kind) in enumerate(fields))
    unpack = ", ".join(f"v{i}" for i in range(len(fields)))
    entries = "".join(
        f"    v{i} = _entries_from_wire(v{i}, '{cls.__name__}.{n}')\n"
        for i, (n, kind) in enumerate(fields)
        if kind == "list[Entry]"
    )
    source = (
        f"def encode_{cls.__name__}(m):\n    return [{tag}, {enc}]\n"
        f"def decode_{cls.__name__}(raw):\n"
        f"    if len(raw) != {len(fields) + 1}:\n        return _from_wire_slow(raw)\n"
        f"    _, {unpack}{',' if len(fields) == 1 else ''} = raw\n"
        f"    if not ({checks or 'True'}):\n        return _from_wire_slow(raw)\n"
        f"{entries}"
        f"    return cls({unpack})\n"
    )
    namespace: dict[str, Any] = {"cls": cls, "_entries_from_wire": _entries_from_wire, "MAX_NUMBER": MAX_NUMBER,
                                 "_from_wire_slow": _from_wire_slow}
    exec(compile(source, f"<codec for {cls.__name__}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace[f"encode_{cls.__name__}"], namespace[f"decode_{cls.__name__}"]


def to_wire(msg: Message) -> list[Any]:
    """The msgpack-ready array for ``msg`` (exposed for drivers that batch frames)."""
    encoder = _ENCODERS.get(type(msg))
    if encoder is None:
        raise CodecError(f"cannot encode {type(msg).__name__}: not a Raft message")
    return encoder(msg)


def from_wire(raw: Any) -> Message:
    """Validate a decoded msgpack array and build the message it describes."""
    if type(raw) is not list or not raw:
        raise CodecError("a message must be a non-empty array")
    tag = raw[0]
    decoder = _DECODERS.get(tag) if type(tag) is int else None
    if decoder is None:
        raise CodecError(f"unknown message type tag {tag!r}")
    return decoder(raw)


def _from_wire_slow(raw: list[Any]) -> Message:
    """The generic path, for a message that failed the fast checks: the error names the field."""
    cls, fields = _FAST[raw[0]]
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
            kind = dict(_SPECS[raw[0]][1])[name]
            if kind == "int" and type(value) is int:
                raise CodecError(f"{cls.__name__}.{name}: {value} is out of range (0 to {MAX_NUMBER - 1})")
            raise CodecError(
                f"{cls.__name__}.{name}: expected {kind}, got {type(value).__name__} {value!r:.40}"
            )
    return cls(*values)


_COMPILED = {tag: _compile(tag, cls, fields) for tag, (cls, fields) in _SPECS.items()}
_ENCODERS: MappingProxyType[type, Callable[[Any], list[Any]]] = MappingProxyType(
    {_SPECS[tag][0]: enc for tag, (enc, _) in _COMPILED.items()}
)
_DECODERS: MappingProxyType[int, Callable[[list[Any]], Any]] = MappingProxyType(
    {tag: dec for tag, (_, dec) in _COMPILED.items()}
)


def encode(msg: Message) -> bytes:
    return msgpack.packb(to_wire(msg), use_bin_type=True)


def decode(data: bytes) -> Message:
    try:
        raw = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CodecError(f"malformed msgpack frame: {exc}") from None
    return from_wire(raw)
