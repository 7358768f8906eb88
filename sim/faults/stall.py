"""stall: the node's disk takes ``seconds`` to complete the syncs it starts meanwhile."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..network import ScenarioError
from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Stall(FaultKind):
    name = "stall"
    summary = "the node's disk takes `seconds` to complete its next syncs"
    counter = "stalls"
    uses = frozenset({"seconds"})
    drawn = True
    window = WindowRule("#8c564b", timed=True)

    def check_fields(self, fault: Fault, where: str) -> None:
        if fault.seconds <= 0:
            raise ScenarioError(f"{where}: a stall needs seconds > 0")

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "stall", "random", seconds=rng.uniform(0.05, 1.0))]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c.nodes[nid]
        node.stall_until = max(node.stall_until, world.env.now + fault.seconds)
        return replace(fault, node=nid)

    def settle(self, world: World, node: Any) -> None:
        node.stall_until = 0.0

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.is_alive(nid) or world.is_paused(nid):
            return None
        world.stall(nid, fault.seconds)
        return replace(fault, node=nid)
