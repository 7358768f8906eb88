"""Argument types for the command line: each rejects a bad value as a usage error (exit 2)
before any work starts, with a message argparse prints on one line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from .codes import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage error as one line: ``prog: error: message``, exit 2. The
    stock one prints the whole usage first, which buried the one line that matters (a node's
    usage is 30 lines). ``--help`` still shows it all. Subcommand parsers inherit this class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """A whole number in [lo, hi]. The upper bounds keep a typo from running for minutes or
    eating gigabytes before anything is printed."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected a number >= {lo}, got {value}")
        if value > hi:
            raise argparse.ArgumentTypeError(f"expected a number <= {hi}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0: nan compares false with everything and inf never runs out,
    so both would slip past a plain `> 0` check and turn a budget into no budget."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def node_list(max_nodes: int) -> Callable[[str], list[str]]:
    """Comma-separated node ids: none empty, none twice, at most ``max_nodes``."""

    def parse(text: str) -> list[str]:
        nodes = [n.strip() for n in text.split(",")]
        if not all(nodes):
            raise argparse.ArgumentTypeError(f"expected comma-separated node ids, got {text!r}")
        if len(nodes) > max_nodes:
            raise argparse.ArgumentTypeError(f"at most {max_nodes} node ids, got {len(nodes)}")
        seen: set[str] = set()
        for n in nodes:
            if n in seen:
                raise argparse.ArgumentTypeError(f"node id {n!r} is listed twice")
            seen.add(n)
        return nodes

    parse.__name__ = "node list"
    return parse


def show_help(parser: argparse.ArgumentParser) -> int:
    """A command given without its subcommand: the help says what is missing; a usage error."""
    parser.print_help()
    return EXIT_USAGE
