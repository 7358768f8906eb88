"""Raft safety invariants over per-node observations (Raft paper, figure 3).

A :class:`RaftSafetyMonitor` is fed what nodes report (who leads which term,
what each node has committed and applied, what its log holds) and raises
:class:`InvariantViolation` the moment a property breaks. It knows nothing of
how the observations were made, so the in-memory network, the simulator and
real nodes all use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..raft.messages import Entry


class InvariantViolation(AssertionError):
    """A safety property of Raft does not hold."""


def _same(a: Entry, b: Entry) -> bool:
    return a.term == b.term and a.data == b.data and a.type == b.type


@dataclass
class RaftSafetyMonitor:
    leaders: dict[int, str] = field(default_factory=dict)  # term -> the one leader of that term
    committed: dict[int, Entry] = field(default_factory=dict)  # index -> entry known committed
    commit_term: dict[int, int] = field(default_factory=dict)  # index -> lowest term it was seen committed in
    applied: dict[int, Entry] = field(default_factory=dict)  # index -> entry some node applied
    log_checks: int = 0  # how many times log matching was checked

    def leader_seen(self, node: str, term: int) -> None:
        """Election safety: at most one leader per term."""
        prev = self.leaders.setdefault(term, node)
        if prev != node:
            raise InvariantViolation(f"election safety: {prev} and {node} both lead term {term}")

    def committed_seen(self, node: str, term: int, entries: Sequence[Entry]) -> None:
        """Entries ``node`` (at ``term``) considers committed: they never change once committed."""
        for e in entries:
            prev = self.committed.get(e.index)
            if prev is None:
                self.committed[e.index] = e
                self.commit_term[e.index] = term
            else:
                if not _same(prev, e):
                    raise InvariantViolation(
                        f"commit safety: {node} has {e!r} committed at index {e.index}, "
                        f"another node committed {prev!r}"
                    )
                if term < self.commit_term[e.index]:
                    self.commit_term[e.index] = term

    def applied_seen(self, node: str, entry: Entry) -> None:
        """State machine safety: every node applies the same entry at the same index."""
        prev = self.applied.setdefault(entry.index, entry)
        if not _same(prev, entry):
            raise InvariantViolation(
                f"state machine safety: {node} applied {entry!r} at index {entry.index}, "
                f"another node applied {prev!r}"
            )

    def check_log_matching(self, logs: Mapping[str, tuple[int, Sequence[Entry]]]) -> None:
        """Log matching: two logs with an entry of the same index and term agree on everything up to it.

        ``logs`` maps a node to (offset, entries): entries[i] has index offset + i + 1. What lies
        at or below an offset is covered by a snapshot of committed entries and is not compared here.
        """
        self.log_checks += 1
        names = sorted(logs)
        for i, a_name in enumerate(names):
            a_off, a = logs[a_name]
            for b_name in names[i + 1 :]:
                b_off, b = logs[b_name]
                lo = max(a_off, b_off) + 1
                k = min(a_off + len(a), b_off + len(b))
                # Highest common index where the terms agree; everything from lo up to it must be identical.
                while k >= lo and a[k - a_off - 1].term != b[k - b_off - 1].term:
                    k -= 1
                for j in range(lo, k + 1):
                    x, y = a[j - a_off - 1], b[j - b_off - 1]
                    if not _same(x, y):
                        raise InvariantViolation(
                            f"log matching: {a_name} and {b_name} agree on the term at index {k} "
                            f"but differ at index {j}: {x!r} vs {y!r}"
                        )

    def check_leader_completeness(self, leader: str, term: int, offset: int, log: Sequence[Entry]) -> None:
        """A leader of term T holds every entry committed in a term before T (entries up to ``offset``
        are in its snapshot, which only ever holds committed entries)."""
        last = offset + len(log)
        for index, entry in self.committed.items():
            if index <= offset or self.commit_term[index] >= term:
                continue
            have = log[index - offset - 1] if index <= last else None
            if have is None or not _same(have, entry):
                raise InvariantViolation(
                    f"leader completeness: {leader} leads term {term} without entry {index} "
                    f"committed in term {self.commit_term[index]} ({entry!r}); it holds {have!r}"
                )
