"""The node host: one node's Raft, storage, state machine and address book, and the Ready loop
that every driver (the in-memory network, the SimPy simulator, the asyncio TCP node) runs."""

from .machine import AppliedLog, StateMachine
from .node import NodeHost, is_host_entry
from .requests import Proposal, ReadRequest

__all__ = ["AppliedLog", "NodeHost", "Proposal", "ReadRequest", "StateMachine", "is_host_entry"]
