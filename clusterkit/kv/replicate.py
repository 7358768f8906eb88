"""ASYNC replication: the primary writes locally, acknowledges, then replicates in the background.

Each write is queued for every other serving copy of its partition (a bounded queue per peer:
writes are refused ``overloaded`` once one is full) and sent in batches, one Replicate per peer
for every partition among them, retried until every copy has it. A primary crash loses what it
acknowledged but had not yet replicated.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice

from .context import ServerContext
from .data import record_size
from .floors import CollectedRounds
from .messages import Ack, Message, Refused, Replicate, Replicated, Result, Set
from .quorum import Placement
from .records import Record, make_record

Item = tuple[int, str]  # (partition, key): the record sent is whatever the key holds then


@dataclass(eq=False)
class Replication:
    ctx: ServerContext = field(repr=False)
    floors: CollectedRounds = field(repr=False)
    queues: dict[str, OrderedDict[Item, None]] = field(default_factory=dict)  # per peer
    in_flight: dict[int, tuple[str, list[Item], int]] = field(default_factory=dict)  # rid -> peer, items, tick
    busy_peers: dict[str, int] = field(default_factory=dict)  # peer -> records in flight to it
    # partition -> the other serving copies, at the cluster epoch ``peers_epoch``
    peers_of: dict[int, tuple[str, ...]] = field(default_factory=dict)
    peers_epoch: int = -1
    due: bool = False  # records were queued: the next take_outbox sends them

    def write(self, src: str, msg: Set, partition: int, here: Placement) -> None:
        """The primary's write: stored here, acknowledged, queued for every other serving copy."""
        ctx = self.ctx
        epoch = ctx.kit.state.epoch
        if epoch != self.peers_epoch:
            self.peers_of, self.peers_epoch = {}, epoch
        peers = self.peers_of.get(partition)
        if peers is None:  # (``here`` is at the current epoch: the caller just looked it up)
            peers = self.peers_of[partition] = tuple(n for n in here.serving if n != ctx.me)
        queues, limit = self.queues, ctx.config.queue_limit
        for n in peers:
            queue = queues.get(n)
            if queue is not None and len(queue) >= limit:
                ctx.refuse(src, msg.rid, "overloaded", detail="replication is behind; retry")
                return
        data, key = ctx.data, msg.key
        old = data.get(partition, key)
        top = data.floors.get(partition, 0)
        if old is not None and old.version.counter > top:
            top = old.version.counter
        record = make_record(top + 1, f"{ctx.me}#{next(ctx.writes)}", msg.value)
        data.put(partition, key, record)
        item = (partition, key)
        for n in peers:
            queue = queues.get(n)
            if queue is None:
                queue = queues[n] = OrderedDict()
            queue[item] = None
        ctx.send(src, Result(msg.rid, record))
        self.due = True  # sent by take_outbox: one batch for every write handled until then

    def flush(self) -> None:
        """Send each idle peer the oldest queued records, up to ``batch`` of them and about
        ``batch_bytes``, every partition among them in one Replicate; a peer is busy until those
        are answered (or time out)."""
        self.due = False
        if not self.queues:
            return
        ctx = self.ctx
        busy, batch, max_bytes, data = self.busy_peers, ctx.config.batch, ctx.config.batch_bytes, ctx.data
        for peer, queue in self.queues.items():
            # Up to 4 x ``batch`` records in flight per peer: one batch per round trip would cap
            # replication at batch/RTT, behind what a primary acknowledges.
            while queue and busy.get(peer, 0) < 4 * batch:
                items: list[Item] = []
                by_partition: dict[int, list[tuple[str, Record]]] = {}
                size = 0
                for item in islice(queue, batch):  # (not list(queue): the backlog can be long)
                    p, key = item
                    record = data.get(p, key)
                    if record is not None:  # (else gone since: collected, or the partition dropped)
                        # Bytes capped too: 512 values of 1 MiB in one message would pass no frame
                        # limit, and the same oversized batch would be rebuilt at every retry.
                        size += record_size(key, record)
                        if items and size > max_bytes:
                            break
                        records = by_partition.get(p)
                        if records is None:
                            by_partition[p] = [(key, record)]
                        else:
                            records.append((key, record))
                    items.append(item)
                for item in items:
                    del queue[item]
                parts = list(by_partition)
                rid = next(ctx.rids)
                self.in_flight[rid] = (peer, items, ctx.ticks)
                ctx.send(peer, Replicate(rid, parts, [data.floor(p) for p in parts],
                                         [len(r) for r in by_partition.values()],
                                         [x for r in by_partition.values() for x in r]))
                busy[peer] = busy.get(peer, 0) + len(items)

    def answer(self, rid: int, msg: Message) -> None:
        peer, items, _tick = self.in_flight.pop(rid)
        self._settled(peer, len(items))
        if isinstance(msg, Ack):
            self.ctx.stats.replicated += len(items)
        elif isinstance(msg, Replicated):
            again = dict(zip(msg.again, msg.floors))
            for p, floor in again.items():
                self.floors.adopt_floor(p, floor)  # what we send now holds nothing older
            dropped = set(msg.dropped)
            self.ctx.stats.replicated += sum(1 for p, _k in items if p not in again and p not in dropped)
            retry = [item for item in items if item[0] in again]
            if retry:
                self._requeue(peer, retry)
        elif isinstance(msg, Refused):
            self._requeue(peer, items)  # (no map there yet, or a malformed batch: send again)
        self.due = True

    def retry(self) -> None:
        """Batches unanswered for ``retry_ticks`` go back to the front of their peer's queue."""
        ticks, retry_ticks = self.ctx.ticks, self.ctx.config.retry_ticks
        for rid, (peer, items, tick) in list(self.in_flight.items()):
            if ticks - tick >= retry_ticks:
                del self.in_flight[rid]
                self._settled(peer, len(items))
                self._requeue(peer, items)

    def prune(self) -> None:
        """After a map change: a peer no longer serving a partition is sent none of its records."""
        placement = self.ctx.placement
        for peer, queue in self.queues.items():
            for item in [i for i in queue if peer not in placement(i[0]).serving]:
                del queue[item]

    def _settled(self, peer: str, records: int) -> None:
        left = self.busy_peers.get(peer, 0) - records
        if left > 0:
            self.busy_peers[peer] = left
        else:
            self.busy_peers.pop(peer, None)

    def _requeue(self, peer: str, items: list[Item]) -> None:
        queue = self.queues.setdefault(peer, OrderedDict())
        for item in items:
            queue[item] = None
            queue.move_to_end(item, last=False)

    def backlog(self) -> int:
        return sum(len(q) for q in self.queues.values()) + sum(len(i) for _p, i, _t in self.in_flight.values())

    # ------------------------------------------------------------ a replica's side
    def serve_replicate(self, src: str, msg: Replicate) -> None:
        """Merge each partition's records unless this copy doesn't serve it (dropped: the primary
        forgets them) or collected tombstones since the primary's floor there (sent again, once
        the primary adopted our floor)."""
        ctx = self.ctx
        parts, floors, counts, items = msg.partitions, msg.floors, msg.counts, msg.items
        if not (len(parts) == len(floors) == len(counts) and min(counts, default=0) >= 0
                and sum(counts) == len(items)):
            ctx.refuse(src, msg.rid, "bad_request", detail="a Replicate's partitions, floors and counts disagree")
            return
        cfg = ctx.kit.state.config
        if cfg is None:
            ctx.refuse(src, msg.rid, "behind")
            return
        data, me, placement, may_take = ctx.data, ctx.me, ctx.placement, self.floors.may_take
        again: list[int] = []
        again_floors: list[int] = []
        dropped: list[int] = []
        end = 0
        for p, floor, n in zip(parts, floors, counts):
            start, end = end, end + n
            if not 0 <= p < cfg.partition_count or me not in placement(p).serving:
                dropped.append(p)
                continue
            if floor < data.floor(p) and not all(may_take(p, k, r, floor) for k, r in items[start:end]):
                again.append(p)
                again_floors.append(data.floor(p))
                continue
            data.put_many(p, items[start:end])
        if again or dropped:
            ctx.stats.refused += 1
            ctx.send(src, Replicated(msg.rid, again, again_floors, dropped))
        else:
            ctx.send(src, Ack(msg.rid))
