"""The partition assigner: (nodes, P, RF, previous map) -> a new map.

Pure and deterministic. A map is a tuple indexed by partition number whose
items are owner tuples, the primary first: ``owners[p] = (primary, replica, ...)``.

What it guarantees (the tests hold each one), with r = min(RF, N):

- every partition has r distinct owners;
- every node owns floor or ceil of P*r/N copies and is primary of floor or
  ceil of P/N partitions;
- it moves as little as balance allows: owners that stay in the cluster keep
  their copies unless balance needs them elsewhere, so a join moves about
  P*r/(N+1) copies and a removal re-homes only the removed node's copies;
- a partition whose primary left gets a new primary among the owners that
  hold its data (``holders``, by default the previous owners), never a node
  that would still have to copy it, whenever one survives;
- with zone labels, a partition's copies span as many zones as balance allows.

How: keep what survives; give each partition that lacks owners the least
loaded node that doesn't own it yet (a fresh zone first); then, while a
node is above ceil or below floor, move one copy along the shortest chain
of nodes that can pass it on (an augmenting path: a balanced map always
exists, so one always exists too). Primaries get the same treatment over
each partition's owners. The chains are almost always one hop.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

Owners = tuple[str, ...]
PartitionMap = tuple[Owners, ...]

# Knuth's multiplicative hash: a cheap, deterministic scatter of where each
# partition starts looking among equally loaded nodes, so co-owner sets vary
# (a failed node's partitions then have copy sources on many nodes).
_GOLDEN = 0x9E3779B1


@dataclass(frozen=True, slots=True)
class Movement:
    """How much a new map moved relative to the previous one."""

    copies_moved: int  # (partition, node) ownerships that are new
    primaries_changed: int  # partitions whose primary differs


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _path(parent: Mapping[str, tuple[str, int]], start: str, end: str, forward: bool) -> list[tuple[str, str, int]]:
    """The (giver, taker, partition) hand-overs of a search tree's branch, far end first.

    Applying from the far end means no node ever holds less than it hands on.
    """
    steps = []
    node = end
    while node != start:
        prev, part = parent[node]
        steps.append((prev, node, part) if forward else (node, prev, part))
        node = prev
    return steps


def _validate(
    nodes: Sequence[str],
    partition_count: int,
    replication_factor: int,
    previous: Sequence[Sequence[str]] | None,
    zones: Mapping[str, str] | None,
    holders: Sequence[Collection[str]] | None,
) -> None:
    if type(partition_count) is not int or partition_count < 1:
        raise ValueError(f"partition count must be a positive integer, got {partition_count!r}")
    if type(replication_factor) is not int or replication_factor < 1:
        raise ValueError(f"replication factor must be a positive integer, got {replication_factor!r}")
    if isinstance(nodes, str):
        raise TypeError("nodes must be a sequence of node ids, not one string")
    if not nodes:
        raise ValueError("cannot assign partitions to an empty cluster")
    for node in nodes:
        if not isinstance(node, str) or not node:
            raise ValueError(f"node ids must be non-empty strings, got {node!r}")
    if len(set(nodes)) != len(nodes):
        dupes = sorted({n for n in nodes if list(nodes).count(n) > 1})
        raise ValueError(f"node ids must be unique, repeated: {dupes}")
    for name, seq in (("previous map", previous), ("holders", holders)):
        if seq is not None and len(seq) != partition_count:
            raise ValueError(f"{name} has {len(seq)} partitions, expected {partition_count}")
    if previous is not None:
        for p, owners in enumerate(previous):
            if isinstance(owners, str) or not all(isinstance(o, str) for o in owners):
                raise ValueError(f"previous map: partition {p} must list node ids, got {owners!r}")
            if len(set(owners)) != len(owners):
                raise ValueError(f"previous map: partition {p} lists an owner twice: {list(owners)}")
    if zones is not None:
        for node in nodes:
            zone = zones.get(node)
            if zone is not None and not isinstance(zone, str):
                raise ValueError(f"zone of {node} must be a string, got {zone!r}")


class _Assignment:
    """Mutable working state of one assign() call."""

    def __init__(self, order: list[str], partition_count: int, r: int, zone_of: dict[str, str] | None) -> None:
        self.order = order
        self.P = partition_count
        self.r = r
        self.zone_of = zone_of
        self.owners: list[list[str]] = [[] for _ in range(partition_count)]
        self.parts: dict[str, dict[int, None]] = {n: {} for n in order}
        # which copies existed before this call (moving them costs a copy)
        self.kept: list[tuple[str, ...]] = [() for _ in range(partition_count)]
        self.prev_primary: list[str | None] = [None] * partition_count
        copies = partition_count * r
        self.lo = copies // len(order)
        self.hi = _ceil_div(copies, len(order))
        # nodes bucketed by copy count; lists so a scatter index can pick within one
        self.buckets: dict[int, list[str]] = {}
        # copies each node got in this call: handing those on moves nothing extra
        self.fresh: dict[str, int] = dict.fromkeys(order, 0)

    # -- bookkeeping -------------------------------------------------------

    def count(self, node: str) -> int:
        return len(self.parts[node])

    def build_buckets(self) -> None:
        self.buckets = {}
        for node in self.order:
            self.buckets.setdefault(self.count(node), []).append(node)

    def _rebucket(self, node: str, old: int, new: int) -> None:
        bucket = self.buckets[old]
        bucket.remove(node)
        if not bucket:
            del self.buckets[old]  # pick() walks the levels; keep only occupied ones
        self.buckets.setdefault(new, []).append(node)

    def add(self, p: int, node: str) -> None:
        c = self.count(node)
        self.owners[p].append(node)
        self.parts[node][p] = None
        if node not in self.kept[p]:
            self.fresh[node] += 1
        self._rebucket(node, c, c + 1)

    def remove(self, p: int, node: str) -> None:
        c = self.count(node)
        self.owners[p].remove(node)
        del self.parts[node][p]
        if node not in self.kept[p]:
            self.fresh[node] -= 1
        self._rebucket(node, c, c - 1)

    def zones_of(self, owners: Sequence[str]) -> set[str]:
        assert self.zone_of is not None
        return {self.zone_of[o] for o in owners}

    # -- filling -----------------------------------------------------------

    def pick(self, p: int) -> str:
        """The node that should take one more copy of p."""
        own = self.owners[p]
        used = self.zones_of(own) if self.zone_of is not None else None
        fallback: str | None = None
        start_mix = (p * _GOLDEN + len(own) * 0x85EBCA6B) >> 7
        for level in sorted(self.buckets):
            bucket = self.buckets[level]
            size = len(bucket)
            if fallback is not None and level >= self.hi:
                return fallback  # a fresh zone is not worth overloading a node
            start = start_mix % size
            for k in range(size):
                node = bucket[(start + k) % size]
                if node in own:
                    continue
                if used is None or self.zone_of[node] not in used:  # type: ignore[index]
                    return node
                if fallback is None:
                    fallback = node
        assert fallback is not None, "r <= N guarantees a node without a copy"
        return fallback

    def fill(self) -> None:
        """Give every partition that lacks owners the least loaded nodes that don't own it."""
        if self.zone_of is not None:
            for p in range(self.P):
                while len(self.owners[p]) < self.r:
                    self.add(p, self.pick(p))
            return
        # The hot loop of a fresh map (P*r picks): inlined, and it relies on
        # counts only growing here, so the lowest occupied level only rises.
        r, owners, parts, buckets, fresh = self.r, self.owners, self.parts, self.buckets, self.fresh
        low = min(buckets)
        for p in range(self.P):
            own = owners[p]
            mix = p * _GOLDEN
            while len(own) < r:
                while low not in buckets:
                    low += 1
                level = low
                while True:
                    bucket = buckets.get(level)
                    if bucket:
                        size = len(bucket)
                        start = ((mix + len(own) * 0x85EBCA6B) >> 7) % size
                        for k in range(size):
                            i = start + k
                            if i >= size:
                                i -= size
                            node = bucket[i]
                            if node not in own:
                                break
                        else:
                            level += 1
                            continue
                        break
                    level += 1
                del bucket[i]
                if not bucket:
                    del buckets[level]
                own.append(node)
                parts[node][p] = None
                fresh[node] += 1
                nxt = buckets.get(level + 1)
                if nxt is None:
                    buckets[level + 1] = [node]
                else:
                    nxt.append(node)

    # -- moving copies along chains ------------------------------------------

    def movable(self, src: str, dst: str, fresh_only: bool = False) -> int | None:
        """A partition src owns and dst doesn't, the cheapest one to hand over.

        Cheapest: a copy src got in this call (moving it costs nothing extra),
        then a kept replica, then a kept primary; and never one that loses a
        zone when another choice keeps it.
        """
        best: int | None = None
        best_rank = 99
        zone_of = self.zone_of
        for p in reversed(self.parts[src]):
            own = self.owners[p]
            if dst in own:
                continue
            rank = 0
            if src in self.kept[p]:
                if fresh_only:
                    continue
                rank = 2 if self.prev_primary[p] == src else 1
            if zone_of is not None and zone_of[src] != zone_of[dst]:
                others = {zone_of[o] for o in own if o != src}
                if zone_of[dst] in others and zone_of[src] not in others:
                    rank += 3
            if rank == 0:
                return p
            if rank < best_rank:
                best, best_rank = p, rank
        return best

    def chain(self, start: str, is_end: Callable[[str], bool], forward: bool) -> list[tuple[str, str, int]] | None:
        """A cheap chain of copy hand-overs from ``start`` (forward) or into it.

        Forward: start gives a copy to n1, n1 gives one to n2, ... ending at a
        node with room. Backward: the mirror image, ending at a node with spare.
        Handing on a copy made in this call is free, any other costs one copy
        moved; so first a chain of free hand-overs, else one paid hop, else
        the shortest chain of any kind.
        """
        by_load = sorted(self.order, key=self.count, reverse=not forward)
        free = self._search(start, is_end, forward, by_load, fresh_only=True)
        if free is not None:
            return free
        for other in by_load:  # one hop, the common case
            if other != start and is_end(other):
                p = self.movable(start, other) if forward else self.movable(other, start)
                if p is not None:
                    return [(start, other, p)] if forward else [(other, start, p)]
        return self._search(start, is_end, forward, by_load, fresh_only=False)

    def _search(
        self, start: str, is_end: Callable[[str], bool], forward: bool, by_load: list[str], fresh_only: bool
    ) -> list[tuple[str, str, int]] | None:
        parent: dict[str, tuple[str, int]] = {start: (start, -1)}
        queue = deque([start])
        while queue:
            here = queue.popleft()
            if fresh_only and forward and not self.fresh[here]:
                continue  # nothing free to hand on from here
            for other in by_load:
                if other in parent or (fresh_only and not forward and not self.fresh[other]):
                    continue
                if forward:
                    p = self.movable(here, other, fresh_only)
                else:
                    p = self.movable(other, here, fresh_only)
                if p is None:
                    continue
                parent[other] = (here, p)
                if is_end(other):
                    return _path(parent, start, other, forward)
                queue.append(other)
        return None

    def balance_copies(self) -> None:
        lo, hi = self.lo, self.hi
        for node in self.order:
            while self.count(node) > hi:
                self._apply(self.chain(node, lambda n: self.count(n) < hi, forward=True))
        for node in self.order:
            while self.count(node) < lo:
                self._apply(self.chain(node, lambda n: self.count(n) > lo, forward=False))

    def spread_zones(self) -> None:
        """Swap fresh copies between nodes so partitions span more zones.

        Filling and balancing already prefer new zones; what is left are
        partitions that met only full nodes in their missing zones. A swap
        (x gives p to w, w gives q to x) keeps both loads, and only copies
        made in this call take part, so nothing already placed moves.
        """
        zone_of = self.zone_of
        if zone_of is None:
            return
        zones_total = len(set(zone_of.values()))
        want = min(self.r, zones_total)
        by_zone: dict[str, list[str]] = {}
        for node in self.order:
            by_zone.setdefault(zone_of[node], []).append(node)
        for p in range(self.P):
            while len(self.zones_of(self.owners[p])) < want:
                if not self._swap_for_zone(p, by_zone):
                    break

    def _swap_for_zone(self, p: int, by_zone: dict[str, list[str]]) -> bool:
        zone_of = self.zone_of
        assert zone_of is not None
        own = self.owners[p]
        seen = Counter(zone_of[o] for o in own)
        doubled = [x for x in own if seen[zone_of[x]] > 1 and x not in self.kept[p]]
        missing = [z for z in sorted(by_zone) if z not in seen]
        for x in doubled:
            for zone in missing:
                for w in by_zone[zone]:
                    for q in self.parts[w]:
                        if q == p or x in self.owners[q] or w in self.kept[q]:
                            continue
                        q_zones = self.zones_of(self.owners[q])
                        after = self.zones_of([x if o == w else o for o in self.owners[q]])
                        if len(after) < len(q_zones):
                            continue
                        self.remove(p, x)
                        self.add(p, w)
                        self.remove(q, w)
                        self.add(q, x)
                        return True
        return False

    def _apply(self, steps: list[tuple[str, str, int]] | None) -> None:
        if steps is None:  # impossible when r <= N: a balanced map exists
            raise AssertionError("no hand-over chain found; please report this as a bug")
        for src, dst, p in steps:
            self.remove(p, src)
            self.add(p, dst)


def _primaries(
    work: _Assignment,
    holders: list[tuple[str, ...]],
) -> list[str]:
    """Choose one primary per partition among its owners, balanced, keeping what it can."""
    P, order = work.P, work.order
    n = len(order)
    lo, hi = P // n, _ceil_div(P, n)
    primary: list[str] = [""] * P
    led: dict[str, dict[int, None]] = {node: {} for node in order}
    lost: list[int] = []
    for p in range(P):
        prev = work.prev_primary[p]
        if prev is not None and prev in work.owners[p]:
            primary[p] = prev
            led[prev][p] = None
        else:
            lost.append(p)
    for p in lost:
        pool = work.owners[p]
        if holders[p]:
            pool = [o for o in pool if o in holders[p]] or pool
        best, least = pool[0], len(led[pool[0]])
        for o in pool:
            if len(led[o]) < least:
                best, least = o, len(led[o])
        primary[p] = best
        led[best][p] = None
    # partitions whose primary was replaced by a data holder keep it among holders
    pinned = {p: holders[p] for p in lost if any(o in holders[p] for o in work.owners[p])}

    def can_lead(p: int, node: str, strict: bool) -> bool:
        return not strict or p not in pinned or node in pinned[p]

    changed = dict.fromkeys(lost)

    def neighbours(here: str, forward: bool, strict: bool) -> dict[str, tuple[int, int]]:
        """Who ``here`` can hand a primary to (forward) or take one from, at what cost.

        A partition whose primary changes anyway costs nothing to hand on; any
        other hand-over is one more change.
        """
        best: dict[str, tuple[int, int]] = {}
        if forward:
            pairs = ((p, v) for p in led[here] for v in work.owners[p] if v != here and can_lead(p, v, strict))
        else:
            pairs = ((p, primary[p]) for p in work.parts[here] if primary[p] != here and can_lead(p, here, strict))
        for p, other in pairs:
            cost = 0 if p in changed else 1
            if other not in best or cost < best[other][0]:
                best[other] = (cost, p)
        return best

    def chain(start: str, is_end: Callable[[str], bool], forward: bool, strict: bool) -> list[tuple[str, str, int]] | None:
        # the cheapest chain, not the shortest (a 0-1 BFS)
        parent: dict[str, tuple[str, int]] = {start: (start, -1)}
        dist = {start: 0}
        done: set[str] = set()
        queue: deque[str] = deque([start])

        # among the cheapest ends, the least loaded (forward) or most loaded (backward)
        sign = 1 if forward else -1
        best: tuple[int, int, str] | None = None
        while queue:
            here = queue.popleft()
            if here in done:
                continue
            if best is not None and dist[here] >= best[0]:
                break
            done.add(here)
            for other, (step_cost, p) in neighbours(here, forward, strict).items():
                if other in done:
                    continue
                cost = dist[here] + step_cost
                if cost < dist.get(other, cost + 1):
                    dist[other] = cost
                    parent[other] = (here, p)
                    if is_end(other):
                        rank = (cost, sign * len(led[other]), other)
                        if best is None or rank < best:
                            best = rank
                    if step_cost == 0:
                        queue.appendleft(other)
                    else:
                        queue.append(other)
        return None if best is None else _path(parent, start, best[2], forward)

    def fix(node: str, is_end: Callable[[str], bool], forward: bool) -> None:
        steps = chain(node, is_end, forward, strict=True) or chain(node, is_end, forward, strict=False)
        if steps is None:
            raise AssertionError("no primary hand-over chain found; please report this as a bug")
        for src, dst, p in steps:
            del led[src][p]
            led[dst][p] = None
            primary[p] = dst
            changed[p] = None

    for node in order:
        while len(led[node]) > hi:
            fix(node, lambda o: len(led[o]) < hi, forward=True)
    for node in order:
        while len(led[node]) < lo:
            fix(node, lambda o: len(led[o]) > lo, forward=False)
    return primary


def assign(
    nodes: Sequence[str],
    partition_count: int,
    replication_factor: int,
    previous: Sequence[Sequence[str]] | None = None,
    *,
    zones: Mapping[str, str] | None = None,
    holders: Sequence[Collection[str]] | None = None,
) -> PartitionMap:
    """A balanced map for ``nodes`` that keeps as much of ``previous`` as it can.

    ``previous[p]`` lists partition p's owners, primary first (nodes no longer
    in ``nodes`` are dropped). ``holders[p]`` lists the nodes that hold p's
    data; it defaults to the previous owners and decides who may replace a
    lost primary. ``zones`` maps node ids to zone labels (optional).
    """
    _validate(nodes, partition_count, replication_factor, previous, zones, holders)
    order = sorted(nodes)
    live = dict.fromkeys(order)
    r = min(replication_factor, len(order))
    zone_of = None
    if zones is not None and any(zones.get(n) for n in order):
        zone_of = {n: zones.get(n) or "" for n in order}
    work = _Assignment(order, partition_count, r, zone_of)
    if previous is not None:
        for p, prev in enumerate(previous):
            kept = [o for o in prev if o in live][:r]  # primary first, so it survives a cut
            if prev and prev[0] in live:
                work.prev_primary[p] = prev[0]
            work.kept[p] = tuple(kept)
            work.owners[p] = list(kept)
            for o in kept:
                work.parts[o][p] = None
    source = holders if holders is not None else previous
    hold: list[tuple[str, ...]] = [
        tuple(o for o in source[p] if o in live) if source is not None else () for p in range(partition_count)
    ]
    work.build_buckets()
    work.fill()
    work.balance_copies()
    work.spread_zones()
    primary = _primaries(work, hold)
    return tuple((primary[p], *[o for o in work.owners[p] if o != primary[p]]) for p in range(partition_count))


def movement(previous: Sequence[Sequence[str]] | None, new: Sequence[Sequence[str]]) -> Movement:
    """Copies that got a new owner and primaries that changed, from ``previous`` to ``new``."""
    if previous is None:
        return Movement(sum(len(o) for o in new), len(new))
    copies = sum(len(set(n) - set(o)) for o, n in zip(previous, new, strict=True))
    primaries = sum(1 for o, n in zip(previous, new, strict=True) if not o or o[0] != n[0])
    return Movement(copies, primaries)


def to_dict(assignment: Sequence[Sequence[str]], name_format: str = "partition-%d") -> dict[str, list[str]]:
    """The map keyed by partition id (``partition-0`` ...), as JSON and the checkers take it."""
    return {name_format % p: list(owners) for p, owners in enumerate(assignment)}


def from_dict(mapping: Mapping[str, Sequence[str]], partition_count: int, name_format: str = "partition-%d") -> PartitionMap:
    """Inverse of :func:`to_dict`; every partition id must be present, and nothing else."""
    expected = {name_format % p: p for p in range(partition_count)}
    unknown = sorted(set(mapping) - set(expected))
    if unknown:
        raise ValueError(f"unknown partition ids {unknown[:5]} (expected {name_format % 0} .. {name_format % (partition_count - 1)})")
    missing = [pid for pid in expected if pid not in mapping]
    if missing:
        raise ValueError(f"partition map lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    out: list[Owners] = []
    for pid in expected:
        owners = mapping[pid]
        if isinstance(owners, str) or not isinstance(owners, Sequence) or not all(isinstance(o, str) and o for o in owners):
            raise ValueError(f"{pid}: owners must be a list of node ids, got {owners!r}")
        out.append(tuple(owners))
    return tuple(out)


def fewest_copy_moves(
    previous: Sequence[Sequence[str]], nodes: Collection[str], partition_count: int, replication_factor: int
) -> int:
    """The fewest new (partition, node) ownerships any balanced map for ``nodes`` needs after ``previous``.

    A lower bound every assigner must pay: each surviving node keeps at most
    its new fair share, and the largest holders get the ceil shares.
    """
    n = len(nodes)
    r = min(replication_factor, n)
    copies = partition_count * r
    lo, hi = copies // n, _ceil_div(copies, n)
    n_hi = copies - n * lo if hi > lo else 0
    live = set(nodes)
    kept = Counter(o for owners in previous for o in [x for x in owners if x in live][:r])
    ranked = sorted((kept[x] for x in nodes), reverse=True)
    return copies - sum(min(c, hi if i < n_hi else lo) for i, c in enumerate(ranked))
