"""One timed, named fault of a scenario's schedule, as data.

The fields are the union of what the kinds read; each kind says which it
uses (:attr:`FaultKind.uses`), and :func:`clusterkit.sim.faults.load_fault`
refuses a field its kind doesn't read. Parsing here checks types and ranges
only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..fields import flag, number, only
from ..network import ScenarioError
from ..shapes import describe_cuts

# Fields beyond ``at``, ``kind`` and ``node`` that a kind may read.
OPTIONAL = ("shape", "groups", "rate", "seconds", "torn", "cuts", "keep")


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    node: str = ""  # a node id or a target (see FaultKind.targets); empty where the kind needs none
    shape: str = ""  # partition: a name from shapes.SHAPES
    groups: tuple[tuple[str, ...], ...] = ()  # partition: explicit groups instead of a shape
    rate: float = 1.0  # skew: clock speed factor; slow: the node's speed (0.25: four times slower)
    seconds: float = 0.0  # stall: how long the disk hangs; slow: how long the node is slow
    torn: bool = False  # kill: a torn write at the log's tail
    # Resolved forms, recorded by the nemesis so a replay needs no luck: the one-way links a
    # partition cut, and how many unsynced writes (and entries of the next) a torn kill kept.
    cuts: tuple[tuple[str, str], ...] = ()
    keep: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Fault:
        """Types and ranges; what the kind makes of them is its own check."""
        only(doc, {f.name for f in fields(cls)}, "fault")
        kind = doc.get("kind")
        if type(kind) is not str or not kind:
            raise ScenarioError(f"fault kind must be a name, got {kind!r}")
        node = doc.get("node", "")
        if type(node) is not str:
            raise ScenarioError(f"fault node must be a string, got {node!r}")
        shape = doc.get("shape", "")
        if type(shape) is not str:
            raise ScenarioError(f"fault shape must be a string, got {shape!r}")
        groups = doc.get("groups", ())
        if not isinstance(groups, (list, tuple)) or not all(
            isinstance(g, (list, tuple)) and all(type(n) is str for n in g) for g in groups
        ):
            raise ScenarioError(f"fault groups must be lists of node ids, got {groups!r}")
        cuts = doc.get("cuts", ())
        if not isinstance(cuts, (list, tuple)) or not all(
            isinstance(c, (list, tuple)) and len(c) == 2 and all(type(n) is str for n in c) for c in cuts
        ):
            raise ScenarioError(f"fault cuts must be [from, to] pairs of node ids, got {cuts!r}")
        keep = doc.get("keep", ())
        if not isinstance(keep, (list, tuple)) or len(keep) not in (0, 2) or not all(
            type(k) is int and k >= 0 for k in keep
        ):
            raise ScenarioError(f"fault keep must be [writes, entries], got {keep!r}")
        return cls(
            at=number(doc, "at", 0.0),
            kind=kind,
            node=node,
            shape=shape,
            groups=tuple(tuple(g) for g in groups),
            rate=number(doc, "rate", 1.0, 0.01, 100.0),
            seconds=number(doc, "seconds", 0.0, 0.0, 3600.0),
            torn=flag(doc, "torn", False),
            cuts=tuple((a, b) for a, b in cuts),
            keep=tuple(keep),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "kind": self.kind}  # exact: a replay fires at the same float time
        defaults = Fault(0.0, "heal")
        for name in ("node", "shape", "rate", "seconds", "torn"):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                out[name] = value
        if self.groups:
            out["groups"] = [list(g) for g in self.groups]
        if self.cuts:
            out["cuts"] = [list(c) for c in self.cuts]
        if self.keep:
            out["keep"] = list(self.keep)
        return out

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.to_dict().items() if k not in ("at", "kind"))
        return f"{self.at:8.3f}s {self.kind} {extra}".rstrip()

    def summary(self) -> str:
        """For people: as :meth:`describe`, with cut links printed as groups (``{n1} | {n2,n3}``)."""
        if not self.cuts:
            return self.describe()
        rest = self.to_dict()
        del rest["cuts"]
        head = " ".join(f"{k}={v}" for k, v in rest.items() if k not in ("at", "kind"))
        return f"{self.at:8.3f}s {self.kind} {describe_cuts(self.cuts)} {head}".rstrip()

    def used(self, name: str) -> bool:
        """Whether optional field ``name`` is set (differs from its default)."""
        return getattr(self, name) != getattr(_DEFAULT, name)


_DEFAULT = Fault(0.0, "heal")
