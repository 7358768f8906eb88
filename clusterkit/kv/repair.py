"""Anti-entropy repair: each held partition is merged, now and then, from its other complete holders.

Once per ``repair_ticks`` a holder compares bucket digests with every other complete holder and
fetches only the buckets that differ, so a copy that missed writes (it was down, or cut off)
catches up; copies that agree exchange their digests only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import ServerContext
from .copyjob import CopyJob, ask, asked, forget
from .floors import CollectedRounds
from .messages import Batch, Digest, Fetch, Message, Refused, Sums
from .migrate import Migration


@dataclass(eq=False)
class Repair:
    ctx: ServerContext = field(repr=False)
    floors: CollectedRounds = field(repr=False)
    migration: Migration = field(repr=False)  # a partition being copied in is not repaired
    repairs: dict[int, CopyJob] = field(default_factory=dict)

    def tick(self) -> None:
        ctx = self.ctx
        period = ctx.config.repair_ticks
        for p, job in list(self.repairs.items()):
            if ctx.ticks - job.started >= period:
                self.end(p)  # a holder stayed silent: give up this round
                continue
            for node, source in job.sources.items():
                # (digests are small: asked again soon; a fetch may be a large batch still being served)
                if not source.done and ctx.ticks - source.sent_tick >= source.wait:
                    ask(ctx, p, job, node, source)  # a lost batch or request: ask again
        pulls = self.migration.pulls
        for p in ctx.turn(period):
            if p in self.repairs or p in pulls:
                continue
            here = ctx.placement(p)
            sources = [n for n in here.holders if n != ctx.me]
            if ctx.me not in here.holders or not sources:
                continue
            job = CopyJob(here, len(sources), repair=True, started=ctx.ticks)
            self.repairs[p] = job
            for node in sources:
                ask(ctx, p, job, node)

    def answer(self, p: int, src: str, rid: int, msg: Message) -> None:
        """Compare bucket digests with a holder, then fetch only the buckets that differ."""
        job = self.repairs.get(p)
        source = asked(job, src, rid)
        if job is None or source is None:
            return
        ctx = self.ctx
        data = ctx.data
        if isinstance(msg, Refused):
            if msg.reason == "stale" or msg.reason == "not_serving":
                self.end(p)  # the placement moved on: the next round repairs it
            else:
                source.wait = ctx.config.retry_ticks  # behind: ask again soon
            return
        if isinstance(msg, Digest) and source.buckets is None:
            ours = data.sums(p)
            source.buckets = [b for b, (a, t) in enumerate(zip(ours, msg.sums)) if a != t]
            if not source.buckets:
                source.done = True
        elif isinstance(msg, Batch) and source.buckets is not None:
            if msg.floor < data.floor(p):
                # read before tombstones were collected here: each record is checked as a Store
                # from that sender would be (ending the round instead starved repair whenever the
                # floors differed, as they do between a collection's first copy and its last)
                may_take = self.floors.may_take
                job.keys += data.put_many(p, [(k, r) for k, r in msg.items if may_take(p, k, r, msg.floor)])
            else:
                self.floors.adopt_floor(p, msg.floor)
                job.keys += data.put_many(p, msg.items)
            if msg.done:
                source.done = True
            elif msg.items:
                source.key_after = msg.items[-1][0]
        else:
            return
        if not source.done:
            ask(ctx, p, job, src, source)
        elif all(s.done for s in job.sources.values()):
            ctx.stats.repaired += job.keys
            self.end(p)

    def end(self, p: int) -> None:
        job = self.repairs.pop(p, None)
        if job is not None:
            forget(self.ctx, job)

    def serve_sums(self, src: str, msg: Sums) -> None:
        ctx = self.ctx
        if ctx.fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            ctx.send(src, Digest(msg.rid, ctx.data.sums(msg.partition)))

    def serve_fetch(self, src: str, msg: Fetch) -> None:
        ctx = self.ctx
        if ctx.fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            limit = max(1, min(msg.limit, 4096))
            items, done = ctx.data.scan(msg.partition, msg.after, limit, ctx.config.batch_bytes, set(msg.buckets))
            ctx.send(src, Batch(msg.rid, items, done, 0, ctx.data.floor(msg.partition)))
