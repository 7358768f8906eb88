"""fail: the node dies for good, and the leader marks it failed in the cluster state."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Fail(FaultKind):
    name = "fail"
    summary = "the node dies and the leader marks it failed in the cluster state"
    counter = "failures"
    drawn = True
    window = WindowRule("#000000", moment=True)

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "fail", "random")]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        if not world.removal_ok(nid) or not world.active_member(nid):
            return None  # (a node whose join is in flight would be made active, dead, by it)
        node = world.c.nodes[nid]
        if node.alive:
            world.crash(node)
        node.removed = node.gone = True
        world.env.process(world.leaving(node, graceful=False))
        return replace(fault, node=nid)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.removal_ok(nid):
            return None
        return replace(fault, node=nid) if world.fail(nid) else None
