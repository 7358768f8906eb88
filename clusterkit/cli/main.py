"""The ``clusterkit`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(nodes=args.nodes, steps=args.steps, seed=args.seed, verbose=not args.quiet)
    return 0 if result.converged else 1


def _cmd_partitions_key(args: argparse.Namespace) -> int:
    from ..partitioning.hashing import HashConfig

    cfg = HashConfig(algorithm=args.hash, modulo=args.count)
    print(cfg.partition(args.key))
    return 0


def _node_list(text: str) -> list[str]:
    nodes = [n.strip() for n in text.split(",")]
    if not all(nodes):
        raise argparse.ArgumentTypeError(f"expected comma-separated node ids, got {text!r}")
    if len(set(nodes)) != len(nodes):
        raise argparse.ArgumentTypeError(f"a node id is listed twice in {text!r}")
    return nodes


def _cmd_partitions_plan(args: argparse.Namespace) -> int:
    from .plan import PlanError, load_map, render_json, render_text
    from ..partitioning.assigner import assign

    previous = None
    try:
        if args.from_file is not None:
            previous = load_map(args.from_file, args.count)
    except PlanError as exc:
        print(f"clusterkit partitions plan: error: {exc}", file=sys.stderr)
        return 2
    new = assign(args.nodes, args.count, args.rf, previous)
    print(render_json(previous, new, args.nodes, args.rf) if args.json else render_text(previous, new, args.nodes, args.rf))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterkit",
        description="Cluster coordination: Raft consensus, key partitioning and rebalancing, "
        "on one deterministic core.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a Raft group under random faults and show who led and what committed")
    demo.add_argument("--nodes", type=_positive_int, default=5, help="number of nodes (default 5)")
    demo.add_argument("--steps", type=_positive_int, default=3000, help="random steps before healing (default 3000)")
    demo.add_argument("--seed", type=int, default=7, help="seed: the same seed replays the same run (default 7)")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    demo.set_defaults(func=_cmd_demo)

    parts = sub.add_parser("partitions", help="which partition a key is in (and, later, partition plans)")
    parts_sub = parts.add_subparsers(dest="partitions_command", metavar="ACTION")
    key = parts_sub.add_parser("key", help="print the partition of KEY (Go ClusterKit compatible)")
    key.add_argument("key", metavar="KEY")
    key.add_argument("--count", type=_positive_int, default=16, help="number of partitions (default 16)")
    key.add_argument("--hash", choices=("md5", "fnv1a"), default="md5", help="hash algorithm (default md5)")
    key.set_defaults(func=_cmd_partitions_key)
    plan = parts_sub.add_parser(
        "plan",
        help="print a balanced partition map for NODES, and the moves from a previous map",
        description="Print a balanced partition map (primary first) and, with --from, the copies "
        "and primaries that move. --from takes what --json prints, or {partition id: [owners...]}.",
    )
    plan.add_argument("--nodes", type=_node_list, required=True, help="comma-separated node ids, e.g. node-1,node-2,node-3")
    plan.add_argument("--count", type=_positive_int, default=16, help="number of partitions (default 16)")
    plan.add_argument("--rf", type=_positive_int, default=3, help="replication factor (default 3)")
    plan.add_argument("--from", dest="from_file", metavar="MAP.json", help="the previous map, to move as little as possible")
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(func=_cmd_partitions_plan)
    parts.set_defaults(func=lambda args: (parts.print_help(), 2)[1])

    from .check import add_parser as add_check_parser

    add_check_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
