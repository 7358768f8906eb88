"""Every strategy by the name users type. Adding a strategy: its module, and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .all import ALL
from .async_ import ASYNC
from .base import Strategy
from .server_side import SERVER_SIDE
from .sync import SYNC

# Read-only: the registry is fixed at import, never edited at run time.
STRATEGIES: Mapping[str, Strategy] = MappingProxyType({s.name: s for s in (
    SYNC,
    ASYNC,
    SERVER_SIDE,
    ALL,
)})


def by_name(name: str) -> Strategy:
    """The strategy called ``name``, or a ValueError naming the choices (for every edge that
    takes a name: a flag, a scenario file, a constructor argument)."""
    found = STRATEGIES.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    return found
