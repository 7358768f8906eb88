"""Partition-map invariants, as pure functions over a plain map.

A map is ``{partition id: [primary, replica, ...]}`` (owner node ids, the
primary first). The checks return a list of human-readable violations (empty
when all hold); :func:`assert_partition_map` raises instead.

- every partition has r = min(RF, N) distinct owners, all of them known nodes;
- balance: every node owns floor or ceil of P*r/N copies and floor or ceil of
  P/N primaries;
- migration safety: while data moves, every partition keeps at least
  min(RF, live nodes) live nodes that actually hold its data.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from .raft_safety import InvariantViolation


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_owners(assignment: Mapping[str, Sequence[str]], nodes: Collection[str], rf: int) -> list[str]:
    """Each partition has min(RF, N) distinct, known owners."""
    problems = []
    want = min(rf, len(nodes))
    known = set(nodes)
    for pid in sorted(assignment):
        owners = list(assignment[pid])
        if len(set(owners)) != len(owners):
            problems.append(f"{pid}: an owner is listed twice: {owners}")
        if len(owners) != want:
            problems.append(f"{pid}: {len(owners)} owners, expected min(RF={rf}, N={len(nodes)}) = {want}")
        strangers = [o for o in owners if o not in known]
        if strangers:
            problems.append(f"{pid}: owners {strangers} are not cluster nodes")
    return problems


def check_balance(assignment: Mapping[str, Sequence[str]], nodes: Collection[str], rf: int) -> list[str]:
    """Every node holds floor or ceil of its fair share of copies and of primaries."""
    n = len(nodes)
    if n == 0:
        return ["no nodes"]
    p = len(assignment)
    r = min(rf, n)
    copies = {node: 0 for node in sorted(nodes)}
    primaries = {node: 0 for node in sorted(nodes)}
    for owners in assignment.values():
        for i, owner in enumerate(owners):
            if owner in copies:
                copies[owner] += 1
                if i == 0:
                    primaries[owner] += 1
    problems = []
    lo_c, hi_c = (p * r) // n, _ceil_div(p * r, n)
    lo_p, hi_p = p // n, _ceil_div(p, n)
    for node in copies:
        if not lo_c <= copies[node] <= hi_c:
            problems.append(f"{node}: {copies[node]} copies, fair share is {lo_c}..{hi_c}")
        if not lo_p <= primaries[node] <= hi_p:
            problems.append(f"{node}: {primaries[node]} primaries, fair share is {lo_p}..{hi_p}")
    return problems


def check_data_safety(
    holders: Mapping[str, Collection[str]], live: Collection[str], rf: int
) -> list[str]:
    """During migration: each partition keeps min(RF, live nodes) live nodes holding its data.

    ``holders`` maps a partition to the nodes that hold a complete copy of its data
    (old owners not yet released, and new owners whose copy was confirmed).
    """
    alive = set(live)
    want = min(rf, len(alive))
    problems = []
    for pid in sorted(holders):
        having = sorted(set(holders[pid]) & alive)
        if len(having) < want:
            problems.append(f"{pid}: only {len(having)} live nodes hold its data ({having}), need {want}")
    return problems


def assert_partition_map(
    assignment: Mapping[str, Sequence[str]],
    nodes: Collection[str],
    rf: int,
    *,
    balanced: bool = True,
) -> None:
    problems = check_owners(assignment, nodes, rf)
    if balanced:
        problems += check_balance(assignment, nodes, rf)
    if problems:
        raise InvariantViolation("partition map: " + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))


def check_holders_kept(
    before: Mapping[str, Collection[str]],
    after: Mapping[str, Collection[str]],
    failed: Collection[str],
    rf: int,
    active: Collection[str],
) -> list[str]:
    """Across one change of the map: no partition's data ends up on fewer live holders than
    min(RF, the live holders it had, the active members left), except through nodes that
    failed in between.

    This is migration safety as a step property, so it holds from the first node on (a young
    cluster has one copy of everything, which a join must not take away), through failures (a
    failed node's copy is gone; the others must stay until replacements confirm theirs) and
    through a graceful leave (the leaving node keeps its copy until the new owner confirms, and
    may let go at once only when fewer than RF members remain to hold one).
    """
    down = set(failed)
    members = len(set(active))
    problems = []
    for pid in sorted(after):
        had = set(before.get(pid, ())) - down
        have = set(after[pid]) - down
        if len(have) < min(rf, len(had), members):
            problems.append(
                f"{pid}: live holders went from {sorted(had)} to {sorted(have)} (RF {rf}): a copy was released too early"
            )
    return problems
