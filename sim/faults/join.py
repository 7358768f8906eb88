"""join: a new, empty node joins (a Raft learner first, then a member of the cluster state)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

from clusterkit.raft.storage import MemoryStorage

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Join(FaultKind):
    name = "join"
    summary = "a new empty node joins (Raft learner, then the cluster state)"
    counter = "joins"
    targets = ("new",)  # or an id no node of the scenario has yet
    drawn = True
    window = WindowRule("#2ca02c", moment=True)

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "join", "new")]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c._add(nid, MemoryStorage(), joining=True)
        world.env.process(world.joining(node))
        return replace(fault, node=nid)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        return replace(fault, node=nid) if world.join(nid) else None
