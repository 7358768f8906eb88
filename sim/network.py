"""The simulated network: per-link latency, loss, duplication and partitions (including one-way).

Pure bookkeeping and sampling: the simulator asks :meth:`SimNetwork.fate`
what happens to one message (lost, or delivered after these delays) and
schedules the deliveries itself. Every random draw comes from the
simulator's seeded generator, in a fixed order, so a run replays exactly.
Reordering comes from the latency spread: two messages on one link whose
delays differ arrive in the other order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .shapes import groups_cuts

DISTRIBUTIONS = ("constant", "uniform", "exponential", "lognormal")


class ScenarioError(ValueError):
    """A scenario (or a part of one) that can't be run, with what is wrong."""


@dataclass(frozen=True)
class Latency:
    """A one-way delay distribution, in seconds.

    constant: ``mean``; uniform: [``low``, ``high``]; exponential: ``low`` +
    an exponential with mean ``mean``; lognormal: median ``mean``, shape
    ``sigma``. Every draw is clipped to [``low``, ``cap``].
    """

    dist: str = "uniform"
    mean: float = 0.002
    low: float = 0.0005
    high: float = 0.004
    sigma: float = 0.5
    cap: float = 1.0

    def __post_init__(self) -> None:
        if self.dist not in DISTRIBUTIONS:
            raise ScenarioError(f"latency dist must be one of {', '.join(DISTRIBUTIONS)}, got {self.dist!r}")
        for name in ("mean", "low", "high", "sigma", "cap"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ScenarioError(f"latency {name} must be a finite number >= 0, got {value!r}")
        if self.high < self.low:
            raise ScenarioError(f"latency high ({self.high}) is below low ({self.low})")

    def sample(self, rng: random.Random) -> float:
        if self.dist == "constant":
            d = self.mean
        elif self.dist == "uniform":
            d = rng.uniform(self.low, self.high)
        elif self.dist == "exponential":
            d = self.low + (rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0)
        else:
            d = rng.lognormvariate(math.log(self.mean) if self.mean > 0 else -20.0, self.sigma)
        return min(max(d, self.low), self.cap)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Latency:
        unknown = set(doc) - {"dist", "mean", "low", "high", "sigma", "cap"}
        if unknown:
            raise ScenarioError(f"unknown latency fields: {', '.join(sorted(unknown))}")
        return cls(**doc)


@dataclass
class SimNetwork:
    """Links between node ids. ``blocked`` holds one-way (src, dst) cuts."""

    latency: Latency = field(default_factory=Latency)
    loss: float = 0.0
    duplicate: float = 0.0
    blocked: set[tuple[str, str]] = field(default_factory=set)
    slow: dict[tuple[str, str], float] = field(default_factory=dict)  # extra delay per link

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ScenarioError(f"network {name} must be a probability in [0, 1], got {value!r}")

    def fate(self, src: str, dst: str, rng: random.Random) -> list[float]:
        """The delays after which copies of one message arrive: [] when it is lost."""
        if (src, dst) in self.blocked:
            return []
        # Draw in a fixed order whatever the outcome, so one message's fate never shifts the next's
        # (a fault that is off draws nothing: the hot path of a clean network is one draw).
        lost = self.loss > 0 and rng.random() < self.loss
        dup = self.duplicate > 0 and rng.random() < self.duplicate
        first = self.latency.sample(rng)
        extra = self.slow.get((src, dst), 0.0)
        if lost:
            return []
        if dup:
            return [first + extra, self.latency.sample(rng) + extra]
        return [first + extra]

    # -------------------------------------------------------------- partitions
    def partition(self, groups: Iterable[Iterable[str]], everyone: Iterable[str]) -> None:
        """Cut every link between different groups (both ways); nodes in no group form one more."""
        self.blocked = groups_cuts([list(g) for g in groups], list(everyone))

    def cut(self, src: str, dst: str) -> None:
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked = set()
        self.slow = {}

    def reachable(self, src: str, dst: str) -> bool:
        return (src, dst) not in self.blocked
