"""The default demo: a Raft group under random faults, replayable from its seed.

Prints who led which term, the faults injected, and what was committed; then
heals everything, checks that every node applied the same entries and that
the Raft safety invariants held after every step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from .check.raft_safety import RaftSafetyMonitor
from .memnet import MemNetwork


@dataclass
class DemoResult:
    seed: int
    leaders: dict[int, str] = field(default_factory=dict)
    faults: int = 0
    committed: int = 0
    converged: bool = False


def run_demo(
    nodes: int = 5, steps: int = 3000, seed: int = 7, out: TextIO = sys.stdout, verbose: bool = True
) -> DemoResult:
    ids = [f"node-{i}" for i in range(1, nodes + 1)]
    result = DemoResult(seed=seed)
    step_no = 0

    def event(text: str) -> None:
        if " leads term " in text:
            node, term = text.split(" leads term ")
            result.leaders[int(term)] = node
        else:
            result.faults += 1
        if verbose:
            print(f"  step {step_no:5d}  {text}", file=out)

    monitor = RaftSafetyMonitor()
    net = MemNetwork(ids, seed=seed, drop_rate=0.05, dup_rate=0.02, monitor=monitor, on_event=event)
    print(f"ClusterKit Raft core demo: {nodes} nodes, {steps} random steps, seed {seed}", file=out)
    print("  (5% of messages dropped, 2% duplicated; crashes, restarts and partitions at random)", file=out)
    for step_no in range(steps):
        net.random_step(propose_rate=0.08, fault_rate=0.01)
        if step_no % 25 == 0:
            net.check_logs()

    step_no = steps
    event("healing: all links restored, crashed nodes restarted, no more drops")
    net.heal()
    net.drop_rate = net.dup_rate = 0.0
    for nid in ids:
        net.restart(nid)
    leader = net.elect()
    index = net.propose(leader, b"final")
    net.run_until(
        lambda: all(len(n.applied) >= (index or 0) for n in net.nodes.values()),
        max_rounds=300,
    )
    net.check_logs()

    applied = {nid: n.applied_data() for nid, n in net.nodes.items()}
    reference = applied[ids[0]]
    result.converged = all(v == reference for v in applied.values()) and b"final" in reference
    result.committed = len(reference)

    print("\nWho led which term:", file=out)
    for term in sorted(result.leaders):
        print(f"  term {term:3d}: {result.leaders[term]}", file=out)
    print(f"\nCommitted and applied on every node: {result.committed} entries", file=out)
    shown = [d.decode() for d in reference[:8]]
    more = f" ... ({len(reference) - 8} more)" if len(reference) > 8 else ""
    print(f"  {', '.join(shown)}{more}", file=out)
    print(
        f"\nMessages: {net.stats.sent} sent, {net.stats.delivered} delivered, "
        f"{net.stats.dropped} dropped, {net.stats.duplicated} duplicated; {net.stats.crashes} crashes",
        file=out,
    )
    verdict = "all nodes agree" if result.converged else "NODES DISAGREE"
    print(f"Safety invariants held at every step; after healing, {verdict}.", file=out)
    return result
