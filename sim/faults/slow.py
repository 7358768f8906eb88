"""slow: one node runs slow for ``seconds``: every message to or from it, and every sync of its
disk, takes 1/``rate`` times as long (a node on a loaded machine, a failing NIC or disk)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..network import ScenarioError
from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import World


class Slow(FaultKind):
    name = "slow"
    summary = "the node's messages and disk take 1/`rate` times as long, for `seconds`"
    counter = "slows"
    uses = frozenset({"rate", "seconds"})
    drawn = True  # (not in the default mix: named by the scenarios that want it)
    not_real = "not yet: real nodes have no injectable message delay"
    window = WindowRule("#17becf", closed_by=("slow",), timed=True)

    def check_fields(self, fault: Fault, where: str) -> None:
        if not fault.rate < 1.0:
            raise ScenarioError(f"{where}: a slow node runs at a rate below 1 (0.25: four times slower), "
                                f"got {fault.rate:g}")
        if fault.seconds <= 0:
            raise ScenarioError(f"{where}: a slow node needs seconds > 0 (how long it stays slow)")

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "slow", "random", rate=rng.choice((0.05, 0.1, 0.25, 0.5)),
                      seconds=rng.uniform(0.5, 4.0))]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        speed = world.c.speed
        speed[nid] = fault.rate
        tokens = world.scratch(self.name)
        token = tokens[nid] = object()

        def back(_event: object) -> None:
            if tokens.get(nid) is token:  # not since made slow again, nor settled
                speed.pop(nid, None)
                del tokens[nid]

        world.env.timeout(fault.seconds).callbacks.append(back)
        return replace(fault, node=nid)

    def settle(self, world: World, node: Any) -> None:
        world.c.speed.pop(node.id, None)
        world.scratch(self.name).pop(node.id, None)
