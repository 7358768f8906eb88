"""The KV data path's messages, between nodes and from clients, and their msgpack form.

Every request carries a request id (``rid``) that its answer repeats, and
every request about a partition carries the partition's epoch as the sender
sees it (see :mod:`clusterkit.kv.server` for the fence). On the wire a
message is ``[tag, field, ...]``; :func:`decode` checks every field's type and
raises :class:`ProtocolError`, so a malformed frame is refused, not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from collections.abc import Callable
from types import MemberDescriptorType
from typing import Any, ClassVar

import msgpack

from ..raft.messages import MAX_NUMBER
from .records import Record, make_record


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
    floor: int = 0  # the highest floor the writer's query saw: a copy with a higher one refuses
    refreshed: bool = False  # its version was chosen at an older placement (see KVServer's Store)


@dataclass(frozen=True, slots=True)
class Pull:
    """A migration or repair batch: up to ``limit`` records of the partition changed after the
    source's change number ``after`` (0: from the start)."""

    TAG: ClassVar[int] = 3
    rid: int
    partition: int
    epoch: int
    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class Sums:
    """Anti-entropy: your bucket digests of the partition."""

    TAG: ClassVar[int] = 7
    rid: int
    partition: int
    epoch: int


@dataclass(frozen=True, slots=True)
class Fetch:
    """Anti-entropy: your records of the partition in these buckets, keys after ``after``."""

    TAG: ClassVar[int] = 8
    rid: int
    partition: int
    epoch: int
    buckets: list[int]
    after: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class Replicate:
    """ASYNC's background copy of records the primary acknowledged (merged, never fenced), for
    every partition one peer is owed at once: ``items`` holds ``counts[i]`` records of
    ``partitions[i]``, in that order, sent when the primary's floor there was ``floors[i]``.
    Answered by Ack when every partition took its records, else by Replicated."""

    TAG: ClassVar[int] = 4
    rid: int
    partitions: list[int]
    floors: list[int]
    counts: list[int]
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
    floor: int = 0  # this copy's floor for the partition: a new version goes above it


@dataclass(frozen=True, slots=True)
class Ack:
    TAG: ClassVar[int] = 11
    rid: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Answer to Pull (``cursor``: the change number to ask after next) or Fetch; ``done`` when
    nothing follows. ``life``: the source's incarnation, whose change numbers the cursor counts (a
    restart replays its log, a compacted one to fewer changes: a cursor from before means nothing)."""

    TAG: ClassVar[int] = 12
    rid: int
    items: list[tuple[str, Record]]
    done: bool
    cursor: int = 0
    floor: int = 0  # the source's floor when it read them
    life: int = 0


@dataclass(frozen=True, slots=True)
class Digest:
    """Answer to Sums: one digest per bucket."""

    TAG: ClassVar[int] = 15
    rid: int
    sums: list[int]


@dataclass(frozen=True, slots=True)
class Refused:
    """The request can't be served here now. ``reason``: ``stale`` (the sender's placement is
    older than ours: refresh), ``behind`` (ours is older: retry soon), ``not_serving``,
    ``not_primary``, ``overloaded``, ``bad_request``, ``timeout``, ``unavailable``,
    ``collected`` (this copy collected tombstones since the sender's query: ``floor`` is ours;
    query again)."""

    TAG: ClassVar[int] = 13
    rid: int
    reason: str
    epoch: int = 0
    detail: str = ""
    floor: int = 0


@dataclass(frozen=True, slots=True)
class Have:
    """Tombstone collection, from the partition's primary: which of these tombstones do you hold
    exactly (or have collected already)?"""

    TAG: ClassVar[int] = 16
    rid: int
    partition: int
    epoch: int
    items: list[tuple[str, Record]]


@dataclass(frozen=True, slots=True)
class Has:
    """Answer to Have: the indexes of the tombstones held (or collected), and this copy's floor."""

    TAG: ClassVar[int] = 17
    rid: int
    held: list[int]
    floor: int


@dataclass(frozen=True, slots=True)
class Collect:
    """Every copy holds these tombstones: raise your floor to ``floor`` and remove them (a key
    holding anything else stays). Safe at any time, so not fenced by epoch; answered by Ack."""

    TAG: ClassVar[int] = 18
    rid: int
    partition: int
    floor: int
    items: list[tuple[str, Record]]


@dataclass(frozen=True, slots=True)
class Replicated:
    """Answer to a Replicate some of whose partitions were not taken: those in ``again`` are to be
    sent again, once the sender has taken this copy's floor there (``floors``: tombstones were
    collected here since the sender's); those in ``dropped`` not (this copy doesn't serve them)."""

    TAG: ClassVar[int] = 19
    rid: int
    again: list[int]
    floors: list[int]
    dropped: list[int]


@dataclass(frozen=True, slots=True)
class Result:
    """Answer to a client's Set or Get: the value read (or written) and its version."""

    TAG: ClassVar[int] = 14
    rid: int
    record: Record | None
    outcome: str = "ok"  # ok | fail (nothing written) | info (may or may not have been written)
    detail: str = ""


Message = (Query | Store | Pull | Sums | Fetch | Replicate | Set | Get | Found | Ack | Batch | Digest | Refused
           | Result | Have | Has | Collect | Replicated)
_TYPES: dict[int, Any] = {
    cls.TAG: cls
    for cls in (Query, Store, Pull, Sums, Fetch, Replicate, Set, Get, Found, Ack, Batch, Digest, Refused, Result,
                Have, Has, Collect, Replicated)
}


def _record_out(value: Any) -> Any:
    return value.to_wire() if value is not None else None


def _items_out(value: Any) -> Any:
    return [[k, r.to_wire()] for k, r in value]


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError("not an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("not a boolean")
    return value


def _value(value: Any) -> Any:
    if not isinstance(value, (str, bytes)):
        raise ValueError("not a string or bytes")
    return value


_INT_ONLY = frozenset((int,))


def _ints(value: Any) -> list[int]:
    # (the element types gathered in C: a Digest carries 1,024 of them; bool is not int here)
    if type(value) is not list or not _INT_ONLY.issuperset(map(type, value)):
        raise ValueError("not a list of integers")
    return value


def _items(value: Any) -> list[tuple[str, Record]]:
    if type(value) is not list:
        raise ValueError("not a list")
    out: list[tuple[str, Record]] = []
    append = out.append
    for item in value:
        # (Record.from_wire's checks inline: every replicated, migrated and repaired record comes
        # through here; anything unusual takes from_wire, which names what is wrong)
        if type(item) is list and len(item) == 2:
            key, doc = item
            if type(key) is str and type(doc) is list and len(doc) == 3:
                counter, writer, data = doc
                if (type(counter) is int and 0 <= counter < MAX_NUMBER and type(writer) is str
                        and (data is None or type(data) is str or type(data) is bytes)):
                    append((key, make_record(counter, writer, data)))
                    continue
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError("items are [key, record]")
        append((item[0], Record.from_wire(item[1])))
    return out


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "int": _int, "str": _str, "bool": _bool, "str | bytes": _value,
    "Record": Record.from_wire, "list[tuple[str, Record]]": _items, "list[int]": _ints,
}
_OUT: dict[str, Callable[[Any], Any]] = {"Record": _record_out, "list[tuple[str, Record]]": _items_out}


@dataclass(frozen=True, slots=True)
class _Spec:
    """One message class's wire form, worked out once from its annotations (kept as strings:
    ``from __future__ import annotations``)."""

    cls: Any
    names: tuple[str, ...]
    checks: tuple[tuple[Callable[[Any], Any], bool], ...]  # per field: check, None allowed
    outs: tuple[tuple[int, Callable[[Any], Any]], ...]  # fields that need converting on the way out
    required: int

    @classmethod
    def of(cls, msg_cls: Any) -> _Spec:
        spec = fields(msg_cls)
        checks, outs = [], []
        for i, f in enumerate(spec):
            base = f.type.removesuffix(" | None")
            checks.append((_CHECKS[base], f.type.endswith("| None")))
            if base in _OUT:
                outs.append((i, _OUT[base]))
        required = sum(1 for f in spec if f.default is f.default_factory)  # fields without defaults
        return cls(msg_cls, tuple(f.name for f in spec), tuple(checks), tuple(outs), required)


_SPECS: dict[int, _Spec] = {cls.TAG: _Spec.of(cls) for cls in _TYPES.values()}


BATCH = 0  # a frame ``[0, message, message, ...]`` carries several messages to one destination

# Per message class, an encoder and a decoder generated once from its spec (as dataclasses generates
# __init__, and as the Raft codec does): fields read and checked inline, no per-field calls or
# loops. A document the fast decoder doesn't accept at once (fields left to their defaults, or
# anything malformed) takes the generic path, which fills defaults and names the bad field.
_INLINE: dict[str, str] = {
    "int": "type({v}) is int",
    "str": "type({v}) is str",
    "bool": "type({v}) is bool",
    "str | bytes": "(type({v}) is str or type({v}) is bytes)",
    "Record": ("(type({v}) is list and len({v}) == 3 and type({v}[0]) is int and 0 <= {v}[0] < MAX_NUMBER"
               " and type({v}[1]) is str"
               " and ({v}[2] is None or type({v}[2]) is str or type({v}[2]) is bytes))"),
}
_BUILD: dict[str, str] = {"Record": "_make_record({v}[0], {v}[1], {v}[2])"}
_ENCODE: dict[str, str] = {
    "Record": "[{v}.version.counter, {v}.version.writer, {v}.value]",
    "list[tuple[str, Record]]": "[[k, [r.version.counter, r.version.writer, r.value]] for k, r in {v}]",
}
_CALLED: dict[str, str] = {"list[tuple[str, Record]]": "_items", "list[int]": "_ints"}  # checked by a loop


def _compile(spec: _Spec) -> tuple[Callable[[Any], list[Any]], Callable[[list[Any]], Any]]:
    name, tag = spec.cls.__name__, spec.cls.TAG
    kinds = [f.type for f in fields(spec.cls)]
    enc, pre, checks, args = [], [], [], []
    for i, kind in enumerate(kinds):
        base, optional = kind.removesuffix(" | None"), kind.endswith("| None")
        v = f"v{i}"
        if base in _ENCODE:
            if optional:
                enc.append(f"(None if (x{i} := m.{spec.names[i]}) is None else {_ENCODE[base].format(v=f'x{i}')})")
            else:
                enc.append(_ENCODE[base].format(v=f"m.{spec.names[i]}"))
        else:
            enc.append(f"m.{spec.names[i]}")
        if base in _CALLED:
            # raises ValueError on a bad value: the generic path names the field
            pre.append(f"        {v} = {'None if ' + v + ' is None else ' if optional else ''}{_CALLED[base]}({v})\n")
            continue
        check = _INLINE[base].format(v=v)
        checks.append(f"({v} is None or {check})" if optional else check)
        if base in _BUILD:
            args.append((i, f"{'None if ' + v + ' is None else ' if optional else ''}{_BUILD[base].format(v=v)}"))
    built = dict(args)
    unpack = ", ".join(f"v{i}" for i in range(len(kinds)))
    values = [built.get(i, f"v{i}") for i in range(len(kinds))]
    slots = all(isinstance(getattr(spec.cls, n, None), MemberDescriptorType) for n in spec.names)
    if hasattr(spec.cls, "__post_init__") or not slots:
        make = f"    return cls({', '.join(values)})\n"
    else:  # the frozen dataclass's slots filled directly: its __init__ would do just that, at twice the cost
        make = (f"    o = _new(cls)\n" + "".join(f"    _set{i}(o, {value})\n" for i, value in enumerate(values))
                + "    return o\n")
    source = (
        f"def encode_{name}(m):\n    return [{tag}, {', '.join(enc)}]\n"
        f"def decode_{name}(doc):\n"
        f"    if len(doc) != {len(kinds) + 1}:\n        return _slow(doc)\n"
        f"    _, {unpack}{',' if len(kinds) == 1 else ''} = doc\n"
        f"    if not ({' and '.join(checks) or 'True'}):\n        return _slow(doc)\n"
        + (f"    try:\n{''.join(pre)}    except ValueError:\n        return _slow(doc)\n" if pre else "")
        + make
    )
    namespace: dict[str, Any] = {"cls": spec.cls, "_make_record": make_record, "_items": _items,
                                 "MAX_NUMBER": MAX_NUMBER,
                                 "_ints": _ints, "_slow": _from_doc_slow, "_new": object.__new__,
                                 **({f"_set{i}": getattr(spec.cls, n).__set__ for i, n in enumerate(spec.names)}
                                    if slots else {})}
    exec(compile(source, f"<KV codec for {name}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace[f"encode_{name}"], namespace[f"decode_{name}"]


def to_doc(msg: Message) -> list[Any]:
    return _ENCODERS[type(msg)](msg)


def encode(msg: Message) -> bytes:
    return msgpack.packb(_ENCODERS[type(msg)](msg), use_bin_type=True)


def encode_batch(msgs: list[Message]) -> bytes:
    """Several messages for one destination in one frame body: one msgpack call, one header."""
    if len(msgs) == 1:
        return encode(msgs[0])
    encoders = _ENCODERS
    return msgpack.packb([BATCH, *[encoders[type(m)](m) for m in msgs]], use_bin_type=True)


def from_frame(doc: Any) -> list[Message]:
    """The messages of one frame body: one message, or a batch of them."""
    if type(doc) is list and doc and doc[0] == BATCH and type(doc[0]) is int:
        decoders, out = _DECODERS, []
        for d in doc[1:]:  # (from_doc, inlined: a frame carries hundreds of messages under load)
            decoder = decoders.get(d[0]) if type(d) is list and d and type(d[0]) is int else None
            out.append(decoder(d) if decoder is not None else _from_doc_slow(d))
        return out
    return [from_doc(doc)]


def from_doc(doc: Any) -> Message:
    if type(doc) is list and doc:
        decoder = _DECODERS.get(doc[0]) if type(doc[0]) is int else None
        if decoder is not None:
            return decoder(doc)
    return _from_doc_slow(doc)


def _from_doc_slow(doc: Any) -> Message:
    """The generic path: fields left to their defaults, and every malformed document (the error
    names the field)."""
    if not (isinstance(doc, list) and doc and type(doc[0]) is int):
        raise ProtocolError("a KV message is [tag, fields...]")
    spec = _SPECS.get(doc[0])
    if spec is None:
        raise ProtocolError(f"unknown KV message type {doc[0]}")
    values = doc[1:]
    if not spec.required <= len(values) <= len(spec.names):
        raise ProtocolError(f"{spec.cls.__name__} takes {spec.required} to {len(spec.names)} fields, got {len(values)}")
    out = []
    for (check, optional), value, name in zip(spec.checks, values, spec.names):
        if value is None and optional:
            out.append(None)
            continue
        try:
            out.append(check(value))
        except ValueError as exc:
            raise ProtocolError(f"{spec.cls.__name__}.{name}: {exc}") from None
    return spec.cls(*out)


_COMPILED = {tag: _compile(spec) for tag, spec in _SPECS.items()}
_ENCODERS: dict[type, Callable[[Any], list[Any]]] = {_SPECS[tag].cls: enc for tag, (enc, _dec) in _COMPILED.items()}
_DECODERS: dict[int, Callable[[list[Any]], Any]] = {tag: dec for tag, (_enc, dec) in _COMPILED.items()}


def decode(data: bytes) -> Message:
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - any undecodable frame is refused
        raise ProtocolError(f"undecodable KV message: {exc}") from None
    return from_doc(doc)
