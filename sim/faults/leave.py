"""leave: a graceful leave, out of the cluster state (its data moved away first), then out of Raft."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Leave(FaultKind):
    name = "leave"
    summary = "graceful leave: cluster state, then Raft"
    counter = "leaves"
    drawn = True
    window = WindowRule("#7f7f7f", moment=True)

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "leave", "random")]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c.nodes[nid]
        if not world.removal_ok(nid) or not node.alive:
            return None
        if not world.active_member(nid):
            return None  # not a member yet (its join may still be in flight): nothing to leave
        node.removed = True  # no further faults pick it; it stops once out
        world.env.process(world.leaving(node, graceful=True))
        return replace(fault, node=nid)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.is_alive(nid) or world.is_paused(nid) or not world.removal_ok(nid):
            return None
        return replace(fault, node=nid) if world.leave(nid) else None
