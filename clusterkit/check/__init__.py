"""Checkers: pure functions and monitors over recorded histories, for sim and real runs alike."""

from .raft_safety import InvariantViolation, RaftSafetyMonitor

__all__ = ["InvariantViolation", "RaftSafetyMonitor"]
