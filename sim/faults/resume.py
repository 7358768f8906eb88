"""resume: SIGCONT. A paused node handles what waited for it, then runs on."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .fault import Fault
from .kind import FaultKind

if TYPE_CHECKING:
    from .world import RealWorld, World


class Resume(FaultKind):
    name = "resume"
    summary = "SIGCONT a paused node"
    counter = "resumes"
    targets = ("paused",)

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c.nodes[nid]
        if not node.paused:
            return None
        world.unpause(node)
        return replace(fault, node=nid)

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.is_paused(nid):
            return None
        world.resume(nid)  # SIGCONT
        return replace(fault, node=nid)
