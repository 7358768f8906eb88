"""heal: every cut link back (other faults keep running: a paused node stays paused)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .fault import Fault
from .kind import FaultKind

if TYPE_CHECKING:
    from .world import RealWorld, World


class Heal(FaultKind):
    name = "heal"
    summary = "every cut link back"
    counter = "heals"
    targets = ()
    by_id = False

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        world.c.network.heal()
        return fault

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        world.cut(())
        return fault
