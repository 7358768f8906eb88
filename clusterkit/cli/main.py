"""The ``clusterkit`` command line: the top-level parser, and the exit codes every subcommand shares."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .args import Parser, show_help
from .codes import EXIT_BROKEN_PIPE, EXIT_CODES_HELP, EXIT_INTERRUPTED

# Modules of this package that each add one subcommand with ``add_parser(subparsers)``, in the
# order ``--help`` lists them. A new subcommand (sim, node, cluster) is a module plus a name here.
SUBCOMMANDS: tuple[str, ...] = ("node", "cluster", "demo", "sim", "partitions", "check")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="clusterkit",
        description="Cluster coordination: Raft consensus, key partitioning and rebalancing,\n"
        "on one deterministic core.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"clusterkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(sub)
    parser.set_defaults(func=lambda args: show_help(parser))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (argparse raises SystemExit for usage errors)."""
    try:
        try:
            args = build_parser().parse_args(argv)
            return int(args.func(args))
        finally:
            # Flush here, not at interpreter exit: a reader that went away (`| head -1`) shows up
            # as BrokenPipeError on this flush even when all output fitted in the buffer.
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("clusterkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _stdout_to_devnull() -> None:
    """Point stdout's file descriptor at /dev/null, so what is still buffered is dropped quietly at
    exit instead of raising BrokenPipeError again (the recipe in Python's `signal` docs)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture buffer)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
