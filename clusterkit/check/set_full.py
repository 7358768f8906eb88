"""Lost and stale elements in a grow-only set (Jepsen's set-full checker).

Operations: ``add`` an element, ``read`` the whole set. Only ``ok`` adds are
acknowledged; an ``info`` add may or may not have happened, a ``fail`` add did
not. An element becomes *known* when its add is acknowledged or a read first
shows it. Against every read that began after that point:

- **stable**: every such read shows it;
- **lost**: some read misses it and no later read shows it again — an
  acknowledged write was lost;
- **stale**: some read misses it but a later read shows it — a stale read
  (not linearizable, though nothing was lost);
- **never read**: no read began after it was known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import HistoryError, Operation


@dataclass
class SetFullResult:
    valid: bool  # nothing lost and nothing stale
    stable: list[Any] = field(default_factory=list)
    lost: list[Any] = field(default_factory=list)
    stale: list[Any] = field(default_factory=list)
    never_read: list[Any] = field(default_factory=list)
    impossible: list[Any] = field(default_factory=list)  # read but never added, or added with fail
    unacknowledged_seen: list[Any] = field(default_factory=list)  # info/unreturned adds a read showed

    def summary(self) -> str:
        return (
            f"{'valid' if self.valid else 'INVALID'}: {len(self.stable)} stable, {len(self.lost)} lost, "
            f"{len(self.stale)} stale, {len(self.never_read)} never read"
        )


def check_set_full(ops: Sequence[Operation], source: str = "<history>") -> SetFullResult:
    adds: dict[Any, Operation] = {}
    reads: list[Operation] = []
    for op in ops:
        if op.f == "add":
            if op.input in adds and adds[op.input].status == "ok":
                continue
            adds[op.input] = op
        elif op.f == "read":
            if op.status == "ok":
                if not isinstance(op.output, (list, tuple, set, frozenset)):
                    raise HistoryError(source, op.ret_line or op.call_line, f"read must return a collection, got {op.output!r}")
                reads.append(op)
        else:
            raise HistoryError(source, op.call_line, f"set-full has add and read, not {op.f!r}")
    reads.sort(key=lambda o: o.call)
    contents = [frozenset(r.output) for r in reads]

    result = SetFullResult(valid=True)
    elements = list(adds)
    result.impossible = sorted({e for c in contents for e in c if e not in adds}, key=repr)
    for e in sorted(elements, key=repr):
        add = adds[e]
        if add.status == "fail":
            if any(e in c for c in contents):
                result.impossible.append(e)  # a failed add must never become visible
            continue
        known = add.ret if add.status == "ok" else None
        first_seen = next((r.ret for r, c in zip(reads, contents) if e in c), None)
        if known is None or (first_seen is not None and first_seen < known):
            known = first_seen
        if add.status != "ok" and first_seen is not None:
            result.unacknowledged_seen.append(e)
        if known is None:
            continue  # an unacknowledged add never seen: it may simply not have happened
        after = [(r, c) for r, c in zip(reads, contents) if r.call > known]
        if not after:
            result.never_read.append(e)
            continue
        present = [e in c for _, c in after]
        if all(present):
            result.stable.append(e)
        elif present[-1]:
            result.stale.append(e)
        else:
            result.lost.append(e)
    result.impossible.sort(key=repr)
    result.valid = not result.lost and not result.stale and not result.impossible
    return result
