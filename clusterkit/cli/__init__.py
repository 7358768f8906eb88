"""The ``clusterkit`` command line: one module per subcommand, all edge code (files, clock, stdout).

``main.py`` builds the parser and owns the exit codes; ``demo.py``, ``partitions.py`` and
``check.py`` each add one subcommand. Later subcommands (``sim``, ``node``, ``cluster``) go
in modules of their own here and are listed in ``main.SUBCOMMANDS``.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
