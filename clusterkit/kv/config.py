"""A KV server's settings: the replication strategy, quorum sizes and the protocols' periods and limits."""

from __future__ import annotations

from dataclasses import dataclass

from .strategies import STRATEGIES, Strategy, by_name

__all__ = ["STRATEGIES", "ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    strategy: str = "sync"  # a name in STRATEGIES, as users type it (see :attr:`policy`)
    w: int = 0  # 0: a majority of RF
    r: int = 0
    batch: int = 512  # records per migration batch
    op_timeout_ticks: int = 20
    retry_ticks: int = 4  # ask silent copies again after this many ticks
    queue_limit: int = 100_000  # ASYNC: records waiting per peer before writes are refused
    repair_ticks: int = 50  # anti-entropy: each held partition is merged from its other holders this often
    # Migration: partitions copied at once, bytes per batch, and how long a silent source gets
    # before it is asked again. A source serving a batch is busy for a while; asking again too
    # soon, or for too much at once, starves the node's Raft of its loop and tips it into elections.
    max_pulls: int = 4
    batch_bytes: int = 1 << 20
    pull_retry_ticks: int = 20
    gc_ticks: int = 300  # tombstones held this long by every owner are collected (checked this often)
    gc_batch: int = 1024  # tombstones per collection round and partition

    @property
    def policy(self) -> Strategy:
        """The strategy itself: what every protocol asks (the name stays a string, as it is on
        the wire, in flags, logs and /stats)."""
        return STRATEGIES[self.strategy]

    def __post_init__(self) -> None:
        by_name(self.strategy)  # a ValueError naming the choices
        for name in ("batch", "op_timeout_ticks", "retry_ticks", "queue_limit", "repair_ticks", "max_pulls",
                     "batch_bytes", "pull_retry_ticks", "gc_ticks", "gc_batch"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
