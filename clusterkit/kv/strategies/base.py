"""What a replication strategy is: the questions every part of the KV store asks of it.

A strategy is data, not code paths: clients ask it how to route, the server asks it what a write
does, the checkers ask it what they may expect. Each strategy is one frozen instance in a module of
its own (see :mod:`.registry`), so adding one never means finding every ``== "async"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (imported where used: the CLI reads the registry for its flags' choices,
    from ..quorum import Quorums  # and shouldn't load the cluster facade for that)


class Route(Enum):
    """Where a smart client sends an operation."""

    COPIES = "copies"  # to the partition's copies itself: the client runs the quorum operation
    PRIMARY = "primary"  # to the partition's primary, by the client's map
    ANY = "any"  # to any node, which routes it


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str  # what users type (--kv-strategy, a scenario's workload kv) and what /stats reports
    # Clients: where a smart client sends an operation.
    route: Route
    # The server, for a client request that reaches it:
    forwards_to_primary: bool  # a node that isn't the partition's primary forwards it there
    acks_before_replicating: bool  # the primary acknowledges a write once it holds it, then
    # replicates it in the background (the per-peer queue of :mod:`..replicate`); otherwise the
    # node coordinating the write runs it as a quorum operation (W of RF)
    reads_from_any_copy: bool  # a copy answers a read from what it holds, with no quorum
    # The checkers:
    linearizable: bool  # every history is linearizable, and no acknowledged write is ever lost
    loss_window: bool  # an acknowledged write may be lost, but only if its primary crashed
    # before replicating it (the window is measured, not failed)

    @property
    def client_quorum(self) -> bool:
        """A smart client runs each operation's quorum itself (W copies, R copies)."""
        return self.route is Route.COPIES

    def quorums(self, rf: int, w: int = 0, r: int = 0) -> Quorums:
        """The quorum sizes for RF copies, given the W and R asked for (0: the default)."""
        from ..quorum import Quorums

        return Quorums(rf, w, r)

    def __str__(self) -> str:
        return self.name
