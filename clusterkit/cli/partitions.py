"""``clusterkit partitions key|plan``: which partition a key is in, and balanced partition maps."""

from __future__ import annotations

import argparse
import os

from ..partitioning.assigner import assign
from ..partitioning.hashing import ALGORITHMS, HashConfig
from .args import bounded_int, node_list, show_help
from .codes import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_OK, error
from .plan import PlanError, load_map, render_json, render_text

# The Go ClusterKit hashes a key to a uint32 and takes it mod the count; maps are planned, stored
# and shipped whole, and at 65,536 partitions a plan takes about 2 s at the other bounds (the
# time and memory grow faster than linearly: a million partitions took 29 s and 1.4 GB).
MAX_PARTITIONS = 65_536
# A plan for 10,000 nodes (the cluster-state benchmark's size) at the other bounds: about 2 s.
MAX_PLAN_NODES = 10_000
# Copies per partition: a plan holds MAX_PARTITIONS * RF owners, so RF bounds its size too.
MAX_REPLICATION_FACTOR = 16

_FORMATTER = argparse.RawDescriptionHelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    parts = sub.add_parser(
        "partitions",
        help="which partition a key is in; balanced partition maps and the moves between them",
        description="Which partition a key is in (Go ClusterKit compatible), and balanced partition maps.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_FORMATTER,
    )
    actions = parts.add_subparsers(dest="partitions_command", metavar="ACTION")

    key = actions.add_parser(
        "key",
        help="print the partition of KEY (Go ClusterKit compatible)",
        description="Print the partition of KEY. The key is hashed as the bytes given on the command "
        "line, so a key that is not valid UTF-8 hashes as those raw bytes.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_FORMATTER,
    )
    key.add_argument("key", metavar="KEY")
    key.add_argument(
        "--count",
        type=bounded_int(1, MAX_PARTITIONS),
        default=16,
        help=f"number of partitions, 1 to {MAX_PARTITIONS} (default 16)",
    )
    key.add_argument("--hash", choices=ALGORITHMS, default="md5", help="hash algorithm (default md5)")
    key.set_defaults(func=run_key)

    plan = actions.add_parser(
        "plan",
        help="print a balanced partition map for NODES, and the moves from a previous map",
        description="Print a balanced partition map (primary first) and, with --from, the copies\n"
        "and primaries that move. --from takes what --json prints, or {partition id: [owners...]}.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_FORMATTER,
    )
    plan.add_argument(
        "--nodes",
        type=node_list(MAX_PLAN_NODES),
        required=True,
        help=f"comma-separated node ids, e.g. node-1,node-2,node-3 (at most {MAX_PLAN_NODES})",
    )
    plan.add_argument(
        "--count",
        type=bounded_int(1, MAX_PARTITIONS),
        default=16,
        help=f"number of partitions, 1 to {MAX_PARTITIONS} (default 16)",
    )
    plan.add_argument(
        "--rf",
        type=bounded_int(1, MAX_REPLICATION_FACTOR),
        default=3,
        help=f"replication factor, 1 to {MAX_REPLICATION_FACTOR} (default 3)",
    )
    plan.add_argument("--from", dest="from_file", metavar="MAP.json", help="the previous map, to move as little as possible")
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(func=run_plan)

    parts.set_defaults(func=lambda args: show_help(parts))


def run_key(args: argparse.Namespace) -> int:
    # argv reaches Python decoded with surrogateescape; fsencode gives back the bytes the user typed
    # (the UTF-8 of an ordinary key, the raw bytes of one that isn't UTF-8) instead of failing to encode.
    cfg = HashConfig(algorithm=args.hash, modulo=args.count)
    print(cfg.partition(os.fsencode(args.key)))
    return EXIT_OK


def run_plan(args: argparse.Namespace) -> int:
    prog = "clusterkit partitions plan"
    previous = None
    try:
        if args.from_file is not None:
            previous = load_map(args.from_file, args.count)
        new = assign(args.nodes, args.count, args.rf, previous)
    except PlanError as exc:
        return error(prog, str(exc), EXIT_BAD_INPUT)
    except ValueError as exc:  # the assigner's own checks: the last line of defence for a bad --from map
        return error(prog, f"{args.from_file}: {exc}" if previous is not None else str(exc), EXIT_BAD_INPUT)
    text = render_json(previous, new, args.nodes, args.rf) if args.json else render_text(previous, new, args.nodes, args.rf)
    print(text)
    return EXIT_OK
