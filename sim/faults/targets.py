"""Resolving a fault's target (leader, follower, random, killed, paused, new, or a node id) when
it fires: one rule for the simulator's nemesis and the real-process runner."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from .fault import Fault


def resolve(fault: Fault, *, live: Sequence[str], leader: Callable[[], str | None], rng: random.Random,
            killed: Sequence[str], paused: Sequence[str], new_id: Callable[[], str],
            exists: Callable[[str], bool]) -> str | None:
    """The node ``fault`` targets now, "" for a kind that targets none, None when there is none.
    ``killed``/``paused``: the nodes down or stopped now, newest last (the newest is taken)."""
    target = fault.node
    if target == "leader":
        return leader()
    if target == "follower":
        lead = leader()
        others = [n for n in live if n != lead]
        return rng.choice(others) if others else None
    if target == "random":
        return rng.choice(live) if live else None
    if target == "killed":
        return killed[-1] if killed else None
    if target == "paused":
        return paused[-1] if paused else None
    if target == "new":
        return new_id()
    if fault.kind == "join":
        return target if target and not exists(target) else None
    return target if exists(target) else (None if target else "")
