"""skew: the node's clock runs at ``rate`` times real speed (ticks, so timeouts and leases)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Skew(FaultKind):
    name = "skew"
    summary = "the node's clock runs at `rate` times real speed"
    counter = "skews"
    uses = frozenset({"rate"})
    drawn = True
    window = WindowRule("#bcbd22", closed_by=("skew",))

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "skew", "random", rate=rng.choice((0.5, 0.8, 1.25, 2.0)))]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        world.c.nodes[nid].rate = fault.rate
        return replace(fault, node=nid)

    def settle(self, world: World, node: Any) -> None:
        node.rate = 1.0

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.is_alive(nid) or world.is_paused(nid):
            return None
        world.set_rate(nid, fault.rate)
        return replace(fault, node=nid)
