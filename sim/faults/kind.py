"""What a fault kind is: its fields and targets, its random draw, how the simulator applies it,
how the end of the fault phase undoes it, and how it shows on a plot.

A kind is one module under ``clusterkit.sim.faults`` holding one :class:`FaultKind`
subclass, plus one line in the registry (``clusterkit/sim/faults/__init__.py``).
The simulator's side of a kind works on the :class:`~clusterkit.sim.nemesis.Nemesis`
(the simulated world: its cluster, its seeded choices and the steps kinds share,
such as crashing a node).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar

from ..network import ScenarioError
from .fault import OPTIONAL, Fault
from .window import WindowRule

if TYPE_CHECKING:
    from .world import RealWorld, World

# Targets resolved when a fault fires, from the run's seed (a node id is a target too).
TARGETS = ("leader", "follower", "random", "killed", "paused", "new")
ANY_LIVE = ("leader", "follower", "random")


class FaultKind:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `clusterkit sim list`
    counter: ClassVar[str]  # the report counter it bumps each time it applies
    uses: ClassVar[frozenset[str]] = frozenset()  # optional Fault fields it reads (fault.OPTIONAL)
    targets: ClassVar[tuple[str, ...]] = ANY_LIVE  # () with by_id False: it takes no node
    by_id: ClassVar[bool] = True  # a node id of the scenario is a target too
    drawn: ClassVar[bool] = False  # offered to a scenario's [random] kinds
    window: ClassVar[WindowRule | None] = None  # how plots show it (None: not at all)
    # Why real processes can't have it ("" when the real-process runner applies it).
    not_real: ClassVar[str] = ""

    # ------------------------------------------------------------ loading
    def check(self, fault: Fault) -> None:
        """Refuse, with a ScenarioError naming the field, what this kind can't run."""
        where = f"fault {fault.kind} at {fault.at:g}s"
        for name in OPTIONAL:
            if fault.used(name) and name not in self.uses:
                raise ScenarioError(f"{where}: a {fault.kind} takes no {name}")
        takes_node = bool(self.targets) or self.by_id
        if not takes_node and fault.node:
            raise ScenarioError(f"{where}: a {fault.kind} takes no node")
        if takes_node and not fault.node:
            raise ScenarioError(f"{where}: node must be {self.target_text()}")
        if fault.node in TARGETS and fault.node not in self.targets:
            raise ScenarioError(f"{where}: node {fault.node!r} is not a target of a {fault.kind}; "
                                f"use {self.target_text()}")
        if fault.node and fault.node not in TARGETS and not self.by_id:
            raise ScenarioError(f"{where}: node must be {self.target_text()}, got {fault.node!r}")
        self.check_fields(fault, where)

    def check_fields(self, fault: Fault, where: str) -> None:
        """The kind's own fields (beyond being allowed at all)."""

    def target_text(self) -> str:
        names = [repr(t) for t in self.targets] + (["a node id"] if self.by_id else [])
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]

    # ------------------------------------------------------------ the random mix
    def draw(self, rng: random.Random, t: float) -> list[Fault]:
        """The faults one random draw of this kind at ``t`` adds (with what undoes it, if anything)."""
        raise NotImplementedError(f"{self.name} is not drawn at random")

    # ------------------------------------------------------------ the simulator
    def apply(self, world: World, fault: Fault, nid: str) -> Fault | None:
        """Apply to node ``nid`` (already resolved; "" for a kind without one). The fault as it
        really happened (resolved, so a replay needs no luck), or None when it can't apply now."""
        raise NotImplementedError

    # ------------------------------------------------------------ real processes
    def apply_real(self, world: RealWorld, fault: Fault, nid: str) -> Fault | None:
        """As :meth:`apply`, on real node processes (net/real_runner.py); only kinds whose
        :attr:`not_real` is empty are asked."""
        raise NotImplementedError(f"{self.name} on real processes: {self.not_real}")

    def heal_all(self, world: World) -> None:
        """At the end of the fault phase, first: undo what this kind left on the cluster as a whole."""

    def settle(self, world: World, node: Any) -> None:
        """At the end of the fault phase, node by node: put back what this kind changed on ``node``
        (its clock, its disk, its links), before any node runs again."""

    def revive(self, world: World, node: Any) -> None:
        """Then, still node by node: set ``node`` running again if this kind stopped it."""
