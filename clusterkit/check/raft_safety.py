"""Raft safety invariants over per-node observations (Raft paper, figure 3).

A :class:`RaftSafetyMonitor` is fed what nodes report (who leads which term,
what each node has committed and applied, what its log holds, its term and
vote) and raises :class:`InvariantViolation` the moment a property breaks. It
knows nothing of how the observations were made, so the in-memory network, the
simulator and real nodes all use it.

Besides figure 3's properties it checks the two per-node rules they rest on
(figure 2, "persistent state on all servers"):

* **term monotonicity**: a node's term never goes down, neither while it runs
  (:meth:`RaftSafetyMonitor.term_seen`) nor in its durable hard state
  (:meth:`~RaftSafetyMonitor.persisted`), nor when it restarts from that
  state (:meth:`~RaftSafetyMonitor.restarted`). A node that crashes before
  syncing a higher term may come back with the lower one (it sent nothing
  based on it), so across a crash only what was *persisted* is compared;
* **one vote per term**: a node grants its vote to at most one candidate in a
  term, even across a restart (:meth:`~RaftSafetyMonitor.persisted`,
  :meth:`~RaftSafetyMonitor.vote_granted`, :meth:`~RaftSafetyMonitor.restarted`).

A driver reports a node's lifetimes in order: :meth:`~RaftSafetyMonitor.restarted`
when it starts again from its storage, then any number of the other calls.
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
    live_term: dict[str, int] = field(default_factory=dict)  # node -> its term when last seen, this lifetime
    durable_term: dict[str, int] = field(default_factory=dict)  # node -> highest term it persisted (synced)
    votes: dict[tuple[str, int], str] = field(default_factory=dict)  # (node, term) -> who it voted for
    # Leader completeness, incrementally: committed indexes in the order they became known, and per
    # (leader, term) how many of them that leader was already shown to hold (a leader never drops
    # an entry in its term, so each need be checked once).
    _commit_order: list[int] = field(default_factory=list, repr=False)
    _complete_upto: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)

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
                self._commit_order.append(e.index)
            else:
                if not _same(prev, e):
                    raise InvariantViolation(
                        f"commit safety: {node} has {e!r} committed at index {e.index}, "
                        f"another node committed {prev!r}"
                    )
                if term < self.commit_term[e.index]:
                    self.commit_term[e.index] = term
                    self._complete_upto.clear()  # an entry seen committed earlier: check again

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
        order = self._commit_order
        start = self._complete_upto.get((leader, term), 0)
        for pos in range(start, len(order)):
            index = order[pos]
            entry = self.committed[index]
            if index <= offset or self.commit_term[index] >= term:
                continue
            have = log[index - offset - 1] if index <= last else None
            if have is None or not _same(have, entry):
                raise InvariantViolation(
                    f"leader completeness: {leader} leads term {term} without entry {index} "
                    f"committed in term {self.commit_term[index]} ({entry!r}); it holds {have!r}"
                )
        self._complete_upto[(leader, term)] = len(order)

    # ------------------------------------------------------------ per-node durable state
    def term_seen(self, node: str, term: int) -> None:
        """``node`` is up at ``term`` (its in-memory term; report it as often as convenient).

        Term monotonicity while live: the term never drops below the one last seen in this
        lifetime, nor below one the node persisted (memory is always at least as new as disk).
        A restart, reported with :meth:`restarted`, starts a new lifetime."""
        floor = self.live_term.get(node, 0)
        if term < floor:
            raise InvariantViolation(f"term monotonicity: {node} went from term {floor} back to term {term}")
        durable = self.durable_term.get(node, 0)
        if term < durable:
            raise InvariantViolation(
                f"term monotonicity: {node} runs at term {term} below term {durable} it persisted"
            )
        self.live_term[node] = term

    def persisted(self, node: str, term: int, vote: str | None) -> None:
        """``node``'s hard state is durably synced with ``term`` and ``vote``.

        Report it only once synced (after ``Storage.sync()``, or whenever nothing written is
        pending): an unsynced write may be lost in a crash and nobody may rely on it. The durable
        term never goes down (a disk does not roll back, crashes included), and the vote joins
        the node's record for that term (one candidate per term)."""
        durable = self.durable_term.get(node, 0)
        if term < durable:
            raise InvariantViolation(
                f"term monotonicity: {node} persisted term {term} after it had persisted term {durable}"
            )
        self.durable_term[node] = term
        if vote is not None:
            self._vote(node, term, vote, "persisted")

    def vote_granted(self, voter: str, term: int, candidate: str) -> None:
        """``voter`` sent ``candidate`` a granted vote (not a pre-vote) in ``term``.

        Report it as the message leaves ``voter`` (after its sync): the vote must then be
        durable, so ``term`` also becomes a floor for the term ``voter`` may restart with."""
        if term > self.durable_term.get(voter, 0):
            self.durable_term[voter] = term
        self._vote(voter, term, candidate, "granted")

    def restarted(self, node: str, term: int, vote: str | None) -> None:
        """``node`` started again from its storage with hard state ``term`` and ``vote``
        (call it before reporting anything else of the new lifetime).

        Its term is at least every term it persisted or voted in before (what it did not sync
        it may forget, since it sent nothing based on it). Restarting in a term it voted in, it
        must still hold that vote: one it forgot would let it vote for someone else."""
        durable = self.durable_term.get(node, 0)
        if term < durable:
            raise InvariantViolation(
                f"term monotonicity: {node} restarted at term {term}, below term {durable} it had persisted"
            )
        had = self.votes.get((node, term))
        if had is not None and vote != had:
            raise InvariantViolation(
                f"one vote per term: {node} restarted in term {term} voting for {vote!r}; "
                f"it had voted for {had!r}"
            )
        self.durable_term[node] = term
        self.live_term[node] = term
        if vote is not None:
            self.votes[(node, term)] = vote

    def forget(self, node: str) -> None:
        """``node``'s storage was wiped or replaced: what comes back under its id is a new member,
        which starts from term 0."""
        self.live_term.pop(node, None)
        self.durable_term.pop(node, None)
        for key in [k for k in self.votes if k[0] == node]:
            del self.votes[key]

    def _vote(self, node: str, term: int, candidate: str, how: str) -> None:
        had = self.votes.setdefault((node, term), candidate)
        if had != candidate:
            raise InvariantViolation(
                f"one vote per term: {node} voted for {had!r} and for {candidate!r} in term {term} ({how})"
            )
