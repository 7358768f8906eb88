"""Tombstone collection: deletes every owner holds are removed everywhere, by the partition's primary.

Once the placement is settled (no copy moving, none marked failed), a tombstone the primary has
held for a whole ``gc_ticks`` round that every owner holds too (or has collected) is removed
everywhere, and each copy raises the partition's *floor* above it and above every owner's floor
(:class:`~.messages.Have`, :class:`~.messages.Collect`). New versions go above the floors a query
saw; a Store, Replicate or repair batch from a sender that knew an older floor is taken only where
this copy can tell that no tombstone it collected since was of the same key and newer (it may
carry a value older than a collected delete): see :mod:`.floors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import ServerContext
from .floors import CollectedRounds
from .messages import Ack, Collect, Has, Have, Message, Refused
from .migrate import Migration
from .quorum import Placement
from .records import Record, Version


@dataclass
class GcRound:
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


@dataclass(eq=False)
class Collection:
    ctx: ServerContext = field(repr=False)
    floors: CollectedRounds = field(repr=False)
    migration: Migration = field(repr=False)  # a partition being copied in is not collected
    rounds: dict[int, GcRound] = field(default_factory=dict)
    seen: dict[int, dict[str, Record]] = field(default_factory=dict)  # per partition: the tombstones at its last round

    def tick(self) -> None:
        """Each partition this node is the primary of, once per ``gc_ticks``: the tombstones it
        held at the last round too, if every owner holds them (or has collected them), are
        collected everywhere; only while the placement is settled."""
        ctx = self.ctx
        period, retry = ctx.config.gc_ticks, ctx.config.retry_ticks
        for p, rnd in list(self.rounds.items()):
            if ctx.ticks - rnd.started >= period or ctx.placement(p).epoch != rnd.placement.epoch:
                self._end(p)
            elif rnd.collecting and ctx.ticks - rnd.sent_tick >= retry:
                self._send_collect(p, rnd)  # a lost Collect or Ack: ask again
            elif not rnd.collecting and ctx.ticks - rnd.sent_tick >= retry:
                self._send_have(p, rnd)  # a lost Have or Has: ask again
        pulls = self.migration.pulls
        for p in ctx.turn(period):
            if p in self.rounds or p in pulls:
                continue
            here = ctx.placement(p)
            if here.primary != ctx.me or here.failed or not here.settled:
                self.seen.pop(p, None)  # not settled here: candidates start again
                continue
            tombs = ctx.data.tombstones(p)
            seen, self.seen[p] = self.seen.get(p, {}), tombs
            items = [(k, r) for k, r in tombs.items() if seen.get(k) == r][: ctx.config.gc_batch]
            if not items:
                continue
            rnd = self.rounds[p] = GcRound(here, items, next(ctx.rids), ctx.ticks)
            ctx.routes[rnd.rid] = ("gc", p)
            if all(n == ctx.me for n in here.serving):
                self._decide(p, rnd)
            else:
                self._send_have(p, rnd)

    def answer(self, p: int, src: str, msg: Message) -> None:
        rnd = self.rounds.get(p)
        if rnd is None:
            return
        me = self.ctx.me
        if isinstance(msg, Has) and not rnd.collecting and src in rnd.placement.serving:
            rnd.held[src] = set(msg.held)
            rnd.floor = max(rnd.floor, msg.floor)
            if all(n in rnd.held for n in rnd.placement.serving if n != me):
                self._decide(p, rnd)
        elif isinstance(msg, Ack) and rnd.collecting:
            rnd.acked.add(src)
            if all(n in rnd.acked for n in rnd.placement.serving if n != me):
                self._end(p)
        elif isinstance(msg, Refused) and msg.reason in ("stale", "not_serving"):
            self._end(p)  # the placement moved on: the next round starts again

    def _decide(self, p: int, rnd: GcRound) -> None:
        keep = set(range(len(rnd.items)))
        for held in rnd.held.values():
            keep &= held
        items = [rnd.items[i] for i in sorted(keep)]
        if not items:
            self._end(p)
            return
        # Above every owner's floor and every tombstone collected: a Store, Replicate or repair
        # batch read before any copy collected these carries a lower floor, and is refused.
        floor = max(rnd.floor, self.ctx.data.floor(p), max(r.version.counter for _k, r in items)) + 1
        rnd.items, rnd.floor, rnd.collecting = items, floor, True
        self.apply(p, floor, items)
        if all(n == self.ctx.me for n in rnd.placement.serving):
            self._end(p)
        else:
            self._send_collect(p, rnd)

    def _send_have(self, p: int, rnd: GcRound) -> None:
        ctx = self.ctx
        rnd.sent_tick = ctx.ticks
        msg = Have(rnd.rid, p, rnd.placement.epoch, rnd.items)
        for node in rnd.placement.serving:
            if node != ctx.me and node not in rnd.held:
                ctx.send(node, msg)

    def _send_collect(self, p: int, rnd: GcRound) -> None:
        ctx = self.ctx
        rnd.sent_tick = ctx.ticks
        msg = Collect(rnd.rid, p, rnd.floor, rnd.items)
        for node in rnd.placement.serving:
            if node != ctx.me and node not in rnd.acked:
                ctx.send(node, msg)

    def _end(self, p: int) -> None:
        rnd = self.rounds.pop(p, None)
        if rnd is not None:
            self.ctx.routes.pop(rnd.rid, None)

    # ------------------------------------------------------------ an owner's side
    def serve_have(self, src: str, msg: Have) -> None:
        """Held: the very tombstone, or its key collected here in a round still remembered (so an
        older value of it would be refused). Not a key merely absent: a copy that never got the
        delete would take an older value of it that arrives late (found in review)."""
        ctx = self.ctx
        if ctx.fence(src, msg.rid, msg.partition, msg.epoch) is None:
            return
        held = []
        for i, (key, tomb) in enumerate(msg.items):
            mine = ctx.data.get(msg.partition, key)
            if mine is None:
                gone = self.floors.remembered(msg.partition, key)
                if gone is not None and gone >= tomb.version:
                    held.append(i)
            elif mine.value is None and mine.version == tomb.version:
                held.append(i)
        ctx.send(src, Has(msg.rid, held, ctx.data.floor(msg.partition)))

    def collect_in(self, src: str, msg: Collect) -> None:
        ctx = self.ctx
        if not ctx.known_partition(src, msg.rid, msg.partition):
            return
        if ctx.me in ctx.placement(msg.partition).asked:  # (else: nothing of it here to collect)
            self.apply(msg.partition, msg.floor, msg.items)
        ctx.send(src, Ack(msg.rid))

    def apply(self, p: int, floor: int, items: list[tuple[str, Record]]) -> None:
        """Remove the round's tombstones here and raise the floor above them."""
        ctx = self.ctx
        data = ctx.data
        before = data.floor(p)
        data.raise_floor(p, floor)  # first: from now on, nothing older is taken in
        # Every key of the round this copy holds nothing newer of is remembered, removed now or not
        # (a late Collect, after a newer round raised the floor, still removes: the review found
        # one that removed and remembered nothing, then took an older value of the key).
        gone: dict[str, Version] = {}
        for key, tomb in items:
            if data.collect(p, key, tomb):
                ctx.stats.collected += 1
            mine = data.get(p, key)
            if mine is None or mine.version <= tomb.version:
                gone[key] = tomb.version
        self.floors.note(p, before, floor, gone)
        seen = self.seen.get(p)
        if seen:
            for key, _tomb in items:
                seen.pop(key, None)
