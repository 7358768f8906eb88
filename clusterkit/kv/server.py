"""A node's KV server, sans-IO: built only on the public ClusterKit facade and its hooks.

The driver (simulator or TCP node) hands it messages (:meth:`KVServer.handle`)
and ticks (:meth:`KVServer.tick`), persists and syncs ``data.take_unsynced()``
and only then sends ``take_outbox()``: no answer leaves before the writes it
acknowledges are durable.

This class only dispatches: each protocol is a module of its own, with the
state it owns, over what a node's protocols share (:mod:`.context`: identity,
data, map, clock, outbox, and the epoch fence every request about a partition
passes):

- :mod:`.coordinate`: client requests, deduplicated (:mod:`.dedup`), routed by
  strategy, and the quorum operations this node coordinates;
- :mod:`.migrate`: copying a partition in as a new owner, dropping it after;
- :mod:`.repair`: anti-entropy among a partition's complete holders;
- :mod:`.collect`: tombstone collection, with the floors it raises
  (:mod:`.floors`, which every protocol that merges records consults);
- :mod:`.replicate`: ASYNC background replication.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clusterkit.facade import ClusterKit, PartitionChange

from .collect import Collection
from .config import STRATEGIES, ServerConfig
from .context import ServerContext
from .coordinate import Coordinator
from .data import KVData
from .dedup import RequestLog
from .floors import CollectedRounds
from .limits import MAX_KEY_BYTES, MAX_VALUE_BYTES, check_request
from .messages import Collect, Fetch, Get, Have, Message, Pull, Query, Replicate, Set, Store, Sums
from .migrate import Migration
from .operation import Outbound
from .quorum import Placement
from .repair import Repair
from .replicate import Replication
from .stats import Stats

__all__ = ["MAX_KEY_BYTES", "MAX_VALUE_BYTES", "STRATEGIES", "KVServer", "ServerConfig", "Stats", "check_request"]


class KVServer:
    def __init__(
        self,
        kit: ClusterKit,
        data: KVData | None = None,
        config: ServerConfig | None = None,
        *,
        hooks: bool = True,
        incarnation: int = 0,
    ) -> None:
        """``hooks``: register :meth:`on_partition_change` with ``kit`` (a driver that rebuilds the
        server after a crash, with the same facade, registers a forwarder once instead).
        ``incarnation``: differs for every life of the node (a restart counter, or random bits), so
        request ids never repeat across restarts: peers remember answers by sender and id."""
        data = data if data is not None else KVData()
        ctx = self._ctx = ServerContext(kit, data, config or ServerConfig(), incarnation)
        self.kit, self.me, self.data, self.config = kit, ctx.me, ctx.data, ctx.config
        self.quorums, self.stats, self.incarnation = ctx.quorums, ctx.stats, incarnation
        self._requests: RequestLog = ctx.requests
        floors = CollectedRounds(ctx.data)
        self.migration = Migration(ctx, floors)
        self.repair = Repair(ctx, floors, self.migration)
        self.collection = Collection(ctx, floors, self.migration)
        self.replication = Replication(ctx, floors)
        self.coordinator = Coordinator(ctx, floors, self.replication)
        self._seen_epoch = -1
        # Requests by message type (anything else is an answer to one of ours).
        c = self.coordinator
        self._handlers: dict[type, Callable[[str, Any], None]] = {
            Set: c.client, Get: c.client, Replicate: self.replication.serve_replicate, Query: c.query,
            Store: c.store, Pull: self.migration.serve_pull, Sums: self.repair.serve_sums,
            Fetch: self.repair.serve_fetch, Have: self.collection.serve_have, Collect: self.collection.collect_in,
        }
        if hooks:
            kit.on_partition_change(self.on_partition_change)

    @property
    def answer_early(self) -> bool:
        """Set by a driver that calls data.mark_synced and take_early: answers that report only
        durable data may leave before the next sync."""
        return self._ctx.answer_early

    @answer_early.setter
    def answer_early(self, on: bool) -> None:
        self._ctx.answer_early = on

    # ------------------------------------------------------------ driver interface
    def take_outbox(self) -> list[Outbound]:
        """Every message to send once ``data.take_unsynced()`` (taken first) is durable; with
        ``answer_early``, those :meth:`take_early` hasn't taken too, first."""
        ctx = self._ctx
        if self.replication.due:
            self.replication.flush()  # one Replicate per peer for all of this batch's writes
        out, ctx.outbox = ctx.outbox, []
        if ctx.early:
            out, ctx.early = ctx.early + out, []
        return out

    def take_early(self) -> list[Outbound]:
        """Answers that report only what is already durable: they may leave before the next sync
        (``answer_early``). Whatever isn't taken here goes out with :meth:`take_outbox`."""
        ctx = self._ctx
        out, ctx.early = ctx.early, []
        return out

    def handle(self, src: str, msg: Message) -> None:
        self._dispatch(src, msg)
        self._drain_local()

    def tick(self) -> None:
        ctx = self._ctx
        ctx.ticks += 1
        if self.kit.state.config is None:
            return
        if self.kit.state.epoch != self._seen_epoch:
            if self.kit.state.epoch < self.data.seen_epoch:
                # A restarted node whose cluster state is older than a map its data was kept
                # under: dropping or copying by it could lose a copy this node holds. Wait.
                return
            self._seen_epoch = self.kit.state.epoch
            self.data.note_epoch(self._seen_epoch)
            self.migration.reconcile()
            if self.config.policy.acks_before_replicating:
                self.replication.prune()
        self.coordinator.tick()
        self.migration.tick()
        self.repair.tick()
        self.collection.tick()
        if self.config.policy.acks_before_replicating:
            self.replication.retry()
            self.replication.flush()
        if ctx.ticks % (10 * self.config.op_timeout_ticks) == 0:
            self._requests.age()
        self._drain_local()

    def on_partition_change(self, event: PartitionChange) -> None:
        """The facade's hook: this node must copy a partition (see :meth:`.Migration.copy_to_me`)."""
        if event.copy_to is not None and event.copy_to.id == self.me:
            self.migration.copy_to_me(event.number)

    @property
    def placement(self) -> Callable[[int], Placement]:
        """Where a partition lives in this node's map (:meth:`.ServerContext.placement`). The one
        lookup every protocol makes, so replacing it (a test that sees a partition as still moving)
        replaces it for all of them."""
        return self._ctx.placement

    @placement.setter
    def placement(self, lookup: Callable[[int], Placement]) -> None:
        self._ctx.placement = lookup  # type: ignore[method-assign]

    def request_state(self, src: str, rid: int) -> Message | bool:
        """What this node knows of client request ``rid`` from ``src``: the answer it sent (still
        remembered), True while in progress, False if nothing (new, or forgotten)."""
        return self._requests.state(src, rid)

    # ------------------------------------------------------------ dispatch
    def _drain_local(self) -> None:
        local = self._ctx.local
        while local:
            self._dispatch(self.me, local.pop(0))

    def _dispatch(self, src: str, msg: Message) -> None:
        # (by type, one lookup: a Set no longer walks past every request type before its own)
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._answer(src, msg)
        else:
            handler(src, msg)

    def _answer(self, src: str, msg: Message) -> None:
        """An answer to one of our requests: to the protocol that asked (late ones are dropped)."""
        rid = getattr(msg, "rid", None)
        if rid in self.replication.in_flight:
            self.replication.answer(rid, msg)
            return
        route = self._ctx.routes.get(rid) if type(rid) is int else None
        if route is None:
            return  # late: the request is finished
        kind, key = route
        if kind == "gc":
            self.collection.answer(key, src, msg)
        elif kind == "pull":
            self.migration.answer(key, src, rid, msg)
        elif kind == "repair":
            self.repair.answer(key, src, rid, msg)
        else:
            self.coordinator.answer(key, src, msg)

    # ------------------------------------------------------------ stats
    def replication_backlog(self) -> int:
        return self.replication.backlog()

    def stats_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.me,
            "strategy": self.config.strategy,
            "keys": self.data.keys(),
            "partitions": len(self.data.parts),
            "migrating": sorted(self.migration.pulls),
            "waiting_to_copy": len(self.migration.waiting),
            "replication_backlog": self.replication_backlog(),
            **self.stats.as_dict(),
        }

    # ------------------------------------------------------------ state older tests look at
    @property
    def _pulls(self) -> dict[int, Any]:
        return self.migration.pulls

    @property
    def _busy_peers(self) -> dict[str, int]:
        return self.replication.busy_peers

    @property
    def _in_progress(self) -> dict[str, dict[int, None]]:
        return self._requests.in_progress

    @property
    def _answers(self) -> dict[str, dict[int, Message]]:
        return self._requests.answers

    @property
    def _older_answers(self) -> dict[str, dict[int, Message]]:
        return self._requests.older_answers
