"""wipe: the node's disk is lost. It restarts at once, empty, under the same id (as an operator
who replaced a dead disk would restart it); it must not vote until the leader has replaced it
(see clusterkit.host.replace), and its data is copied back as a new node's would be."""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from clusterkit.host.replace import replace_step, still_a_member
from clusterkit.raft.errors import RaftError
from clusterkit.raft.storage import MemoryStorage

from .fault import Fault
from .kind import FaultKind
from .window import WindowRule

if TYPE_CHECKING:
    from .world import World


class Wipe(FaultKind):
    name = "wipe"
    summary = "the node's disk is lost: it restarts empty under its id, and must be replaced"
    counter = "wipes"
    drawn = True  # (not in the default mix: named by the scenarios that want it)
    not_real = "not yet: a wiped node must restart empty and be taken in again, which the runner does not drive yet"
    window = WindowRule("#e377c2", moment=True)

    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        return [Fault(t, "wipe", rng.choice(("leader", "follower")))]

    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        c = world.c
        node = c.nodes[nid]
        if node.removed or not world.removal_ok(nid) or not world.active_member(nid):
            return None  # a lost copy, as a failure is: only when the rest can hold RF copies
        if c.leader() in (None, nid) and len([n for n in c.live() if n != nid]) < 2:
            return None
        if node.alive:
            world.crash(node)
        node.disk = MemoryStorage()
        node.host.storage = node.disk
        node.host.joining = True
        node.host.admitted = False
        if c.data_layer is not None:
            c.data_layer.wipe(node)
        c.monitor.forget(nid)  # what comes back under its id is a new member, from term 0
        c.observer.forget(nid)
        node.host.start()
        node.alive = True
        node.wipes += 1
        c.start_copier(node)
        c._kick(node)
        world.env.process(_rejoining(world, node, node.wipes))
        return replace(fault, node=nid)


def _rejoining(world: World, node: Any, life: int) -> Generator[Any, Any, None]:  # a SimPy process
    """A wiped node's join, as its runner's: it asks until a leader has taken it in (replaced its
    old self, then added it as a learner); then it joins as any new node. ``life``: the wipe it
    follows (a later wipe starts its own)."""
    c = world.c
    address = node.kit.options.raft_addr.encode()
    replaced = False  # its old self is gone: what is a member under its id from now on is this life
    while not node.removed and not node.host.admitted and node.wipes == life:
        lead = c.leader()
        if node.alive and lead is not None and lead != node.id:
            leader = c.nodes[lead]
            raft = leader.host.raft
            assert raft is not None
            if not replaced and still_a_member(leader.host, leader.kit.state, node.id):
                if replace_step(leader.host, leader.kit.state, node.id):
                    c._kick(leader)
            elif node.id not in raft.voters + raft.learners:
                replaced = True
                try:
                    raft.add_learner(node.id, context=address)
                    c._kick(leader)
                except RaftError:
                    pass
            elif raft.log.committed >= raft.log.last_index():
                node.host.admit()  # the leader answered its join: taken in
                c.trace.event(world.env.now, f"{node.id} taken in again after its wipe")
        yield world.env.timeout(0.5)
    if node.wipes == life and not node.removed:
        yield from world.joining(node, life)
