"""``clusterkit demo``: the KV store on real node processes (see :mod:`.kv_demo`), or, with
``--in-memory``, the in-memory demo below.

The in-memory demo: a Raft group under random faults, replayable from its seed.

Prints who led which term, the faults injected, and what was committed; then
heals everything and checks that every node applied the same entries. The
Raft safety monitor checks election safety, leader completeness and state
machine safety after every step, and log matching every
``LOG_CHECK_EVERY`` steps and after healing. Logs are compacted into
snapshots all along; after healing, a new node joins as a learner (and
catches up by snapshot), leadership is handed over, and a linearizable read
is confirmed through a follower.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TextIO

from ..check.raft_safety import InvariantViolation, RaftSafetyMonitor
from ..kv.strategies import STRATEGIES
from ..mem.network import MemNetwork
from ..raft.ready import RaftConfig
from .args import bounded_int
from .codes import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from .ports import base_port, room_problem, taken
from .text import plural

# Small enough that the demo's logs are compacted many times over.
DEMO_CONFIG = RaftConfig(snapshot_threshold=50, snapshot_trailing=10)

# Fewer than 3 nodes shows nothing worth seeing: no majority survives a crash, and a "partition"
# of one node has nobody on the other side.
MIN_NODES = 3
# Each step costs more with every node (50 nodes, 100,000 steps: under half a minute); far more
# nodes would spend minutes just starting.
MAX_NODES = 50
MAX_STEPS = 100_000
# Log matching compares every pair of logs: after every step it would cost 50 nodes 20x the run
# (3 s -> 76 s for 20,000 steps). The other invariants are checked after every step.
LOG_CHECK_EVERY = 25


# The KV demo runs one real process per node on a shared machine.
MAX_KV_NODES = 16
MAX_KV_KEYS = 100_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the KV store on real node processes: kill one, add one, check nothing was lost",
        description="By default: start 5 node processes on loopback running the KV store, write keys\n"
        "with the smart client, SIGKILL node-3 under load, add node-6, wait for rebalancing and\n"
        "migration, then check every key and the history's linearizability (exit 1 if anything\n"
        "was lost). --strategy picks the seed's example (sync: 10 nodes, async: 10, server-side: 6).\n\n"
        "With --in-memory (implied by --steps or --seed): run a Raft group in memory under random\n"
        "faults (drops, duplicates, crashes, restarts, partitions), then heal it; a new node joins,\n"
        "leadership moves, a read is confirmed. The same seed replays the same run, byte for byte.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--nodes",
        type=bounded_int(MIN_NODES, MAX_NODES),
        default=None,
        help=f"number of nodes, {MIN_NODES} to {MAX_NODES} (at most {MAX_KV_NODES} real ones; default 5,"
        " or the strategy's)",
    )
    demo.add_argument("--strategy", choices=list(STRATEGIES), default=None,
                      help="KV replication strategy, one of the names above (see docs/kv.md)"
                           " (default sync, 5 nodes)")
    demo.add_argument("--keys", type=bounded_int(1, MAX_KV_KEYS), default=1000,
                      help=f"keys the KV demo writes, 1 to {MAX_KV_KEYS} (default 1000)")
    demo.add_argument("--keep", action="store_true", help="KV demo: keep the nodes' data and logs")
    demo.add_argument("--plot", metavar="DIR", default=None,
                      help="KV demo: write the run's timeline here as PNG (roles and commit indexes polled from"
                      " every node, the kill and the join, client latencies), with its data as JSON")
    demo.add_argument("--base-port", type=base_port, default=None, metavar="N",
                      help="KV demo: node i listens on N+3(i-1) (HTTP), +1 (Raft), +2 (KV), the added node"
                      " too (default: free ports)")
    demo.add_argument("--in-memory", action="store_true", help="the in-memory Raft demo instead (no processes)")
    demo.add_argument(
        "--steps",
        type=bounded_int(1, MAX_STEPS),
        default=None,
        help=f"in-memory demo: random steps before healing, 1 to {MAX_STEPS} (default 3000)",
    )
    demo.add_argument("--seed", type=int, default=None,
                      help="in-memory demo: the same seed replays the same run (default 7)")
    demo.add_argument("--quiet", action="store_true", help="in-memory demo: print only the summary")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.in_memory or args.steps is not None or args.seed is not None):
        return run_kv(args)
    if args.base_port is not None:
        return error("clusterkit demo", "--base-port is for the KV demo's node processes; the in-memory"
                     " demo has none", EXIT_USAGE)
    if args.plot is not None:
        return error("clusterkit demo", "--plot draws the real KV demo's timeline; the in-memory demo records no"
                     " timeline (a simulated run's plots: clusterkit sim run SCENARIO --seed N --plot DIR)",
                     EXIT_USAGE)
    try:
        result = run_demo(nodes=args.nodes or 5, steps=args.steps or 3000,
                          seed=args.seed if args.seed is not None else 7, verbose=not args.quiet)
    except InvariantViolation as exc:  # a bug in the core: say which invariant, as the monitor words it
        return error("clusterkit demo", f"safety invariant broken: {exc}", EXIT_FAILED)
    except TimeoutError as exc:  # no leader after healing: a liveness bug
        return error("clusterkit demo", str(exc), EXIT_FAILED)
    return EXIT_OK if result.converged else EXIT_FAILED


def run_kv(args: argparse.Namespace) -> int:
    from .kv_demo import DEFAULT_NODES, run_kv_demo

    strategy = args.strategy or "sync"
    nodes = args.nodes or (DEFAULT_NODES.get(strategy, 5) if args.strategy else 5)
    if nodes > MAX_KV_NODES:
        return error("clusterkit demo", f"the KV demo runs at most {MAX_KV_NODES} node processes, got {nodes}",
                     EXIT_USAGE)
    if args.plot is not None:
        try:
            import clusterkit.net.live  # noqa: F401 - before any process starts
        except ImportError as exc:
            return error("clusterkit demo", f"--plot needs the plot extra ({exc.name} is missing): "
                         "pip install 'clusterkit[plot]'", EXIT_USAGE)
    if args.base_port is not None:
        problem = room_problem(args.base_port, nodes + 1)  # (+1: the node the demo adds)
        if problem is not None:
            return error("clusterkit demo", problem, EXIT_USAGE)
        port = taken(args.base_port, nodes + 1)
        if port is not None:
            return error("clusterkit demo", f"--base-port {args.base_port}: port {port} is already in use"
                         " on 127.0.0.1", EXIT_BAD_INPUT)
    try:
        report = run_kv_demo(strategy, nodes, args.keys, keep=args.keep, plot_dir=args.plot,
                             base_port=args.base_port)
    except (TimeoutError, RuntimeError, OSError) as exc:  # nodes that didn't start, a cluster that didn't settle
        return error("clusterkit demo", str(exc), EXIT_FAILED)
    return EXIT_OK if report.ok else EXIT_FAILED


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
    nodes: int = 5, steps: int = 3000, seed: int = 7, out: TextIO | None = None, verbose: bool = True
) -> DemoResult:
    if nodes < MIN_NODES:
        raise ValueError(f"the demo needs at least {MIN_NODES} nodes, got {nodes}")
    out = out if out is not None else sys.stdout  # looked up per call: tests and callers swap sys.stdout
    ids = [f"node-{i}" for i in range(1, nodes + 1)]
    result = DemoResult(seed=seed)
    step_no = 0
    injecting = True  # faults are counted until healing starts

    def event(text: str) -> None:
        if " leads term " in text:
            node, term = text.split(" leads term ")
            result.leaders[int(term)] = node
        elif injecting:
            result.faults += 1
        if verbose:
            print(f"  step {step_no:5d}  {text}", file=out)

    monitor = RaftSafetyMonitor()
    net = MemNetwork(
        ids, seed=seed, config=DEMO_CONFIG, drop_rate=0.05, dup_rate=0.02, monitor=monitor, on_event=event
    )
    print(f"ClusterKit Raft core demo: {plural(nodes, 'node')}, {plural(steps, 'random step')}, seed {seed}", file=out)
    print("  (5% of messages dropped, 2% duplicated; crashes, restarts and partitions at random)", file=out)
    for step_no in range(steps):
        net.random_step(propose_rate=0.08, fault_rate=0.01)
        if step_no % LOG_CHECK_EVERY == 0:
            net.check_logs()

    step_no = steps
    injecting = False
    event(_healing_line(net))
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
    print(f"\nCommitted and applied on every node: {plural(result.committed, 'entry', 'entries')}", file=out)
    shown = [d.decode() for d in reference[:8]]
    more = f" ... ({len(reference) - 8} more)" if len(reference) > 8 else ""
    print(f"  {', '.join(shown)}{more}", file=out)
    print(
        f"\nMessages: {net.stats.sent} sent, {net.stats.delivered} delivered, "
        f"{net.stats.dropped} dropped, {net.stats.duplicated} duplicated; {plural(net.stats.crashes, 'crash', 'crashes')}",
        file=out,
    )
    verdict = "all nodes agree" if result.converged else "NODES DISAGREE"
    print(
        "Safety invariants held: election safety, leader completeness and state machine safety after"
        f" every step; log matching every {LOG_CHECK_EVERY} steps and after healing.",
        file=out,
    )
    print(f"After healing, {verdict}.", file=out)
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
    installed = plural(net.nodes[new].snapshots_installed, "snapshot")
    print(
        f"\n{new} joined as a learner, caught up by {installed} plus the log,"
        f" and is now a {role}; {plural(snaps, 'snapshot was', 'snapshots were')} taken during the run.",
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


def _healing_line(net: MemNetwork) -> str:
    """What healing changes, and only that: no "partition healed" when none was in place."""
    down = [nid for nid in net.ids if nid not in net.up()]
    what = []
    if net.blocked:
        what.append("partition healed")
    if down:
        what.append("restarting " + ", ".join(down))
    what.append("no more drops or duplicates")
    return "faults off: " + "; ".join(what)
