"""What a fault kind may use of the simulated world it acts on (the nemesis provides it)."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import simpy


class World(Protocol):
    c: Any  # the SimCluster (typed loosely: the cluster module imports the kinds' registry)
    env: simpy.Environment
    rng: random.Random  # the nemesis's own stream: targets, shapes, torn lengths
    killed: list[str]  # resolve the "killed" and "paused" targets, newest last
    paused: list[str]

    def scratch(self, kind: str) -> dict[str, Any]: ...

    def crash(self, node: Any, keep_writes: int = 0, keep_entries: int = 0) -> None: ...

    def restart(self, node: Any) -> None: ...

    def unpause(self, node: Any) -> None: ...

    def removal_ok(self, nid: str) -> bool: ...

    def active_member(self, nid: str) -> bool: ...

    def joining(self, node: Any, life: int = 0) -> Generator[Any, Any, None]: ...

    def leaving(self, node: Any, graceful: bool) -> Generator[Any, Any, None]: ...


class RealWorld(Protocol):
    """What a fault kind may use of real node processes (net/real_runner.py provides it). Node ids
    are the scenario's (n1, n2, ...)."""

    rng: random.Random
    killed: list[str]
    paused: list[str]

    def nodes(self) -> list[str]: ...  # every node not removed, in id order

    def leader(self) -> str | None: ...

    def is_alive(self, nid: str) -> bool: ...  # its process runs (paused or not)

    def is_paused(self, nid: str) -> bool: ...

    def kill(self, nid: str) -> None: ...

    def restart(self, nid: str) -> None: ...

    def pause(self, nid: str) -> None: ...

    def resume(self, nid: str) -> None: ...

    def cut(self, links: tuple[tuple[str, str], ...]) -> None: ...  # exactly these one-way links cut

    def set_rate(self, nid: str, rate: float) -> None: ...

    def stall(self, nid: str, seconds: float) -> None: ...

    def join(self, nid: str) -> bool: ...

    def removal_ok(self, nid: str) -> bool: ...

    def leave(self, nid: str) -> bool: ...

    def fail(self, nid: str) -> bool: ...
