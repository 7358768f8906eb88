"""kill: SIGKILL. Unsynced writes are lost; with ``torn = true`` a prefix of them survives and the tail is torn."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World


class Kill(FaultKind):
    name = "kill"
    summary = "SIGKILL: unsynced writes lost (torn = true: a prefix survives, the tail torn)"
    counter = "kills"
    uses = frozenset({"torn", "keep"})
    targets = ("leader", "follower", "random", "paused")
    drawn = True
    # A killed node the cluster marks failed is gone, not a fault any more.
    window = WindowRule("#d62728", closed_by=("restart", "fail"))

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "kill", rng.choice(("leader", "random")), torn=rng.random() < 0.3),
                Fault(t + rng.uniform(0.2, 3.0), "restart", "killed")]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        node = world.c.nodes[nid]
        if not node.alive or node.removed:
            return None
        keep_writes = keep_entries = 0
        if fault.torn and fault.keep:
            keep_writes, keep_entries = fault.keep
            world.c.counters.torn_writes += 1
        elif fault.torn and node.disk.unsynced_writes:
            keep_writes = world.rng.randrange(node.disk.unsynced_writes)
            keep_entries = world.rng.randrange(1, 4)
            world.c.counters.torn_writes += 1
        world.crash(node, keep_writes, keep_entries)
        world.killed.append(nid)
        return replace(fault, node=nid, keep=(keep_writes, keep_entries) if fault.torn else fault.keep)

    def revive(self, world: World, node: Any) -> None:
        if not node.alive and not node.removed:  # those that failed or left stay gone
            world.restart(node)
            world.c.counters.bump("restarts")

    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        if not world.is_alive(nid):
            return None
        world.kill(nid)  # SIGKILL: whatever the disk had not synced is lost; no torn tail made to order
        world.killed.append(nid)
        return replace(fault, node=nid, torn=False, keep=())
