"""``clusterkit check ...``: run the checkers on history files (an edge module: it reads files and the clock)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..check.history import FORMATS, HistoryError, read_history, sniff_format
from ..check.linearizability import Verdict, check_operations
from ..check.models import MODELS, guess_model, model_for
from .args import positive_seconds, show_help
from .codes import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK, EXIT_UNKNOWN
from .text import plural

EXIT_NOT_LINEARIZABLE = EXIT_FAILED

# The clock the time budget runs on; a module attribute so a test can make the budget run out at once.
clock: Callable[[], float] = time.monotonic


def add_parser(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser(
        "check",
        help="check recorded histories (linearizability of Jepsen, EDN or JSON-lines files)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    checks = check.add_subparsers(dest="check_command", metavar="CHECK")
    lin = checks.add_parser(
        "linearizability",
        help="is each history linearizable? exit 0 yes, 1 no, 2 unknown (budget ran out), 3 unreadable input",
        description="Check that each history is linearizable. A file with no operations in it (empty,\n"
        "or not in the format given or guessed) is an error, never a pass.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lin.add_argument("files", nargs="+", metavar="FILE")
    lin.add_argument("--model", choices=sorted(MODELS), help="default: guessed from the operations used")
    lin.add_argument("--format", choices=FORMATS, help="default: guessed from the file name and contents")
    lin.add_argument(
        "--budget", type=positive_seconds, default=60.0, metavar="SECONDS", help="time budget per file, > 0 (default 60)"
    )
    lin.add_argument("--quiet", action="store_true", help="one line per file, no explanation of failures")
    lin.set_defaults(func=run_linearizability)
    check.set_defaults(func=lambda args: show_help(check))


def run_linearizability(args: argparse.Namespace) -> int:
    worst = EXIT_OK
    for name in args.files:
        worst = _worse(worst, _check_file(name, args))
    return worst


def _check_file(name: str, args: argparse.Namespace) -> int:
    try:
        text = Path(name).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{name}: cannot read: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        ops = read_history(text, args.format, source=name)
        if not ops:
            # An empty file, or one whose lines the format's reader skips as noise, would otherwise
            # "pass" with 0 operations: a silent green in CI for a history that was never checked.
            fmt = args.format or sniff_format(text.splitlines(), name)
            print(
                f"error: {name}: no operations found (read as {fmt}): empty, or not in that format; nothing was checked",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        model = model_for(args.model) if args.model else guess_model(ops)
        started = clock()
        result = check_operations(ops, model, budget_seconds=args.budget, clock=clock, source=name)
        elapsed = clock() - started
    except HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if result.verdict is Verdict.LINEARIZABLE:
        code = EXIT_OK
    elif result.verdict is Verdict.NOT_LINEARIZABLE:
        code = EXIT_NOT_LINEARIZABLE
    else:
        code = EXIT_UNKNOWN
    print(f"{name}: {result.verdict.value} ({model.name}, {plural(result.operations, 'op')}, {elapsed:.3f}s)")
    if not args.quiet and result.verdict is not Verdict.LINEARIZABLE:
        print("  " + result.explain().replace("\n", "\n  "))
    return code


# Severity, not numeric order: a definite failure outranks an unknown, unreadable input outranks both.
_SEVERITY = {EXIT_OK: 0, EXIT_UNKNOWN: 1, EXIT_NOT_LINEARIZABLE: 2, EXIT_BAD_INPUT: 3}


def _worse(a: int, b: int) -> int:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b
