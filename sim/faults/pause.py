"""pause: SIGSTOP. The node neither ticks nor handles messages; what reaches it waits."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Pause(FaultKind):
    name = "pause"
    summary = "SIGSTOP: no ticks, messages wait"
    counter = "pauses"
    drawn = True
    window = WindowRule("#9467bd", closed_by=("resume", "kill"))  # a killed process is no longer paused

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "pause", rng.choice(("leader", "random"))),
                Fault(t + rng.uniform(0.2, 3.0), "resume", "paused")]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c.nodes[nid]
        if not node.alive or node.paused:
            return None
        node.paused = True
        world.paused.append(nid)
        return replace(fault, node=nid)

    def revive(self, world: World, node: Any) -> None:
        if node.paused:
            world.unpause(node)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.is_alive(nid) or world.is_paused(nid):
            return None
        world.pause(nid)  # SIGSTOP
        world.paused.append(nid)
        return replace(fault, node=nid)
