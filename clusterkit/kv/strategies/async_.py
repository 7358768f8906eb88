"""ASYNC: the primary writes locally and acknowledges, then replicates in the background; any copy
answers a read. Not linearizable (a read after a failover may miss an acknowledged write), and a
primary lost before its queue drained takes those writes with it: the checkers measure that
window instead of failing it."""

from __future__ import annotations

from .base import Route, Strategy

ASYNC = Strategy(
    name="async",
    route=Route.PRIMARY,
    forwards_to_primary=True,
    acks_before_replicating=True,
    reads_from_any_copy=True,
    linearizable=False,
    loss_window=True,
)
