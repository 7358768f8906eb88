"""Partition assignment: our assigner next to the Go ClusterKit's rendezvous hashing.

For a sweep of (P, N, RF) it prints, for each algorithm:
  balance  - the busiest node's copies (and primaries) over ceil(P*r/N) (ceil(P/N)), the
             least any map can reach; 1.00 is exact balance
  join     - copies moved when node N+1 joins, and in brackets the fewest any balanced
             map needs (rendezvous moves fewer than that only because it never balances)
  remove   - the same when node-3 is removed
  ms       - time to compute the fresh map (ours); the target is <= 50 ms at P=4096, N=100, RF=3

The Go ClusterKit scores every node per partition with md5(partitionID + nodeID)
(first 4 bytes, big-endian), sorts ascending, and takes the first RF as
primary and replicas; clusterkit.partitioning.rendezvous re-implements it from
that description.

    .venv/bin/python bench/assigner.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit.partitioning.assigner import assign, fewest_copy_moves, movement  # noqa: E402
from clusterkit.partitioning.rendezvous import rendezvous  # noqa: E402


def balance(m, nodes: list[str], rf: int) -> tuple[float, float]:
    r = min(rf, len(nodes))
    copies = Counter(o for owners in m for o in owners)
    primaries = Counter(owners[0] for owners in m)
    return (
        max(copies[n] for n in nodes) / -(-len(m) * r // len(nodes)),
        max(primaries[n] for n in nodes) / -(-len(m) // len(nodes)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller sweep")
    args = ap.parse_args()
    sweep = [(64, 5, 3), (16, 3, 3), (256, 10, 3), (1024, 20, 2), (4096, 100, 3), (4096, 64, 5), (65536, 100, 3)]
    if args.quick:
        sweep = sweep[:4]
    print(f"{'P':>6} {'N':>4} {'RF':>3} | {'algorithm':<10} {'copies':>7} {'primary':>8} {'join (opt)':>14} {'remove (opt)':>14} {'ms':>8}")
    for p_count, n, rf in sweep:
        nodes = [f"node-{i}" for i in range(1, n + 1)]
        joined = nodes + [f"node-{n + 1}"]
        rest = nodes[:2] + nodes[3:]  # node-3 leaves
        for name in ("ours", "rendezvous") if p_count * n <= 500_000 else ("ours",):  # rendezvous is slow
            start = time.perf_counter()
            if name == "ours":
                m0 = assign(nodes, p_count, rf)
                elapsed = (time.perf_counter() - start) * 1000
                m_join = assign(joined, p_count, rf, m0)
                m_rest = assign(rest, p_count, rf, m0) if n > 1 else m0
            else:
                m0 = rendezvous(nodes, p_count, rf)
                elapsed = (time.perf_counter() - start) * 1000
                m_join = rendezvous(joined, p_count, rf)
                m_rest = rendezvous(rest, p_count, rf)
            bal_c, bal_p = balance(m0, nodes, rf)
            join = f"{movement(m0, m_join).copies_moved} ({fewest_copy_moves(m0, joined, p_count, rf)})"
            remove = f"{movement(m0, m_rest).copies_moved} ({fewest_copy_moves(m0, rest, p_count, rf)})"
            print(
                f"{p_count:>6} {n:>4} {rf:>3} | {name:<10} {bal_c:>7.2f} {bal_p:>8.2f} {join:>14} {remove:>14} {elapsed:>8.1f}",
                flush=True,
            )
    # time of the headline case over several runs (best of 5)
    nodes = [f"node-{i}" for i in range(1, 101)]
    best = min(_timed(lambda: assign(nodes, 4096, 3)) for _ in range(5))
    m0 = assign(nodes, 4096, 3)
    best_join = min(_timed(lambda: assign(nodes + ["node-101"], 4096, 3, m0)) for _ in range(5))
    best_rm = min(_timed(lambda: assign(nodes[1:], 4096, 3, m0)) for _ in range(5))
    print(f"P=4096 N=100 RF=3, best of 5: fresh {best:.1f} ms, join {best_join:.1f} ms, removal {best_rm:.1f} ms")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


if __name__ == "__main__":
    main()
