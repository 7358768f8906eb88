"""SYNC: the client coordinates. A smart client runs ABD quorum reads and writes (W and R a
majority of RF) against the owners its map names; a node asked directly coordinates in its place."""

from __future__ import annotations

from .base import Route, Strategy

SYNC = Strategy(
    name="sync",
    route=Route.COPIES,
    forwards_to_primary=False,
    acks_before_replicating=False,
    reads_from_any_copy=False,
    linearizable=True,
    loss_window=False,
)
