"""The default demo: a Raft group under random faults, replayable from its seed.

Prints who led which term, the faults injected, and what was committed; then
heals everything, checks that every node applied the same entries and that
the Raft safety invariants held after every step. Logs are compacted into
snapshots all along; after healing, a new node joins as a learner (and
catches up by snapshot), leadership is handed over, and a linearizable read
is confirmed through a follower.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from ..check.raft_safety import RaftSafetyMonitor
from ..mem.network import MemNetwork
from ..raft.ready import RaftConfig

# Small enough that the demo's logs are compacted many times over.
DEMO_CONFIG = RaftConfig(snapshot_threshold=50, snapshot_trailing=10)


@dataclass
class DemoResult:
    seed: int
    leaders: dict[int, str] = field(default_factory=dict)
    faults: int = 0
    committed: int = 0
    converged: bool = False
    joined: bool = False
    transferred_to: str | None = None
    read_index: int = 0


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
    net = MemNetwork(
        ids, seed=seed, config=DEMO_CONFIG, drop_rate=0.05, dup_rate=0.02, monitor=monitor, on_event=event
    )
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
    _membership_tour(net, leader, nodes, result, out)
    return result


def _membership_tour(net: MemNetwork, leader: str, nodes: int, result: DemoResult, out: TextIO) -> None:
    """On the healed cluster: a node joins as a learner, leadership moves, a read is confirmed."""
    lead = net.nodes[leader].raft
    assert lead is not None
    new = f"node-{nodes + 1}"
    net.add_node(new)
    lead.add_learner(new)
    net.process(leader)
    result.joined = net.run_until(lambda: net.nodes[new].raft.log.applied >= lead.log.committed, 200)  # type: ignore[union-attr]
    net.run_until(lambda: False, 5)  # time for the leader to promote it, if there is room
    role = "voter" if new in lead.voters else f"learner (max_voters={lead.config.max_voters} voters already)"
    snaps = sum(n.snapshots_taken for n in net.nodes.values())
    print(
        f"\n{new} joined as a learner, caught up by {net.nodes[new].snapshots_installed} snapshot(s) plus the log,"
        f" and is now a {role}; {snaps} snapshots were taken during the run.",
        file=out,
    )
    target = lead.transfer_leadership()
    net.process(leader)
    net.deliver_all()
    result.transferred_to = net.leader()
    print(f"Leadership handed over: {leader} -> {result.transferred_to} (term {lead.term}).", file=out)
    reader = leader  # now a follower: its read goes to the new leader
    net.nodes[reader].raft.read_index(b"demo-read")  # type: ignore[union-attr]
    net.process(reader)
    net.deliver_all()
    reads = net.nodes[reader].read_states
    if reads and target == result.transferred_to:
        result.read_index = reads[-1].index
        print(
            f"Linearizable read through {reader}: confirmed by a majority at index {result.read_index},"
            f" served once {reader} applied it.",
            file=out,
        )
