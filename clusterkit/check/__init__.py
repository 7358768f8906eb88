"""Checkers: pure functions and monitors over recorded histories, for sim and real runs alike."""

from .partition_invariants import assert_partition_map, check_balance, check_data_safety, check_owners
from .raft_safety import InvariantViolation, RaftSafetyMonitor

__all__ = [
    "InvariantViolation",
    "RaftSafetyMonitor",
    "assert_partition_map",
    "check_balance",
    "check_data_safety",
    "check_owners",
]
