"""What a fault kind may use of the simulated world it acts on (the nemesis provides it)."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import simpy

    from ..cluster import SimCluster, SimNode


class World(Protocol):
    c: SimCluster
    env: simpy.Environment
    rng: random.Random  # the nemesis's own stream: targets, shapes, torn lengths
    killed: list[str]  # resolve the "killed" and "paused" targets, newest last
    paused: list[str]

    def scratch(self, kind: str) -> dict[str, Any]: ...

    def crash(self, node: SimNode, keep_writes: int = 0, keep_entries: int = 0) -> None: ...

    def restart(self, node: SimNode) -> None: ...

    def unpause(self, node: SimNode) -> None: ...

    def removal_ok(self, nid: str) -> bool: ...

    def active_member(self, nid: str) -> bool: ...

    def joining(self, node: SimNode, life: int = 0) -> Generator[Any, Any, None]: ...

    def leaving(self, node: SimNode, graceful: bool) -> Generator[Any, Any, None]: ...
