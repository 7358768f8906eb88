"""Linearizability checking: Wing & Gong's search with Lowe's memoisation, per key.

The history of each key (P-compositionality: a history is linearizable iff
each key's is) is laid out as a doubly linked list of call and return
entries in time order. The search walks it: at a call, try to place that
operation now (its model step must be legal); at a return whose operation is
not placed yet, backtrack. Lowe's memoisation skips any (set of placed
operations, model state) configuration seen before.

Three refinements, each sound:

- An operation whose outcome is unknown never returns, so it has no return
  entry: it may take effect at any point after its call, or never. Such
  operations sit on a list of their own and are tried only when no returning
  operation can be placed.
- The memo is generalised from equality to subsumption on those operations:
  a configuration with the same placed returning operations and state, that
  used a subset of the unknown-outcome ones, has every option the other has.
- A read-only operation that is legal now is placed now and never retried
  later: the state doesn't change, so a later place can't be better.

Budgets: ``max_steps`` bounds the search deterministically; ``deadline`` with
an injected ``clock`` bounds it in time (the core reads no clock itself);
``max_cache`` bounds the memo's (placed, state) keys. Running out answers
UNKNOWN, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .history import Operation
from .models import ILLEGAL, Model


class Verdict(Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNKNOWN = "unknown"


@dataclass
class KeyFailure:
    """Why a key's history can't be linearized: the operation that can't be placed, and its neighbourhood."""

    key: Any
    blocked: Operation  # returns before it (or something it must follow) can take effect
    concurrent: list[Operation]  # not yet linearized and overlapping ``blocked``: every order was tried
    linearized_before: list[Operation]  # the longest linearizable prefix found, last few operations

    def window(self) -> list[Operation]:
        ops = {op.id: op for op in [*self.linearized_before, *self.concurrent, self.blocked]}
        return sorted(ops.values(), key=lambda o: (o.call, o.id))


@dataclass
class CheckResult:
    verdict: Verdict
    keys: int = 0  # keys (independent sub-histories) checked
    operations: int = 0
    steps: int = 0
    failure: KeyFailure | None = None
    unknown_key: Any = None
    reason: str = ""
    per_key_steps: dict[Any, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    def explain(self) -> str:
        if self.verdict is Verdict.LINEARIZABLE:
            return f"linearizable ({self.operations} operations, {self.keys} keys, {self.steps} search steps)"
        if self.verdict is Verdict.UNKNOWN:
            # Register models check one history with no key: naming "key None" would mislead.
            where = f" (key {self.unknown_key!r})" if self.unknown_key is not None else ""
            return f"unknown: {self.reason}{where}"
        f = self.failure
        assert f is not None
        where = f"key {f.key!r}: " if f.key is not None else ""
        lines = [f"not linearizable: {where}no order of these operations is legal:"]
        for op in f.window():
            mark = ">>" if op.id == f.blocked.id else "  "
            lines.append(f"  {mark} {op.describe()}")
        lines.append("  (>> marks the operation that cannot be placed after the ones before it)")
        return "\n".join(lines)


class _BudgetExceeded(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _check_key(
    key: Any,
    ops: Sequence[Operation],
    model: Model,
    max_steps: int,
    max_cache: int,
    clock: Callable[[], float] | None,
    deadline: float,
) -> tuple[bool, int, KeyFailure | None]:
    n = len(ops)
    if n == 0:
        return True, 0, None
    steps_fn = [model.step(op) for op in ops]
    greedy = [model.read_only(op) for op in ops]
    # Operations with an unknown outcome never return. They live on a list of their own, are
    # tried only when no returning operation can be placed, and need not be placed at all.
    is_info = [op.ret == math.inf for op in ops]

    # Main list: calls and returns of returning operations in time order (calls first at equal
    # times: equal times overlap), between sentinels 0 and ``tail``. Info list: calls of
    # never-returning operations in call order, between sentinels ``ihead`` and ``itail``.
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops) if not is_info[i]]
        + [(op.ret, 1, i) for i, op in enumerate(ops) if not is_info[i]]
    )
    infos = sorted((op.call, i) for i, op in enumerate(ops) if is_info[i])
    tail = len(events) + 1
    ihead = tail + 1
    itail = ihead + len(infos) + 1
    size = itail + 1
    nxt = [0] * size
    prv = [0] * size
    op_of = [0] * size
    is_call = [False] * size
    when = [0.0] * size
    match = [0] * size  # call entry -> its return entry (0 for never-returning operations)
    call_entry = [0] * n
    for pos, (t, kind, i) in enumerate(events, start=1):
        op_of[pos], when[pos] = i, t
        if kind == 0:
            is_call[pos] = True
            call_entry[i] = pos
        else:
            match[call_entry[i]] = pos
    for pos, (t, i) in enumerate(infos, start=ihead + 1):
        op_of[pos], when[pos], is_call[pos] = i, t, True
    for first, last in ((0, tail), (ihead, itail)):
        for pos in range(first, last):
            nxt[pos] = pos + 1
            prv[pos + 1] = pos
    when[itail] = math.inf
    remaining = n - len(infos)  # returning operations not placed yet

    state = model.init()
    placed = 0  # bitset of placed operations
    info_mask = sum(1 << i for i in range(n) if is_info[i])
    cache: dict[tuple[int, Any], list[int]] = {}
    stack: list[tuple[int, Any, float, int]] = []  # (entry placed, state before, info limit, blocker)
    entry = nxt[0]
    limit = -math.inf  # in the info list: only calls at or before this time are in the window
    blocker = 0  # the first unplaced return entry of the current configuration
    steps = 0
    best_depth = -1
    best: tuple[int, int, list[int]] | None = None  # (blocking op, placed set, placement order)

    while remaining:
        steps += 1
        if steps & 4095 == 0:
            if steps > max_steps:
                raise _BudgetExceeded(f"search step budget of {max_steps} exhausted")
            if clock is not None and clock() > deadline:
                raise _BudgetExceeded("time budget exhausted")
            if len(cache) > max_cache:
                raise _BudgetExceeded(f"memo cache over {max_cache} configurations")
        if entry != itail and not is_call[entry]:
            # The first unplaced return: now try the never-returning calls made before it.
            blocker = entry
            limit = when[entry]
            entry = nxt[ihead]
            if when[entry] > limit:
                entry = itail
            continue
        if entry == itail:
            # Nothing more can be placed in this configuration: backtrack.
            if len(stack) > best_depth:
                best_depth = len(stack)
                best = (op_of[blocker], placed, [op_of[e] for e, _, _, _ in stack])
            while True:
                if not stack:
                    return _failure(key, ops, best, steps)
                entry, state, limit, blocker = stack.pop()
                i = op_of[entry]
                placed &= ~(1 << i)
                r = match[entry]
                if r:
                    p, q = prv[r], nxt[r]
                    nxt[p] = r
                    prv[q] = r
                    remaining += 1
                p, q = prv[entry], nxt[entry]
                nxt[p] = entry
                prv[q] = entry
                if not greedy[i]:
                    break
                # A legal read is always placed as early as possible: skipping it can't help.
            entry = nxt[entry]
            if entry > tail and when[entry] > limit:
                entry = itail
            continue
        i = op_of[entry]
        new_state = steps_fn[i](state)
        if new_state is not ILLEGAL:
            new_placed = placed | (1 << i)
            new_info = new_placed & info_mask
            memo = (new_placed & ~info_mask, new_state)
            seen = cache.get(memo)
            fresh = True
            if seen is None:
                cache[memo] = [new_info]
            else:
                # Subsumed if an earlier visit reached the same placed set and state using
                # only a subset of these unknown-outcome operations: it had every option we have.
                for used in seen:
                    if used & ~new_info == 0:
                        fresh = False
                        break
                if fresh:
                    seen.append(new_info)
            if fresh:
                stack.append((entry, state, limit, blocker))
                state = new_state
                placed = new_placed
                p, q = prv[entry], nxt[entry]
                nxt[p] = q
                prv[q] = p
                r = match[entry]
                if r:
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    remaining -= 1
                entry = nxt[0]
                continue
            if greedy[i]:
                # Placing this read here was already explored, and placing it later can't help.
                blocker = match[entry]
                entry = itail
                continue
        entry = nxt[entry]
        if entry > tail and when[entry] > limit:
            entry = itail
    return True, steps, None


def _failure(
    key: Any, ops: Sequence[Operation], best: tuple[int, int, list[int]] | None, steps: int
) -> tuple[bool, int, KeyFailure]:
    assert best is not None
    blocked_i, placed, order = best
    blocked = ops[blocked_i]
    concurrent = [
        op
        for j, op in enumerate(ops)
        if not (placed >> j) & 1 and j != blocked_i and op.call < blocked.ret and op.ret > blocked.call
    ]
    before = [ops[j] for j in order[-3:]]
    return False, steps, KeyFailure(key, blocked, concurrent, before)


def check_operations(
    ops: Sequence[Operation],
    model: Model,
    *,
    max_steps: int = 50_000_000,
    max_cache: int = 5_000_000,
    budget_seconds: float | None = None,
    clock: Callable[[], float] | None = None,
    source: str = "<history>",
) -> CheckResult:
    """Check paired operations against ``model``. Keys are checked smallest first; the first
    non-linearizable key stops the check."""
    if budget_seconds is not None and clock is None:
        raise ValueError("a time budget needs a clock (e.g. time.monotonic)")
    kept = model.prepare(ops, source)
    parts = model.partition(kept)
    deadline = clock() + budget_seconds if (clock is not None and budget_seconds is not None) else math.inf
    result = CheckResult(Verdict.LINEARIZABLE, keys=len(parts), operations=len(kept))
    for key in sorted(parts, key=lambda k: (len(parts[k]), repr(k))):
        try:
            ok, steps, failure = _check_key(key, parts[key], model, max_steps, max_cache, clock, deadline)
        except _BudgetExceeded as exc:
            result.verdict = Verdict.UNKNOWN
            result.unknown_key = key
            result.reason = exc.reason
            return result
        result.steps += steps
        result.per_key_steps[key] = steps
        if not ok:
            result.verdict = Verdict.NOT_LINEARIZABLE
            result.failure = failure
            return result
    return result
