"""Quorum sizes, and where a partition's operations go at one placement.

W and R are set for RF copies (defaults: a majority of RF each, W + R > RF).
During a migration a partition can have more or fewer complete copies than
RF; ``needed`` scales W and R to n copies so that any write set and any read
set of the same n still intersect (for n > RF both grow by n - RF; for
n < RF both are capped at n). See README "The KV store" for why reads ask
the complete holders only and why a write during a migration must also
reach a quorum of the new owners.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from clusterkit.facade import Partition


def needed(n: int, q: int, rf: int) -> int:
    """How many of n copies make a quorum that is q of rf."""
    return min(n, q) if n <= rf else q + (n - rf)


@dataclass(frozen=True, slots=True)
class Quorums:
    rf: int
    w: int = 0  # 0: a majority of rf
    r: int = 0
    # A read's write-back: how many copies must hold what it returns (0: W). Any number that meets
    # every read quorum will do (echo + R > RF): a later read, or a write's version query, sees it.
    # Only W = RF needs less than W here, or every read would need every copy.
    echo: int = 0

    def __post_init__(self) -> None:
        if type(self.rf) is not int or self.rf < 1:
            raise ValueError(f"replication factor must be a positive integer, got {self.rf!r}")
        majority = self.rf // 2 + 1
        object.__setattr__(self, "w", self.w or majority)
        object.__setattr__(self, "r", self.r or majority)
        object.__setattr__(self, "echo", self.echo or self.w)
        for name in ("w", "r", "echo"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= self.rf:
                raise ValueError(f"{name.upper()} must be between 1 and RF={self.rf}, got {value!r}")
        if self.w + self.r <= self.rf:
            raise ValueError(f"W + R must exceed RF (got W={self.w}, R={self.r}, RF={self.rf}): reads would miss writes")
        if self.echo + self.r <= self.rf:
            raise ValueError(f"a read's write-back must meet every read quorum (got {self.echo} of RF={self.rf},"
                             f" R={self.r})")

    def with_w(self, w: int | None) -> Quorums:
        """A per-operation W (the seed's ``set(..., quorum=3)``): only ever raised, as reads count on it."""
        if w is None or w == self.w:
            return self
        if type(w) is not int or not self.w <= w <= self.rf:
            raise ValueError(f"quorum must be between W={self.w} and RF={self.rf}, got {w!r}")
        return Quorums(self.rf, w, self.r, self.echo)

    def writeback(self) -> Quorums:
        """The quorums a read's write-back is done at: W is the echo."""
        return self if self.echo == self.w else Quorums(self.rf, self.echo, self.r, self.echo)


@dataclass(frozen=True, slots=True)
class Placement:
    """One partition at one epoch: who holds it complete, who it is moving to."""

    number: int
    epoch: int
    primary: str
    serving: tuple[str, ...]  # every node with a copy or getting one: writes go to all of them
    holders: tuple[str, ...]  # complete copies: reads ask these
    owners: tuple[str, ...]  # where it is going (differs from holders during a migration)
    incoming: tuple[str, ...]
    failed: tuple[str, ...] = ()  # holders marked failed: counted in quorums, asked, not written to in the background
    # Worked out once (a placement is shared by every operation at its epoch): nothing moving, so
    # one quorum of the holders is enough.
    settled: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settled", set(self.owners) == set(self.holders))

    @classmethod
    def of(cls, p: Partition) -> Placement:
        return cls(p.number, p.epoch, p.primary, (p.primary, *p.replicas), p.holders, p.owners, p.incoming, p.failed)

    @property
    def asked(self) -> tuple[str, ...]:
        """Every copy an operation asks: the serving ones, then the failed holders (a node marked
        failed may only be cut off from the leader; while it holds a copy that counts, its answer
        counts too)."""
        return self.serving + self.failed if self.failed else self.serving

    def read_done(self, replied: Collection[str], q: Quorums) -> bool:
        """A read quorum of the complete copies, and while copies move, a read quorum of the new
        owners too: once the move is confirmed, writes need only a quorum of those owners, and a
        copy that hasn't applied the confirmation yet still serves reads at this placement."""
        if not sum(n in replied for n in self.holders) >= needed(len(self.holders), q.r, q.rf) > 0:
            return False
        if self.settled:
            return True
        return sum(n in replied for n in self.owners) >= needed(len(self.owners), q.r, q.rf)

    def write_done(self, acked: Collection[str], q: Quorums) -> bool:
        """A quorum of the complete copies, and while copies move, a quorum of the new owners too
        (so the write survives whichever old owners the migration releases)."""
        if not sum(n in acked for n in self.holders) >= needed(len(self.holders), q.w, q.rf) > 0:
            return False
        if self.settled:
            return True
        return sum(n in acked for n in self.owners) >= needed(len(self.owners), q.w, q.rf)

    def copy_sources(self, q: Quorums) -> int:
        """How many complete copies a new owner merges: a read quorum, as a quorum write need not
        have reached any one of them."""
        return needed(len(self.holders), q.r, q.rf)
