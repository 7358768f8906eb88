"""Fault kinds, one module each, and the registry that feeds everything else.

The registry is the one list of kinds: scenario loading and validation, the
random mix, the nemesis, ``clusterkit sim list``, the plots' windows and the
real-process runner all read it. A new kind is one module here plus one line
in :data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..network import ScenarioError
from .fail import Fail
from .fault import Fault
from .heal import Heal
from .join import Join
from .kill import Kill
from .kind import TARGETS, FaultKind
from .leave import Leave
from .partition import Partition
from .pause import Pause
from .restart import Restart
from .resume import Resume
from .skew import Skew
from .slow import Slow
from .stall import Stall
from .wipe import Wipe
from .window import WindowRule

KINDS: Mapping[str, FaultKind] = MappingProxyType({k.name: k for k in (
    Kill(),
    Restart(),
    Pause(),
    Resume(),
    Partition(),
    Heal(),
    Join(),
    Leave(),
    Fail(),
    Skew(),
    Stall(),
    Wipe(),
    Slow(),
)})

# Drawn when a scenario's [random] names no kinds. Kinds added later (wipe, slow) are named by the
# scenarios that want them, so that every existing scenario's seeds keep their schedules.
DEFAULT_RANDOM = ("kill", "pause", "partition", "join", "leave", "fail", "skew", "stall")

__all__ = ["DEFAULT_RANDOM", "KINDS", "TARGETS", "Fault", "FaultKind", "check_schedule", "kind_of",
           "load_fault", "random_kinds", "window_rules"]


def kind_of(name: str) -> FaultKind:
    kind = KINDS.get(name)
    if kind is None:
        raise ScenarioError(f"fault kind must be one of {', '.join(KINDS)}, got {name!r}")
    return kind


def random_kinds() -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.drawn)


def load_fault(doc: Mapping[str, Any]) -> Fault:
    """A fault from a scenario file's table, checked by its kind."""
    fault = Fault.from_dict(doc)
    kind_of(fault.kind).check(fault)
    return fault


def check_schedule(faults: Iterable[Fault], nodes: int) -> None:
    """Node ids that no node will have when the fault fires: a scenario of ``nodes`` nodes has
    n1..n{nodes}, and each join adds one (``new`` takes the next free n<k>)."""
    known = {f"n{i}" for i in range(1, nodes + 1)}
    joined = nodes
    for fault in sorted(faults, key=lambda f: f.at):
        where = f"fault {fault.kind} at {fault.at:g}s"
        if fault.kind == "join":
            if fault.node == "new":
                joined += 1
                while f"n{joined}" in known:
                    joined += 1
                known.add(f"n{joined}")
            elif fault.node in known:
                raise ScenarioError(f"{where}: {fault.node} is already a node; a join brings a new one "
                                    "(node = \"new\", or an id not in use)")
            else:
                known.add(fault.node)
            continue
        named = [fault.node] if fault.node and fault.node not in TARGETS else []
        named += [n for g in fault.groups for n in g] + [n for c in fault.cuts for n in c]
        for nid in named:
            if nid not in known:
                raise ScenarioError(f"{where}: no node {nid!r} by then (the scenario has "
                                    f"{_ids(known)})")


def _ids(known: set[str]) -> str:
    return ", ".join(sorted(known, key=lambda n: (len(n), n)))


def window_rules() -> dict[str, WindowRule]:
    return {name: kind.window for name, kind in KINDS.items() if kind.window is not None}
