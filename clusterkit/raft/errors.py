"""Typed errors raised by the Raft core (h11-style: callers branch on the class)."""

from __future__ import annotations


class RaftError(Exception):
    """Base class for every error the Raft core raises on purpose."""


class NotLeader(RaftError):
    """A leader-only request reached a node that is not the leader.

    ``leader`` names the node believed to lead, or is None when none is known.
    """

    def __init__(self, node_id: str, leader: str | None) -> None:
        self.node_id = node_id
        self.leader = leader
        hint = f"the leader is {leader}" if leader is not None else "no leader is known"
        super().__init__(f"{node_id} is not the leader; {hint}")


class ProposalDropped(RaftError):
    """A proposal was refused (too large, backlog full, leadership moving)."""


class ConfigError(RaftError, ValueError):
    """A Raft configuration value is out of range or inconsistent."""


class CodecError(RaftError, ValueError):
    """A frame could not be decoded into a valid message."""


class StorageError(RaftError):
    """The storage was asked for something it does not hold (compacted, out of range)."""
