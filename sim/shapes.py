"""Jepsen's named partition shapes, as lists of one-way cuts (pure functions of the node list).

Each returns the (src, dst) links to cut. ``rng`` chooses where a shape
leaves a choice (which half, which node bridges), from the run's seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

Cuts = set[tuple[str, str]]


def _between(a: Sequence[str], b: Sequence[str]) -> Cuts:
    return {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}


def isolate(nodes: Sequence[str], victim: str) -> Cuts:
    """One node cut off from everyone (both ways)."""
    return _between([victim], [n for n in nodes if n != victim])


def halves(nodes: Sequence[str], rng: random.Random) -> Cuts:
    """A random split into a smaller and a larger half."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    k = len(shuffled) // 2
    return _between(shuffled[:k], shuffled[k:])


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Cuts:
    """Every node sees a majority, but no two nodes see the same one (Jepsen's majorities-ring):
    nodes sit on a ring and each reaches only its nearest neighbours, a majority in all."""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    reach = n // 2  # neighbours on each side... a node plus its n//2 nearest form a majority
    cuts: Cuts = set()
    for i, a in enumerate(ring):
        near = {ring[(i + d) % n] for d in range(-(reach // 2 + reach % 2), reach // 2 + 1)}
        cuts |= {(a, b) for b in ring if b not in near}
    # Keep links symmetric: a link is cut if either end would cut it.
    return cuts | {(b, a) for a, b in cuts}


def bridge(nodes: Sequence[str], rng: random.Random) -> Cuts:
    """Two halves that can't reach each other, and one node that reaches both."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    middle, rest = shuffled[0], shuffled[1:]
    k = len(rest) // 2
    return _between(rest[:k], rest[k:]) - {(middle, n) for n in rest} - {(n, middle) for n in rest}


def one_way(nodes: Sequence[str], src: str) -> Cuts:
    """Everything ``src`` sends is lost; it still hears everyone."""
    return {(src, n) for n in nodes if n != src}


SHAPES = ("isolate", "isolate-leader", "halves", "majorities-ring", "bridge", "one-way", "one-way-leader")


def groups_cuts(groups: Sequence[Sequence[str]], nodes: Sequence[str]) -> Cuts:
    """Every link between different groups, both ways; nodes in no group form one more group."""
    side: dict[str, int] = {}
    for i, g in enumerate(groups):
        for n in g:
            side[n] = i
    rest = len(groups)
    ordered = sorted(nodes)
    return {(a, b) for a in ordered for b in ordered if a != b and side.get(a, rest) != side.get(b, rest)}


def describe_cuts(cuts: Sequence[tuple[str, str]]) -> str:
    """Cut links as a person reads them: ``{n1,n2} | {n3,n4,n5}`` when they split the nodes into
    groups cut off from each other both ways, else the one-way links (``n1>n2 n3>n1``)."""
    nodes = sorted({n for link in cuts for n in link}, key=lambda n: (len(n), n))
    cut = set(map(tuple, cuts))
    groups: list[list[str]] = []
    for node in nodes:
        for g in groups:
            if all((node, o) not in cut and (o, node) not in cut for o in g):
                g.append(node)
                break
        else:
            groups.append([node])
    side = {n: i for i, g in enumerate(groups) for n in g}
    clean = all(((a, b) in cut) == (side[a] != side[b]) for a in nodes for b in nodes if a != b)
    if clean and len(groups) > 1:
        return " | ".join("{" + ",".join(g) + "}" for g in sorted(groups, key=lambda g: (len(g), g)))
    return " ".join(f"{a}>{b}" for a, b in sorted(cut, key=lambda l: ((len(l[0]), l[0]), (len(l[1]), l[1]))))
