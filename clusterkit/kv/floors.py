"""Per partition, the tombstone collections this copy applied and still remembers, and its floor.

A copy's *floor* rises above every tombstone it collected (and every floor it learned from another
copy). A record sent by someone who knew an older floor may be older than a delete collected since;
these rounds tell whether it is safe to take. Used by every protocol that merges records: the
coordinator's Store, migration and repair batches, ASYNC Replicates, and collection itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import KVData
from .records import Record, Version

REMEMBERED_ROUNDS = 8  # older senders are refused

# (floor before, floor after, key -> tombstone version removed)
Round = tuple[int, int, dict[str, Version]]


@dataclass(eq=False)
class CollectedRounds:
    data: KVData = field(repr=False)
    # partition -> (the floor the rounds reach back to, the rounds newest last)
    rounds: dict[int, tuple[int, list[Round]]] = field(default_factory=dict)

    def forget(self, p: int) -> None:
        """This copy's rounds of ``p`` no longer apply (it dropped the partition, or copies it afresh)."""
        self.rounds.pop(p, None)

    def adopt_floor(self, p: int, floor: int) -> None:
        """A floor learned from another copy (it collected tombstones this one never held, or
        hasn't collected yet): what was collected below it isn't known here, so the rounds
        remembered start again from it."""
        if floor > self.data.floor(p):
            self.data.raise_floor(p, floor)
            self.rounds[p] = (floor, [])

    def may_take(self, p: int, key: str, record: Record, floor: int) -> bool:
        """Whether a record sent by someone who knew only ``floor`` (older than ours) is safe to
        merge: the key holds something here (a merge keeps the newer), or none of the tombstones
        collected here since was of this key, or the one that was is older than the record. The
        rounds remembered don't reach back that far (a restart forgets them): not safe."""
        if self.data.get(p, key) is not None:
            return True
        rounds = self.rounds.get(p)
        if rounds is None or floor < rounds[0]:
            return False
        for _before, after, keys in rounds[1]:
            if after > floor:
                gone = keys.get(key)
                if gone is not None and record.version <= gone:
                    return False
        return True

    def remembered(self, p: int, key: str) -> Version | None:
        """The newest tombstone of ``key`` collected here in a round still remembered."""
        rounds = self.rounds.get(p)
        best = None
        for _before, _after, keys in rounds[1] if rounds is not None else ():
            gone = keys.get(key)
            if gone is not None and (best is None or gone > best):
                best = gone
        return best

    def note(self, p: int, before: int, floor: int, gone: dict[str, Version]) -> None:
        """A collection applied here raised ``p``'s floor from ``before`` to ``floor``, leaving
        nothing newer than ``gone`` of those keys."""
        rounds = self.rounds.setdefault(p, (before, []))
        if gone or floor > before:
            rounds[1].append((before, max(floor, before), gone))
            if len(rounds[1]) > REMEMBERED_ROUNDS:
                self.rounds[p] = (rounds[1][1][0], rounds[1][1:])
