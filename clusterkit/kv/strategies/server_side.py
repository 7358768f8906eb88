"""SERVER-SIDE: any node takes a request and forwards it to the partition's primary, which runs
the same quorum operation as SYNC before acknowledging."""

from __future__ import annotations

from .base import Route, Strategy

SERVER_SIDE = Strategy(
    name="server-side",
    route=Route.ANY,
    forwards_to_primary=True,
    acks_before_replicating=False,
    reads_from_any_copy=False,
    linearizable=True,
    loss_window=False,
)
