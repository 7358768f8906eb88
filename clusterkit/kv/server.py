"""A node's KV server, sans-IO: built only on the public ClusterKit facade and its hooks.

The driver (simulator or TCP node) hands it messages (:meth:`KVServer.handle`)
and ticks (:meth:`KVServer.tick`), persists and syncs ``data.take_unsynced()``
and only then sends ``take_outbox()``: no answer leaves before the writes it
acknowledges are durable.

**The fence.** Every request about a partition carries the partition's epoch
as the sender sees it (the cluster epoch at which that partition's owners or
holders last changed). A copy serves it only at the same epoch: an older one
is refused ``stale`` (the sender refreshes its map and goes on), a newer one
``behind`` (this node hasn't applied that change yet; the sender asks again).
So once a copy has served a migration batch at a new placement it refuses
every write made against the old one, and a new owner's copy, merged from a
read quorum of complete holders, holds every write that completed before.

**Migration.** When this node is an incoming owner of a partition it pulls
the partition in batches from a read quorum of its complete holders (copy-from
first), merges by version (writes arriving meanwhile are kept: an older copied
version never replaces a newer one), and confirms through ClusterKit. Old
owners drop their copy when the map no longer lists them, which happens only
after every new owner confirmed.

**Tombstones** are collected by the partition's primary once the placement
is settled (no copy moving, none marked failed): a tombstone it has held for
a whole ``gc_ticks`` round that every owner holds too (or has collected) is
removed everywhere, and each copy raises the partition's *floor* above it and
above every owner's floor (:class:`~.messages.Have`, :class:`~.messages.Collect`).
New versions go above the floors a query saw; a Store, Replicate or repair
batch from a sender that knew an older floor is taken only where this copy
can tell that no tombstone it collected since was of the same key and newer
(it may carry a value older than a collected delete). A node that becomes an owner again
copies the partition afresh (its old copy is dropped when its copy starts),
so a stale disk can't bring back a collected delete either.

**Strategies.** ``sync``: the client coordinates quorum reads and writes
(:class:`~.operation.Operation`); a node asked directly coordinates them
itself. ``server-side``: a node forwards a client's request to the partition's
primary, which coordinates the quorum operation. ``async``: the primary
writes locally, acknowledges, and replicates in the background through a
bounded queue, retrying until every copy has it; a primary crash loses what it
acknowledged but had not yet replicated.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count, islice
from typing import Any

from clusterkit.facade import ClusterKit, PartitionChange

from .data import KVData, record_size
from .messages import (
    Ack,
    Batch,
    Collect,
    Digest,
    Fetch,
    Found,
    Get,
    Has,
    Have,
    Message,
    Pull,
    Query,
    Refused,
    Replicate,
    Replicated,
    Result,
    Set,
    Store,
    Sums,
)
from .operation import Operation, Outbound
from .quorum import Placement, Quorums
from .records import Record, Version, make_record

log = logging.getLogger(__name__)

STRATEGIES = ("sync", "async", "server-side")
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerConfig:
    strategy: str = "sync"
    w: int = 0  # 0: a majority of RF
    r: int = 0
    batch: int = 512  # records per migration batch
    op_timeout_ticks: int = 20
    retry_ticks: int = 4  # ask silent copies again after this many ticks
    queue_limit: int = 100_000  # ASYNC: records waiting per peer before writes are refused
    repair_ticks: int = 50  # anti-entropy: each held partition is merged from its other holders this often
    # Migration: partitions copied at once, bytes per batch, and how long a silent source gets
    # before it is asked again. A source serving a batch is busy for a while; asking again too
    # soon, or for too much at once, starves the node's Raft of its loop and tips it into elections.
    max_pulls: int = 4
    batch_bytes: int = 1 << 20
    pull_retry_ticks: int = 20
    gc_ticks: int = 300  # tombstones held this long by every owner are collected (checked this often)
    gc_batch: int = 1024  # tombstones per collection round and partition

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name in ("batch", "op_timeout_ticks", "retry_ticks", "queue_limit", "repair_ticks", "max_pulls",
                     "batch_bytes", "pull_retry_ticks", "gc_ticks", "gc_batch"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: msgpack (and the log) can't store it


def check_request(key: Any, value: Any = None) -> str | None:
    """Why a client's key or value is refused (None: fine). Checked before anything is stored:
    a string the log can't encode must never reach the data."""
    # At a glance first (every request, on the client and the node): ASCII text is valid UTF-8
    # exactly as long as itself, so a short ASCII key with no value, a short ASCII one or bytes passes.
    if (type(key) is str and 0 < len(key) <= MAX_KEY_BYTES and key.isascii()
            and (value is None or (type(value) is str and len(value) <= MAX_VALUE_BYTES and value.isascii())
                 or (type(value) is bytes and len(value) <= MAX_VALUE_BYTES))):
        return None
    if not isinstance(key, str) or not key:
        return "key must be a non-empty string"
    raw = _utf8(key)
    if raw is None:
        return "key must be valid UTF-8 text (it holds a lone surrogate)"
    if len(raw) > MAX_KEY_BYTES:
        return f"key is longer than {MAX_KEY_BYTES} bytes"
    if value is not None:
        if not isinstance(value, (str, bytes)):
            return "value must be a string"
        data = _utf8(value) if isinstance(value, str) else value
        if data is None:
            return "value must be valid UTF-8 text (it holds a lone surrogate)"
        if len(data) > MAX_VALUE_BYTES:
            return f"value is larger than {MAX_VALUE_BYTES} bytes"
    return None


@dataclass
class _Source:
    after: int = 0  # migration: the source's change number to pull after
    done: bool = False
    wait: int = 0  # ticks after sending before asking again (shorter once it answered "behind")
    buckets: list[int] | None = None  # repair: the buckets whose digests differ (None: not compared yet)
    key_after: str | None = None  # repair: fetch keys after this one
    life: int | None = None  # migration: the incarnation of the source that ``after`` counts in
    rid: int = 0
    sent_tick: int = 0
    tries: int = 0


@dataclass
class _PullJob:
    placement: Placement
    need: int
    sources: dict[str, _Source] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)
    confirmed_tick: int | None = None
    keys: int = 0
    repair: bool = False  # anti-entropy among holders: nothing to confirm
    started: int = 0
    counted: bool = False  # in stats.migrations already (a copy that went on at a newer placement)


@dataclass
class _GcRound:
    """One collection round of one partition, run by its primary."""

    placement: Placement
    items: list[tuple[str, Record]]
    rid: int
    started: int
    held: dict[str, set[int]] = field(default_factory=dict)  # owner -> indexes of items it holds
    floor: int = 0  # the highest floor an owner reported
    collecting: bool = False  # second phase: Collect sent
    acked: set[str] = field(default_factory=set)
    sent_tick: int = 0


@dataclass
class _Pending:
    """A client request this node answers later: its own operation, or one it forwarded."""

    src: str
    rid: int
    deadline: int
    op: Operation | None = None
    write: bool = False
    rids: list[int] = field(default_factory=list)  # every request id its answers may carry


@dataclass
class Stats:
    sets: int = 0
    gets: int = 0
    forwarded: int = 0
    refused: int = 0
    migrations: int = 0  # partitions copied in and confirmed
    keys_migrated: int = 0
    dropped: int = 0  # partitions released after the new owners confirmed
    replicated: int = 0  # ASYNC records acknowledged by a replica
    repaired: int = 0  # records that anti-entropy brought here (a copy a write had missed)
    collected: int = 0  # tombstones removed (every owner had them)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


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
        self.kit = kit
        self.me = kit.my_node_id()
        self.data = data if data is not None else KVData()
        self.config = config or ServerConfig()
        self.quorums = Quorums(kit.options.replication_factor, self.config.w, self.config.r)
        self.stats = Stats()
        self._outbox: list[Outbound] = []
        # With ``answer_early`` (a driver that calls data.mark_synced and take_early): answers that
        # report only durable data (a Query's Found when the key's last change is synced) go here,
        # to be sent without waiting for the next sync. Off, everything goes through the outbox.
        self.answer_early = False
        self._early: list[Outbound] = []
        self._replicate_due = False  # ASYNC: records were queued; take_outbox sends them to the peers
        self._local: list[Message] = []  # to ourselves: handled at once, answered through the outbox
        if type(incarnation) is not int or not 0 <= incarnation < 1 << 31:
            raise ValueError(f"incarnation must be an integer in [0, 2**31), got {incarnation!r}")
        self.incarnation = incarnation
        self._rids = count((incarnation << 32) + 1)
        self._writes = count(1)
        self._ticks = 0
        self._pending: dict[int, _Pending] = {}
        self._routes: dict[int, tuple[str, int]] = {}  # request id -> ("pending", key) | ("pull", partition)
        self._pulls: dict[int, _PullJob] = {}
        self._waiting: dict[int, None] = {}  # partitions to copy once fewer than max_pulls are under way
        self._repairs: dict[int, _PullJob] = {}
        self._gc: dict[int, _GcRound] = {}
        self._gc_seen: dict[int, dict[str, Record]] = {}  # per partition: the tombstones at its last round
        # Per partition, the collections applied here that are remembered: the floor they reach back
        # to, and (floor before, floor after, key -> tombstone version removed) for each, newest last.
        self._collected: dict[int, tuple[int, list[tuple[int, int, dict[str, Version]]]]] = {}
        self._queues: dict[str, OrderedDict[tuple[int, str], None]] = {}  # ASYNC, per peer
        self._in_flight: dict[int, tuple[str, list[tuple[int, str]], int]] = {}  # rid -> peer, keys, tick
        self._busy_peers: dict[str, int] = {}  # peer -> records in flight to it
        self._seen_epoch = -1
        self._placements: dict[int, Placement] = {}
        self._placements_epoch = -1
        self._peers_of: dict[int, tuple[str, ...]] = {}  # ASYNC: partition -> the other serving copies (this epoch)
        self._hash_for: Any = None  # the cluster config _number belongs to
        self._number: Any = None
        # Client requests, by sender and request id: those in progress, then the answer sent, kept
        # for at least 10 x op_timeout_ticks after it (two generations, the older dropped whole
        # each time that passes). A duplicated request (the network may deliver one twice) is
        # answered, never run twice: a second run could write after the first had answered "fail".
        # (Nested by sender, no tuple per request and no per-entry tick: one object per request,
        # its answer, for the garbage collector to walk; these were a third of what it walked.)
        self._in_progress: dict[str, dict[int, None]] = {}
        self._answers: dict[str, dict[int, Message]] = {}
        self._older_answers: dict[str, dict[int, Message]] = {}
        # Requests by message type (anything else is an answer to one of ours).
        self._handlers: dict[type, Callable[[str, Any], None]] = {
            Set: self._client, Get: self._client, Replicate: self._replicated_in, Query: self._query,
            Store: self._store, Pull: self._serve_pull, Sums: self._serve_sums, Fetch: self._serve_fetch,
            Have: self._serve_have, Collect: self._collect_in,
        }
        if hooks:
            kit.on_partition_change(self.on_partition_change)

    # ------------------------------------------------------------ driver interface
    def take_outbox(self) -> list[Outbound]:
        """Every message to send once ``data.take_unsynced()`` (taken first) is durable; with
        ``answer_early``, those :meth:`take_early` hasn't taken too, first."""
        if self._replicate_due:
            self._flush_replication()  # one Replicate per peer for all of this batch's writes
        out, self._outbox = self._outbox, []
        if self._early:
            out, self._early = self._early + out, []
        return out

    def take_early(self) -> list[Outbound]:
        """Answers that report only what is already durable: they may leave before the next sync
        (``answer_early``). Whatever isn't taken here goes out with :meth:`take_outbox`."""
        out, self._early = self._early, []
        return out

    def handle(self, src: str, msg: Message) -> None:
        self._dispatch(src, msg)
        self._drain_local()

    def tick(self) -> None:
        self._ticks += 1
        if self.kit.state.config is None:
            return
        if self.kit.state.epoch != self._seen_epoch:
            if self.kit.state.epoch < self.data.seen_epoch:
                # A restarted node whose cluster state is older than a map its data was kept
                # under: dropping or copying by it could lose a copy this node holds. Wait.
                return
            self._seen_epoch = self.kit.state.epoch
            self.data.note_epoch(self._seen_epoch)
            self._reconcile()
        for rid, pend in list(self._pending.items()):
            self._tick_pending(rid, pend)
        for p in list(self._pulls):
            self._tick_pull(p)
        self._launch_waiting()
        self._tick_repairs()
        self._tick_gc()
        if self.config.strategy == "async":
            self._retry_replication()
            self._flush_replication()
        if self._ticks % (10 * self.config.op_timeout_ticks) == 0:
            self._older_answers, self._answers = self._answers, {}
        self._drain_local()

    # ------------------------------------------------------------ placement
    def placement(self, partition: int) -> Placement:
        """Where ``partition`` lives in this node's map (cached until the map's epoch moves)."""
        epoch = self.kit.state.epoch
        if epoch != self._placements_epoch:
            self._placements, self._placements_epoch, self._peers_of = {}, epoch, {}
        here = self._placements.get(partition)
        if here is None:
            here = self._placements[partition] = Placement.of(self.kit.partition(partition))
        return here

    def _partition_of(self, key: str) -> int:
        """``key``'s partition in this node's map (the hash function kept while the config is the same)."""
        cfg = self.kit.state.config
        if cfg is not self._hash_for:
            self._hash_for, self._number = cfg, cfg.hash_config.number
        return self._number(key)

    def _known_partition(self, src: str, rid: int, partition: int) -> bool:
        """A partition of this cluster's map; else the request is refused (no map yet: behind)."""
        cfg = self.kit.state.config
        if cfg is None or type(partition) is not int or not 0 <= partition < cfg.partition_count:
            self._refuse(src, rid, "behind" if cfg is None else "bad_request")
            return False
        return True

    def _refuse_collected(self, src: str, rid: int, partition: int) -> None:
        """Tombstones were collected here since the sender's floor: it may carry an older value."""
        self._send(src, Refused(rid, "collected", 0, "", self.data.floor(partition)))

    def _fence(self, src: str, rid: int, partition: int, epoch: int) -> Placement | None:
        if not self._known_partition(src, rid, partition):
            return None
        here = self.placement(partition)
        if epoch != here.epoch:
            self._refuse(src, rid, "stale" if epoch < here.epoch else "behind", here.epoch)
            return None
        if self.me not in here.asked:
            self._refuse(src, rid, "not_serving", here.epoch)
            return None
        return here

    def _refuse(self, dst: str, rid: int, reason: str, epoch: int = 0, detail: str = "") -> None:
        self.stats.refused += 1
        self._send(dst, Refused(rid, reason, epoch or self.kit.state.epoch, detail))

    def _send(self, dst: str, msg: Message) -> None:
        if type(msg) is Result or type(msg) is Refused:
            running = self._in_progress.get(dst)
            if running is not None and msg.rid in running:  # the answer to a client's request
                del running[msg.rid]
                if not running:
                    del self._in_progress[dst]
                answers = self._answers.get(dst)
                if answers is None:
                    self._answers[dst] = {msg.rid: msg}
                else:
                    answers[msg.rid] = msg
        if dst == self.me:
            self._local.append(msg)
        else:
            self._outbox.append((dst, msg))

    def _drain_local(self) -> None:
        while self._local:
            self._dispatch(self.me, self._local.pop(0))

    # ------------------------------------------------------------ requests
    def _dispatch(self, src: str, msg: Message) -> None:
        # (by type, one lookup: a Set no longer walks past every request type before its own)
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._answer(src, msg)
        else:
            handler(src, msg)

    def _query(self, src: str, msg: Query) -> None:
        if self._fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            found = Found(msg.rid, self.data.get(msg.partition, msg.key), self.data.floors.get(msg.partition, 0))
            if self.answer_early and src != self.me and self.data.durable(msg.partition, msg.key):
                self._early.append((src, found))  # reports synced data only: needn't wait for a sync
            else:
                self._send(src, found)

    def _store(self, src: str, msg: Store) -> None:
        here = self._fence(src, msg.rid, msg.partition, msg.epoch)
        if here is None:
            return
        if (msg.floor < self.data.floors.get(msg.partition, 0) and not self._may_take(
                msg.partition, msg.key, msg.record, msg.floor)) or (
                msg.refreshed and self.me in here.incoming and self.data.get(msg.partition, msg.key) is None):
            # (a new owner still copying knows no floor yet: a version chosen at an older
            # placement may be older than a delete its sources collected since)
            self._refuse_collected(src, msg.rid, msg.partition)
            return
        self.data.put(msg.partition, msg.key, msg.record)
        self._send(src, Ack(msg.rid))

    def _serve_pull(self, src: str, msg: Pull) -> None:
        if self._fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            limit = max(1, min(msg.limit, 4096))
            items, cursor, done = self.data.changes(msg.partition, msg.after, limit, self.config.batch_bytes)
            self._send(src, Batch(msg.rid, items, done, cursor, self.data.floor(msg.partition), self.incarnation))

    def _serve_sums(self, src: str, msg: Sums) -> None:
        if self._fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            self._send(src, Digest(msg.rid, self.data.sums(msg.partition)))

    def _serve_fetch(self, src: str, msg: Fetch) -> None:
        if self._fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            limit = max(1, min(msg.limit, 4096))
            items, done = self.data.scan(msg.partition, msg.after, limit, self.config.batch_bytes, set(msg.buckets))
            self._send(src, Batch(msg.rid, items, done, 0, self.data.floor(msg.partition)))

    def _serve_have(self, src: str, msg: Have) -> None:
        if self._fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            self._has(src, msg)

    def _replicated_in(self, src: str, msg: Replicate) -> None:
        """Merge each partition's records unless this copy doesn't serve it (dropped: the primary
        forgets them) or collected tombstones since the primary's floor there (sent again, once
        the primary adopted our floor)."""
        parts, floors, counts, items = msg.partitions, msg.floors, msg.counts, msg.items
        if not (len(parts) == len(floors) == len(counts) and min(counts, default=0) >= 0
                and sum(counts) == len(items)):
            self._refuse(src, msg.rid, "bad_request", detail="a Replicate's partitions, floors and counts disagree")
            return
        cfg = self.kit.state.config
        if cfg is None:
            self._refuse(src, msg.rid, "behind")
            return
        data, me, placement = self.data, self.me, self.placement
        again: list[int] = []
        again_floors: list[int] = []
        dropped: list[int] = []
        end = 0
        for p, floor, n in zip(parts, floors, counts):
            start, end = end, end + n
            if not 0 <= p < cfg.partition_count or me not in placement(p).serving:
                dropped.append(p)
                continue
            if floor < data.floor(p) and not all(self._may_take(p, k, r, floor) for k, r in items[start:end]):
                again.append(p)
                again_floors.append(data.floor(p))
                continue
            data.put_many(p, items[start:end])
        if again or dropped:
            self.stats.refused += 1
            self._send(src, Replicated(msg.rid, again, again_floors, dropped))
        else:
            self._send(src, Ack(msg.rid))

    # ------------------------------------------------------------ client requests
    def request_state(self, src: str, rid: int) -> Message | bool:
        """What this node knows of client request ``rid`` from ``src``: the answer it sent (still
        remembered), True while in progress, False if nothing (new, or forgotten)."""
        for table in (self._answers, self._older_answers):
            answers = table.get(src)
            if answers is not None and rid in answers:
                return answers[rid]
        running = self._in_progress.get(src)
        return running is not None and rid in running

    def _client(self, src: str, msg: Set | Get) -> None:
        known = self.request_state(src, msg.rid)
        if known is not False:
            if known is not True:
                self._outbox.append((src, known))  # a duplicate of one answered: answer again
            return  # a duplicate of one in progress: its answer is coming
        running = self._in_progress.get(src)
        if running is None:
            self._in_progress[src] = {msg.rid: None}
        else:
            running[msg.rid] = None
        write = type(msg) is Set
        problem = check_request(msg.key, msg.value if write else None)
        if problem is None and write and msg.w is not None:
            try:
                self.quorums.with_w(msg.w)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            self._refuse(src, msg.rid, "bad_request", detail=problem)
            return
        if self.kit.state.config is None:
            self._refuse(src, msg.rid, "unavailable", detail="this node has no cluster map yet")
            return
        partition = self._partition_of(msg.key)
        here = self.placement(partition)
        if write:
            self.stats.sets += 1
        else:
            self.stats.gets += 1
        strategy = self.config.strategy
        if strategy == "async" and not write and self.me in here.serving:
            self._send(src, Result(msg.rid, self.data.get(partition, msg.key)))  # any copy answers an ASYNC read
        elif strategy != "sync" and here.primary != self.me:
            self._forward(src, msg, here.primary)
        elif strategy == "async":
            self._async_local(src, msg, partition, here)
        else:
            self._coordinate(src, msg, here)

    def _forward(self, src: str, msg: Set | Get, primary: str) -> None:
        if msg.hops >= 2:
            self._refuse(src, msg.rid, "not_primary", detail=f"maps disagree on the primary (last: {primary})")
            return
        rid = next(self._rids)
        self.stats.forwarded += 1
        self._pending[rid] = _Pending(src, msg.rid, self._ticks + self.config.op_timeout_ticks, write=isinstance(msg, Set), rids=[rid])
        self._routes[rid] = ("pending", rid)
        if isinstance(msg, Set):
            self._send(primary, Set(rid, msg.key, msg.value, msg.w, msg.hops + 1))
        else:
            self._send(primary, Get(rid, msg.key, msg.hops + 1))

    def _coordinate(self, src: str, msg: Set | Get, here: Placement) -> None:
        write = isinstance(msg, Set)
        op = Operation(
            msg.key, here,
            self.quorums.with_w(msg.w) if isinstance(msg, Set) else self.quorums,
            f"{self.me}#{next(self._writes)}", self._next_rid,
            write=write, value=msg.value if isinstance(msg, Set) else None,
        )
        op_rid = next(self._rids)
        self._pending[op_rid] = _Pending(src, msg.rid, self._ticks + self.config.op_timeout_ticks, op, write)
        self._op_sends(op_rid, op.start())
        self._op_done(op_rid)

    def _next_rid(self) -> int:
        return next(self._rids)

    def _op_sends(self, key: int, sends: list[Outbound]) -> None:
        pend = self._pending[key]
        assert pend.op is not None
        if pend.op.rid not in self._routes:
            self._routes[pend.op.rid] = ("pending", key)
            pend.rids.append(pend.op.rid)
        for dst, m in sends:
            self._send(dst, m)

    def _close(self, key: int) -> _Pending:
        pend = self._pending.pop(key)
        for rid in pend.rids:
            self._routes.pop(rid, None)
        return pend

    def _op_done(self, key: int) -> None:
        pend = self._pending.get(key)
        if pend is None or pend.op is None or pend.op.outcome is None:
            return
        self._close(key)
        op = pend.op
        self._send(pend.src, Result(pend.rid, op.result, op.outcome, op.detail))

    def _async_local(self, src: str, msg: Set | Get, partition: int, here: Placement) -> None:
        if isinstance(msg, Get):
            self._send(src, Result(msg.rid, self.data.get(partition, msg.key)))
            return
        peers = self._peers_of.get(partition)
        if peers is None:  # (here is at the current epoch: placement() just reset the cache if it moved)
            peers = self._peers_of[partition] = tuple(n for n in here.serving if n != self.me)
        queues, limit = self._queues, self.config.queue_limit
        for n in peers:
            queue = queues.get(n)
            if queue is not None and len(queue) >= limit:
                self._refuse(src, msg.rid, "overloaded", detail="replication is behind; retry")
                return
        data, key = self.data, msg.key
        old = data.get(partition, key)
        top = data.floors.get(partition, 0)
        if old is not None and old.version.counter > top:
            top = old.version.counter
        record = make_record(top + 1, f"{self.me}#{next(self._writes)}", msg.value)
        data.put(partition, key, record)
        item = (partition, key)
        for n in peers:
            queue = queues.get(n)
            if queue is None:
                queue = queues[n] = OrderedDict()
            queue[item] = None
        self._send(src, Result(msg.rid, record))
        self._replicate_due = True  # sent by take_outbox: one batch for every write handled until then

    # ------------------------------------------------------------ answers to our requests
    def _answer(self, src: str, msg: Message) -> None:
        rid = getattr(msg, "rid", None)
        if rid in self._in_flight:
            self._replication_answer(rid, msg)
            return
        route = self._routes.get(rid) if type(rid) is int else None
        if route is None:
            return  # late: the request is finished
        kind, key = route
        if kind == "gc":
            self._gc_answer(key, src, msg)
            return
        if kind in ("pull", "repair"):
            job = (self._pulls if kind == "pull" else self._repairs).get(key)
            source = job.sources.get(src) if job is not None else None
            if job is not None and source is not None and source.rid == rid:
                if kind == "pull":
                    self._pull_answer(key, job, src, source, msg)
                else:
                    self._repair_answer(key, job, src, source, msg)
            return
        pend = self._pending[key]
        if pend.op is None:  # a forwarded request's answer: relay it
            self._close(key)
            if isinstance(msg, Result):
                self._send(pend.src, Result(pend.rid, msg.record, msg.outcome, msg.detail))
            elif isinstance(msg, Refused):
                self._send(pend.src, Refused(pend.rid, msg.reason, msg.epoch, msg.detail))
            return
        self._op_sends(key, pend.op.on_message(src, msg))
        if pend.op.stale:
            self._refresh(key)
        self._op_done(key)

    def _refresh(self, key: int) -> None:
        op = self._pending[key].op
        assert op is not None
        self._op_sends(key, op.refresh(self.placement(op.placement.number)))

    def _tick_pending(self, key: int, pend: _Pending) -> None:
        op = pend.op
        if self._ticks >= pend.deadline:
            self._close(key)
            if op is not None:
                op.expire()
                self._send(pend.src, Result(pend.rid, None, op.outcome or "info", op.detail))
            else:
                outcome = "info" if pend.write else "fail"
                self._send(pend.src, Result(pend.rid, None, outcome, "the primary did not answer in time"))
            return
        if op is None:
            return
        if op.stale:
            self._refresh(key)
        elif (pend.deadline - self._ticks) % self.config.retry_ticks == 0:
            self._op_sends(key, op.retry())
        self._op_done(key)

    # ------------------------------------------------------------ migration
    def on_partition_change(self, event: PartitionChange) -> None:
        """The facade's hook: this node must copy a partition. Started by the next tick, from the
        map as it is then: hooks also fire while a restarted node replays old entries, and a copy
        started from a map that later entries change would drop data this node holds now."""
        if event.copy_to is not None and event.copy_to.id == self.me:
            self._waiting[event.number] = None

    def _reconcile(self) -> None:
        """After any map change: pull what we must copy, drop what we no longer serve."""
        state = self.kit.state
        for p in range(len(state.owners)):
            if self.me in state.incoming(p):
                if p not in self._pulls or self._pulls[p].placement.epoch != state.changed[p]:
                    self._start_pull(p)
            elif p in self._pulls:
                self._forget(self._pulls.pop(p))
        for p in list(self.data.parts):
            if self.me not in self.placement(p).asked:  # (a failed holder keeps its copy: it counts)
                self.data.drop(p)
                self._collected.pop(p, None)
                self.stats.dropped += 1
                log.info("%s dropped partition %d (no longer an owner)", self.me, p)
        if self.config.strategy == "async":
            for peer, queue in self._queues.items():
                for item in [i for i in queue if peer not in self.placement(i[0]).serving]:
                    del queue[item]

    def _start_pull(self, p: int) -> None:
        here = self.placement(p)
        if self.me not in here.incoming:
            return
        copying = sum(1 for job in self._pulls.values() if job.confirmed_tick is None)
        if p not in self._pulls and copying >= self.config.max_pulls:
            self._waiting[p] = None  # started when a copy under way is done
            return
        self._waiting.pop(p, None)
        old = self._pulls.get(p)
        carried: dict[str, _Source] = {}
        if old is not None:
            self._forget(old)
        if old is not None and old.placement.epoch != here.epoch and self.data.copying.get(p) == old.placement.epoch:
            # This node has stayed incoming since that copy began (a job is forgotten at the first
            # tick it isn't), so what it copied is of this ownership: go on at the new placement,
            # each source still a holder where it was (its cursor, its life, done or not). Copies
            # that started over at every change of placement might never finish under churn.
            self.data.continue_copy(p, here.epoch, self.kit.state.epoch)
            carried = {n: src for n, src in old.sources.items() if n in here.holders}
            job = _PullJob(here, here.copy_sources(self.quorums), keys=old.keys, counted=old.counted)
        else:
            # Start from nothing, unless this copy started at this very placement (a restart during
            # it): what this node holds of p is from an earlier ownership (a stale disk could bring
            # back a delete collected since) or writes a quorum of holders also has. A confirmation
            # of an earlier copy, still in flight, names its epoch and is ignored (cluster state).
            if self.data.start_copy(p, here.epoch, self.kit.state.epoch):
                self._collected.pop(p, None)
            job = _PullJob(here, here.copy_sources(self.quorums))
        self._pulls[p] = job
        # The same sources a fresh copy would take (not those under way first: one of them may now
        # be marked failed, and silent), each where it was if it was one before.
        for node in here.holders[: job.need]:
            source = carried.get(node)
            if source is not None and source.done:
                job.sources[node] = source
                job.tried.add(node)
            else:
                self._pull_from(p, job, node, source)
        if carried:
            self._maybe_confirm(p, job)

    def _pull_from(self, p: int, job: _PullJob, node: str, source: _Source | None = None) -> None:
        source = job.sources.setdefault(node, source or _Source())
        job.tried.add(node)
        self._routes.pop(source.rid, None)
        source.rid, source.sent_tick = next(self._rids), self._ticks
        source.wait = self.config.retry_ticks if job.repair and source.buckets is None else self.config.pull_retry_ticks
        self._routes[source.rid] = ("repair" if job.repair else "pull", p)
        epoch = job.placement.epoch
        if not job.repair:
            self._send(node, Pull(source.rid, p, epoch, source.after, self.config.batch))
        elif source.buckets is None:
            self._send(node, Sums(source.rid, p, epoch))
        else:
            self._send(node, Fetch(source.rid, p, epoch, source.buckets, source.key_after, self.config.batch))

    def _pull_answer(self, p: int, job: _PullJob, src: str, source: _Source, msg: Message) -> None:
        if isinstance(msg, Refused):
            if msg.reason == "stale" or msg.reason == "not_serving":
                self._start_pull(p)  # the placement moved on (ours may be behind: the next tick retries)
            else:
                source.wait = self.config.retry_ticks  # behind: it will catch up soon; ask again then
            return
        if not isinstance(msg, Batch):
            return
        # A source's batch at this placement holds nothing older than a delete collected at an
        # earlier one (every owner held the tombstone then), so its floor is adopted, not checked.
        self._adopt_floor(p, msg.floor)
        job.keys += self.data.put_many(p, msg.items)
        source.tries = 0
        if source.life is not None and msg.life != source.life:
            # The source restarted: its change numbers start again (a compacted log replays to fewer
            # changes), so our cursor may lie past all of them. Pull it again from its start.
            source.life, source.after, source.done = msg.life, 0, False
            self._pull_from(p, job, src, source)
            return
        source.life = msg.life
        source.after = msg.cursor
        if msg.done:
            source.done = True
            self._maybe_confirm(p, job)
        else:
            self._pull_from(p, job, src, source)

    def _repair_answer(self, p: int, job: _PullJob, src: str, source: _Source, msg: Message) -> None:
        """Compare bucket digests with a holder, then fetch only the buckets that differ."""
        if isinstance(msg, Refused):
            if msg.reason == "stale" or msg.reason == "not_serving":
                self._end_repair(p)  # the placement moved on: the next round repairs it
            else:
                source.wait = self.config.retry_ticks  # behind: ask again soon
            return
        if isinstance(msg, Digest) and source.buckets is None:
            ours = self.data.sums(p)
            source.buckets = [b for b, (a, t) in enumerate(zip(ours, msg.sums)) if a != t]
            if not source.buckets:
                source.done = True
        elif isinstance(msg, Batch) and source.buckets is not None:
            if msg.floor < self.data.floor(p):
                # read before tombstones were collected here: each record is checked as a Store
                # from that sender would be (ending the round instead starved repair whenever the
                # floors differed, as they do between a collection's first copy and its last)
                job.keys += self.data.put_many(p, [(k, r) for k, r in msg.items if self._may_take(p, k, r, msg.floor)])
            else:
                self._adopt_floor(p, msg.floor)
                job.keys += self.data.put_many(p, msg.items)
            if msg.done:
                source.done = True
            elif msg.items:
                source.key_after = msg.items[-1][0]
        else:
            return
        if not source.done:
            self._pull_from(p, job, src, source)
        elif all(s.done for s in job.sources.values()):
            self.stats.repaired += job.keys
            self._end_repair(p)

    def _launch_waiting(self) -> None:
        for p in list(self._waiting):
            if self.me in self.kit.state.incoming(p):
                self._start_pull(p)
            else:
                del self._waiting[p]

    def _maybe_confirm(self, p: int, job: _PullJob) -> None:
        if sum(s.done for s in job.sources.values()) < job.need:
            return
        first = job.confirmed_tick is None
        job.confirmed_tick = self._ticks
        if first and not job.counted:
            job.counted = True
            self.stats.migrations += 1
            self.stats.keys_migrated += job.keys
            log.info("%s copied partition %d (%d keys) from %s", self.me, p, job.keys, sorted(job.sources))
            self._launch_waiting()  # a copy slot is free: don't wait for the next tick
        try:
            self.kit.confirm_copy(p, epoch=job.placement.epoch)
        except Exception as exc:  # noqa: BLE001 - no leader right now: the next tick asks again
            log.debug("confirm of partition %d not proposed: %s", p, exc)

    def _tick_pull(self, p: int) -> None:
        job = self._pulls[p]
        state = self.kit.state
        if self.me not in state.incoming(p):
            self._forget(self._pulls.pop(p))
            return
        if state.changed[p] != job.placement.epoch:
            self._start_pull(p)
            return
        if job.confirmed_tick is not None:
            if self._ticks - job.confirmed_tick >= 5 * self.config.retry_ticks:
                self._maybe_confirm(p, job)  # the confirmation may have been lost: ask again
            return
        for node, source in list(job.sources.items()):
            if source.done or self._ticks - source.sent_tick < source.wait:
                continue
            source.tries += 1
            failed = job.placement.failed
            spare = [h for h in job.placement.holders if h not in job.sources]
            if node not in failed:  # a live source is left only for another live one: one marked
                spare = [h for h in spare if h not in failed]  # failed is likelier down for good
            if source.tries > 3 and spare:  # silent: copy from another complete holder instead
                # (untried ones first; once all were tried, round again: a holder silent then may
                # be back, and one we moved away from may be the only one left)
                spare.sort(key=lambda h: (h in failed, h in job.tried))
                del job.sources[node]
                self._pull_from(p, job, spare[0])
            else:
                self._pull_from(p, job, node, source)

    # ------------------------------------------------------------ anti-entropy
    def _tick_repairs(self) -> None:
        """Each partition this node holds, once per ``repair_ticks``: compare bucket digests with
        every other complete holder and merge the buckets that differ, so a copy that missed writes
        (it was down, or cut off) catches up; copies that agree exchange their BUCKETS digests."""
        period = self.config.repair_ticks
        for p, job in list(self._repairs.items()):
            if self._ticks - job.started >= period:
                self._end_repair(p)  # a holder stayed silent: give up this round
                continue
            for node, source in job.sources.items():
                # (digests are small: asked again soon; a fetch may be a large batch still being served)
                if not source.done and self._ticks - source.sent_tick >= source.wait:
                    self._pull_from(p, job, node, source)  # a lost batch or request: ask again
        state = self.kit.state
        for p in range(self._ticks % period, len(state.owners), period):
            if p in self._repairs or p in self._pulls:
                continue
            here = self.placement(p)
            sources = [n for n in here.holders if n != self.me]
            if self.me not in here.holders or not sources:
                continue
            job = _PullJob(here, len(sources), repair=True, started=self._ticks)
            self._repairs[p] = job
            for node in sources:
                self._pull_from(p, job, node)

    def _end_repair(self, p: int) -> None:
        job = self._repairs.pop(p, None)
        if job is not None:
            self._forget(job)

    def _forget(self, job: _PullJob) -> None:
        """A pull or repair job is over: late answers to its requests are dropped."""
        for source in job.sources.values():
            self._routes.pop(source.rid, None)

    # ------------------------------------------------------------ tombstone collection
    def _tick_gc(self) -> None:
        """Each partition this node is the primary of, once per ``gc_ticks``: the tombstones it
        held at the last round too, if every owner holds them (or has collected them), are
        collected everywhere; only while the placement is settled."""
        period = self.config.gc_ticks
        for p, rnd in list(self._gc.items()):
            if self._ticks - rnd.started >= period or self.placement(p).epoch != rnd.placement.epoch:
                self._end_gc(p)
            elif rnd.collecting and self._ticks - rnd.sent_tick >= self.config.retry_ticks:
                self._send_collect(p, rnd)  # a lost Collect or Ack: ask again
            elif not rnd.collecting and self._ticks - rnd.sent_tick >= self.config.retry_ticks:
                self._send_have(p, rnd)  # a lost Have or Has: ask again
        state = self.kit.state
        for p in range(self._ticks % period, len(state.owners), period):
            if p in self._gc or p in self._pulls:
                continue
            here = self.placement(p)
            if here.primary != self.me or here.failed or not here.settled:
                self._gc_seen.pop(p, None)  # not settled here: candidates start again
                continue
            tombs = self.data.tombstones(p)
            seen, self._gc_seen[p] = self._gc_seen.get(p, {}), tombs
            items = [(k, r) for k, r in tombs.items() if seen.get(k) == r][: self.config.gc_batch]
            if not items:
                continue
            rnd = self._gc[p] = _GcRound(here, items, next(self._rids), self._ticks)
            self._routes[rnd.rid] = ("gc", p)
            if all(n == self.me for n in here.serving):
                self._gc_decide(p, rnd)
            else:
                self._send_have(p, rnd)

    def _adopt_floor(self, p: int, floor: int) -> None:
        """A floor learned from another copy (it collected tombstones this one never held, or
        hasn't collected yet): what was collected below it isn't known here, so the rounds
        remembered start again from it."""
        if floor > self.data.floor(p):
            self.data.raise_floor(p, floor)
            self._collected[p] = (floor, [])

    def _may_take(self, p: int, key: str, record: Record, floor: int) -> bool:
        """Whether a record sent by someone who knew only ``floor`` (older than ours) is safe to
        merge: the key holds something here (a merge keeps the newer), or none of the tombstones
        collected here since was of this key, or the one that was is older than the record. The
        rounds remembered don't reach back that far (a restart forgets them): not safe."""
        if self.data.get(p, key) is not None:
            return True
        rounds = self._collected.get(p)
        if rounds is None or floor < rounds[0]:
            return False
        for _before, after, keys in rounds[1]:
            if after > floor:
                gone = keys.get(key)
                if gone is not None and record.version <= gone:
                    return False
        return True

    def _has(self, src: str, msg: Have) -> None:
        """Held: the very tombstone, or its key collected here in a round still remembered (so an
        older value of it would be refused). Not a key merely absent: a copy that never got the
        delete would take an older value of it that arrives late (found in review)."""
        held = []
        for i, (key, tomb) in enumerate(msg.items):
            mine = self.data.get(msg.partition, key)
            if mine is None:
                gone = self._remembered(msg.partition, key)
                if gone is not None and gone >= tomb.version:
                    held.append(i)
            elif mine.value is None and mine.version == tomb.version:
                held.append(i)
        self._send(src, Has(msg.rid, held, self.data.floor(msg.partition)))

    def _remembered(self, p: int, key: str) -> Version | None:
        rounds = self._collected.get(p)
        best = None
        for _before, _after, keys in rounds[1] if rounds is not None else ():
            gone = keys.get(key)
            if gone is not None and (best is None or gone > best):
                best = gone
        return best

    def _gc_answer(self, p: int, src: str, msg: Message) -> None:
        rnd = self._gc.get(p)
        if rnd is None:
            return
        if isinstance(msg, Has) and not rnd.collecting and src in rnd.placement.serving:
            rnd.held[src] = set(msg.held)
            rnd.floor = max(rnd.floor, msg.floor)
            if all(n in rnd.held for n in rnd.placement.serving if n != self.me):
                self._gc_decide(p, rnd)
        elif isinstance(msg, Ack) and rnd.collecting:
            rnd.acked.add(src)
            if all(n in rnd.acked for n in rnd.placement.serving if n != self.me):
                self._end_gc(p)
        elif isinstance(msg, Refused) and msg.reason in ("stale", "not_serving"):
            self._end_gc(p)  # the placement moved on: the next round starts again

    def _gc_decide(self, p: int, rnd: _GcRound) -> None:
        keep = set(range(len(rnd.items)))
        for held in rnd.held.values():
            keep &= held
        items = [rnd.items[i] for i in sorted(keep)]
        if not items:
            self._end_gc(p)
            return
        # Above every owner's floor and every tombstone collected: a Store, Replicate or repair
        # batch read before any copy collected these carries a lower floor, and is refused.
        floor = max(rnd.floor, self.data.floor(p), max(r.version.counter for _k, r in items)) + 1
        rnd.items, rnd.floor, rnd.collecting = items, floor, True
        self._collect(p, floor, items)
        if all(n == self.me for n in rnd.placement.serving):
            self._end_gc(p)
        else:
            self._send_collect(p, rnd)

    def _send_have(self, p: int, rnd: _GcRound) -> None:
        rnd.sent_tick = self._ticks
        msg = Have(rnd.rid, p, rnd.placement.epoch, rnd.items)
        for node in rnd.placement.serving:
            if node != self.me and node not in rnd.held:
                self._send(node, msg)

    def _send_collect(self, p: int, rnd: _GcRound) -> None:
        rnd.sent_tick = self._ticks
        msg = Collect(rnd.rid, p, rnd.floor, rnd.items)
        for node in rnd.placement.serving:
            if node != self.me and node not in rnd.acked:
                self._send(node, msg)

    def _collect_in(self, src: str, msg: Collect) -> None:
        if not self._known_partition(src, msg.rid, msg.partition):
            return
        if self.me in self.placement(msg.partition).asked:  # (else: nothing of it here to collect)
            self._collect(msg.partition, msg.floor, msg.items)
        self._send(src, Ack(msg.rid))

    def _collect(self, p: int, floor: int, items: list[tuple[str, Record]]) -> None:
        before = self.data.floor(p)
        rounds = self._collected.setdefault(p, (before, []))
        self.data.raise_floor(p, floor)  # first: from now on, nothing older is taken in
        # Every key of the round this copy holds nothing newer of is remembered, removed now or not
        # (a late Collect, after a newer round raised the floor, still removes: the review found
        # one that removed and remembered nothing, then took an older value of the key).
        gone = {}
        for key, tomb in items:
            if self.data.collect(p, key, tomb):
                self.stats.collected += 1
            mine = self.data.get(p, key)
            if mine is None or mine.version <= tomb.version:
                gone[key] = tomb.version
        if gone or floor > before:
            rounds[1].append((before, max(floor, before), gone))
            if len(rounds[1]) > 8:  # remembered: the last 8 rounds; older senders are refused
                self._collected[p] = (rounds[1][1][0], rounds[1][1:])
        seen = self._gc_seen.get(p)
        if seen:
            for key, _tomb in items:
                seen.pop(key, None)

    def _end_gc(self, p: int) -> None:
        rnd = self._gc.pop(p, None)
        if rnd is not None:
            self._routes.pop(rnd.rid, None)

    # ------------------------------------------------------------ ASYNC replication
    def _flush_replication(self) -> None:
        """Send each idle peer the oldest queued records, up to ``batch`` of them and about
        ``batch_bytes``, every partition among them in one Replicate; a peer is busy until those
        are answered (or time out)."""
        self._replicate_due = False
        if not self._queues:
            return
        busy, batch, max_bytes, data = self._busy_peers, self.config.batch, self.config.batch_bytes, self.data
        for peer, queue in self._queues.items():
            # Up to 4 x ``batch`` records in flight per peer: one batch per round trip would cap
            # replication at batch/RTT, behind what a primary acknowledges.
            while queue and busy.get(peer, 0) < 4 * batch:
                items: list[tuple[int, str]] = []
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
                rid = next(self._rids)
                self._in_flight[rid] = (peer, items, self._ticks)
                self._send(peer, Replicate(rid, parts, [data.floor(p) for p in parts],
                                           [len(r) for r in by_partition.values()],
                                           [x for r in by_partition.values() for x in r]))
                busy[peer] = busy.get(peer, 0) + len(items)

    def _replication_answer(self, rid: int, msg: Message) -> None:
        peer, items, _tick = self._in_flight.pop(rid)
        self._settled(peer, len(items))
        if isinstance(msg, Ack):
            self.stats.replicated += len(items)
        elif isinstance(msg, Replicated):
            again = dict(zip(msg.again, msg.floors))
            for p, floor in again.items():
                self._adopt_floor(p, floor)  # what we send now holds nothing older
            dropped = set(msg.dropped)
            self.stats.replicated += sum(1 for p, _k in items if p not in again and p not in dropped)
            retry = [item for item in items if item[0] in again]
            if retry:
                self._requeue(peer, retry)
        elif isinstance(msg, Refused):
            self._requeue(peer, items)  # (no map there yet, or a malformed batch: send again)
        self._replicate_due = True

    def _retry_replication(self) -> None:
        for rid, (peer, items, tick) in list(self._in_flight.items()):
            if self._ticks - tick >= self.config.retry_ticks:
                del self._in_flight[rid]
                self._settled(peer, len(items))
                self._requeue(peer, items)

    def _settled(self, peer: str, records: int) -> None:
        left = self._busy_peers.get(peer, 0) - records
        if left > 0:
            self._busy_peers[peer] = left
        else:
            self._busy_peers.pop(peer, None)

    def _requeue(self, peer: str, items: list[tuple[int, str]]) -> None:
        queue = self._queues.setdefault(peer, OrderedDict())
        for item in items:
            queue[item] = None
            queue.move_to_end(item, last=False)

    def replication_backlog(self) -> int:
        return sum(len(q) for q in self._queues.values()) + sum(len(i) for _p, i, _t in self._in_flight.values())

    # ------------------------------------------------------------ stats
    def stats_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.me,
            "strategy": self.config.strategy,
            "keys": self.data.keys(),
            "partitions": len(self.data.parts),
            "migrating": sorted(self._pulls),
            "waiting_to_copy": len(self._waiting),
            "replication_backlog": self.replication_backlog(),
            **self.stats.as_dict(),
        }
