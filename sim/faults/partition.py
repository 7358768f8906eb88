"""partition: cut links, by a named shape, explicit groups, or one-way cuts.

Recorded as the one-way links it cut, so a replay needs no shape or seed.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING


from .. import shapes
from ..network import ScenarioError
from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import World


class Partition(FaultKind):
    name = "partition"
    summary = "cut links: a named shape, explicit groups, or one-way cuts"
    counter = "partitions"
    uses = frozenset({"shape", "groups", "cuts"})
    targets = ()
    by_id = False
    drawn = True
    window = WindowRule("#1f77b4", closed_by=("heal", "partition"), same_node=False)

    def check_fields(self, fault: Fault, where: str) -> None:
        if fault.shape and fault.shape not in shapes.SHAPES:
            raise ScenarioError(f"{where}: shape must be one of {', '.join(shapes.SHAPES)}, got {fault.shape!r}")
        if not fault.shape and not fault.groups and not fault.cuts:
            raise ScenarioError(f"{where}: a partition needs a shape, groups or cuts")

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        shape = rng.choice(shapes.SHAPES)
        return [Fault(t, "partition", shape=shape), Fault(t + rng.uniform(0.5, 4.0), "heal")]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        c = world.c
        nodes = sorted(n for n in c.nodes if not c.nodes[n].removed)
        if fault.cuts:
            c.network.blocked = set(fault.cuts)
        elif fault.groups:
            c.network.partition(fault.groups, nodes)
        else:
            shape = fault.shape
            if shape in ("isolate-leader", "one-way-leader"):
                victim = c.leader()
                if victim is None:
                    return None
            else:
                victim = world.rng.choice(nodes)
            if shape in ("isolate", "isolate-leader"):
                cuts = shapes.isolate(nodes, victim)
            elif shape in ("one-way", "one-way-leader"):
                cuts = shapes.one_way(nodes, victim)
            elif shape == "halves":
                cuts = shapes.halves(nodes, world.rng)
            elif shape == "majorities-ring":
                cuts = shapes.majorities_ring(nodes, world.rng)
            else:
                cuts = shapes.bridge(nodes, world.rng)
            c.network.blocked = set(cuts)
        cuts = tuple((a, b) for a, b in sorted(c.network.blocked))
        return replace(fault, node="", shape="", groups=(), cuts=cuts) if cuts else replace(fault, node="")

    def heal_all(self, world: World) -> None:
        world.c.network.heal()
