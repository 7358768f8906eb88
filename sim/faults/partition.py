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
    from .world import RealWorld, World


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
            cuts = shape_cuts(fault.shape, nodes, c.leader(), world.rng)
            if cuts is None:
                return None
            c.network.blocked = set(cuts)
        return _resolved(fault, c.network.blocked)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        nodes = world.nodes()
        if fault.cuts:
            cuts = set(fault.cuts)
        elif fault.groups:
            cuts = shapes.groups_cuts(fault.groups, nodes)
        else:
            found = shape_cuts(fault.shape, nodes, world.leader(), world.rng)
            if found is None:
                return None
            cuts = set(found)
        world.cut(tuple(sorted(cuts)))
        return _resolved(fault, cuts)

    def heal_all(self, world: World) -> None:
        world.c.network.heal()


def shape_cuts(shape: str, nodes: list[str], leader: str | None,
               rng: random.Random) -> list[tuple[str, str]] | set[tuple[str, str]] | None:
    """The one-way links a named shape cuts among ``nodes`` (None: it needs a leader and there is none)."""
    if shape in ("isolate-leader", "one-way-leader"):
        if leader is None:
            return None
        victim = leader
    else:
        victim = rng.choice(nodes)
    if shape in ("isolate", "isolate-leader"):
        return shapes.isolate(nodes, victim)
    if shape in ("one-way", "one-way-leader"):
        return shapes.one_way(nodes, victim)
    if shape == "halves":
        return shapes.halves(nodes, rng)
    if shape == "majorities-ring":
        return shapes.majorities_ring(nodes, rng)
    return shapes.bridge(nodes, rng)


def _resolved(fault: Fault, blocked: set[tuple[str, str]]) -> Fault:
    """Recorded as the one-way links cut, so a replay needs no shape or seed."""
    cuts = tuple((a, b) for a, b in sorted(blocked))
    return replace(fault, node="", shape="", groups=(), cuts=cuts) if cuts else replace(fault, node="")
