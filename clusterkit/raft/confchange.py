"""Membership changes: one server at a time, carried in the log as CONF_CHANGE entries.

A change adds a voter (or promotes a learner), adds a learner (or demotes a
voter), or removes a node. Each entry holds the change *and the whole
configuration it produces*, so any node finds its configuration by reading
the last CONF_CHANGE entry in its log (committed or not, as in Ongaro's
thesis §4.1), and a truncated change is undone by reading the one before.
Single-server changes keep any two consecutive configurations' majorities
overlapping; the leader adds the two guards the thesis errata call for (one
change in flight, and none before an entry of its own term has committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack

from .errors import CodecError, ConfigError
from .messages import ConfState


class ConfChangeType(IntEnum):
    ADD_VOTER = 0  # add a voter, or promote a learner
    ADD_LEARNER = 1  # add a learner, or demote a voter
    REMOVE = 2


@dataclass(slots=True, frozen=True)
class ConfChange:
    op: ConfChangeType
    node: str
    context: bytes = b""  # opaque to Raft: e.g. the node's address, for the driver

    def __post_init__(self) -> None:
        if not isinstance(self.op, int) or self.op not in tuple(ConfChangeType):
            raise ConfigError(f"unknown membership change {self.op!r}")
        if type(self.node) is not str or not self.node:
            raise ConfigError("a membership change names a node: a non-empty string")
        if type(self.context) is not bytes:
            raise ConfigError(f"context must be bytes, got {type(self.context).__name__}")


def apply_change(conf: ConfState, cc: ConfChange) -> ConfState:
    """The configuration after ``cc``; ConfigError if the change does nothing or empties the voters."""
    voters, learners = list(conf.voters), list(conf.learners)
    if cc.op == ConfChangeType.REMOVE:
        group = voters if cc.node in voters else learners if cc.node in learners else None
        if group is None:
            raise ConfigError(f"{cc.node} is not a member")
        group.remove(cc.node)
    else:
        # Adding to one group moves the node out of the other: promotion and demotion.
        to, other, kind = (
            (voters, learners, "voter") if cc.op == ConfChangeType.ADD_VOTER else (learners, voters, "learner")
        )
        if cc.node in to:
            raise ConfigError(f"{cc.node} is already a {kind}")
        if cc.node in other:
            other.remove(cc.node)
        to.append(cc.node)
    if not voters:
        raise ConfigError(f"the change would leave no voters ({ConfChangeType(cc.op).name} {cc.node})")
    return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))


def encode_entry(cc: ConfChange, result: ConfState) -> bytes:
    return msgpack.packb(
        [int(cc.op), cc.node, cc.context, list(result.voters), list(result.learners)], use_bin_type=True
    )


def decode_entry(data: bytes) -> tuple[ConfChange, ConfState]:
    """The change and resulting configuration in a CONF_CHANGE entry; CodecError if malformed."""
    try:
        raw = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CodecError(f"malformed membership change: {exc}") from None
    if type(raw) is not list or len(raw) != 5:
        raise CodecError("a membership change is [op, node, context, voters, learners]")
    op, node, context, voters, learners = raw
    if type(op) is not int or type(node) is not str or type(context) is not bytes:
        raise CodecError("membership change: op must be an int, node a string, context bytes")
    for name, group in (("voters", voters), ("learners", learners)):
        if type(group) is not list or not all(type(v) is str and v for v in group):
            raise CodecError(f"membership change: {name} must be a list of non-empty strings")
    if not voters or set(voters) & set(learners):
        raise CodecError("membership change: no voters, or a node both voter and learner")
    try:
        cc = ConfChange(ConfChangeType(op) if op in tuple(ConfChangeType) else op, node, context)
    except ConfigError as exc:
        raise CodecError(f"membership change: {exc}") from None
    return cc, ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
