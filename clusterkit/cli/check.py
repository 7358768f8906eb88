"""``clusterkit check ...``: run the checkers on history files (an edge module: it reads files and the clock)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..check.history import FORMATS, HistoryError, read_history
from ..check.linearizability import Verdict, check_operations
from ..check.models import MODELS, guess_model, model_for

EXIT_OK, EXIT_NOT_LINEARIZABLE, EXIT_UNKNOWN, EXIT_BAD_INPUT = 0, 1, 2, 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check", help="check recorded histories (linearizability of Jepsen, EDN or JSON-lines files)")
    checks = check.add_subparsers(dest="check_command", metavar="CHECK")
    lin = checks.add_parser(
        "linearizability",
        help="is each history linearizable? exit 0 yes, 1 no, 2 unknown (budget ran out), 3 unreadable input",
    )
    lin.add_argument("files", nargs="+", metavar="FILE")
    lin.add_argument("--model", choices=sorted(MODELS), help="default: guessed from the operations used")
    lin.add_argument("--format", choices=FORMATS, help="default: guessed from the file name and contents")
    lin.add_argument("--budget", type=float, default=60.0, metavar="SECONDS", help="time budget per file (default 60)")
    lin.add_argument("--quiet", action="store_true", help="one line per file, no explanation of failures")
    lin.set_defaults(func=run_linearizability)
    check.set_defaults(func=lambda args: (check.print_help(), 2)[1])


def run_linearizability(args: argparse.Namespace) -> int:
    if args.budget <= 0:
        print("clusterkit check: --budget must be positive", file=sys.stderr)
        return EXIT_BAD_INPUT
    worst = EXIT_OK
    for name in args.files:
        path = Path(name)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{name}: cannot read: {exc}", file=sys.stderr)
            worst = _worse(worst, EXIT_BAD_INPUT)
            continue
        try:
            ops = read_history(text, args.format, source=name)
            model = model_for(args.model) if args.model else guess_model(ops)
            started = time.monotonic()
            result = check_operations(ops, model, budget_seconds=args.budget, clock=time.monotonic, source=name)
            elapsed = time.monotonic() - started
        except HistoryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            worst = _worse(worst, EXIT_BAD_INPUT)
            continue
        if result.verdict is Verdict.LINEARIZABLE:
            code = EXIT_OK
        elif result.verdict is Verdict.NOT_LINEARIZABLE:
            code = EXIT_NOT_LINEARIZABLE
        else:
            code = EXIT_UNKNOWN
        head = f"{name}: {result.verdict.value} ({model.name}, {result.operations} ops, {elapsed:.3f}s)"
        print(head)
        if not args.quiet and result.verdict is not Verdict.LINEARIZABLE:
            print("  " + result.explain().replace("\n", "\n  "))
        worst = _worse(worst, code)
    return worst


# Severity, not numeric order: a definite failure outranks an unknown, unreadable input outranks both.
_SEVERITY = {EXIT_OK: 0, EXIT_UNKNOWN: 1, EXIT_NOT_LINEARIZABLE: 2, EXIT_BAD_INPUT: 3}


def _worse(a: int, b: int) -> int:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b
