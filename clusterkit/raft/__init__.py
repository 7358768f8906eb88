"""Raft consensus as a sans-IO state machine (see node.RaftNode)."""

from .codec import decode, encode
from .errors import CodecError, ConfigError, NotLeader, ProposalDropped, RaftError, StorageError
from .messages import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    Propose,
    RequestVote,
    VoteResponse,
)
from .node import RaftNode
from .ready import RaftConfig, Ready, Role, SoftState
from .storage import MemoryStorage, Storage

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "CodecError",
    "ConfState",
    "ConfigError",
    "Entry",
    "EntryType",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "MemoryStorage",
    "Message",
    "NotLeader",
    "Propose",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RaftNode",
    "Ready",
    "RequestVote",
    "Role",
    "SoftState",
    "Storage",
    "StorageError",
    "VoteResponse",
    "decode",
    "encode",
]
