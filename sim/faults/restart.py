"""restart: start a killed node again, from what its disk kept."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .fault import Fault
from .kind import FaultKind

if TYPE_CHECKING:
    from .world import RealWorld, World


class Restart(FaultKind):
    name = "restart"
    summary = "start a killed node from its disk"
    counter = "restarts"
    targets = ("killed",)

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c.nodes[nid]
        if node.alive or node.removed:
            return None
        world.restart(node)
        return replace(fault, node=nid)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if world.is_alive(nid):
            return None
        world.restart(nid)
        return replace(fault, node=nid)
