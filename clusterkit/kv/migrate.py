"""Migration: copying a partition in when this node becomes one of its owners, dropping it when not.

When this node is an incoming owner of a partition it pulls the partition in batches from a read
quorum of its complete holders (copy-from first), merges by version (writes arriving meanwhile are
kept: an older copied version never replaces a newer one), and confirms through ClusterKit. Old
owners drop their copy when the map no longer lists them, which happens only after every new owner
confirmed. A node that becomes an owner again copies the partition afresh (its old copy is dropped
when its copy starts), so a stale disk can't bring back a collected delete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .context import ServerContext
from .copyjob import CopyJob, Source, ask, asked, forget
from .floors import CollectedRounds
from .messages import Batch, Message, Pull, Refused

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Migration:
    ctx: ServerContext = field(repr=False)
    floors: CollectedRounds = field(repr=False)
    pulls: dict[int, CopyJob] = field(default_factory=dict)
    waiting: dict[int, None] = field(default_factory=dict)  # to copy once fewer than max_pulls are under way

    def copy_to_me(self, p: int) -> None:
        """ClusterKit's hook said this node must copy ``p``. Started by the next tick, from the map
        as it is then: hooks also fire while a restarted node replays old entries, and a copy
        started from a map that later entries change would drop data this node holds now."""
        self.waiting[p] = None

    def reconcile(self) -> None:
        """After any map change: pull what we must copy, drop what we no longer serve."""
        ctx = self.ctx
        me, state = ctx.me, ctx.kit.state
        for p in range(len(state.owners)):
            if me in state.incoming(p):
                if p not in self.pulls or self.pulls[p].placement.epoch != state.changed[p]:
                    self.start(p)
            elif p in self.pulls:
                forget(ctx, self.pulls.pop(p))
        for p in list(ctx.data.parts):
            if me not in ctx.placement(p).asked:  # (a failed holder keeps its copy: it counts)
                ctx.data.drop(p)
                self.floors.forget(p)
                ctx.stats.dropped += 1
                log.info("%s dropped partition %d (no longer an owner)", me, p)

    def start(self, p: int) -> None:
        ctx = self.ctx
        here = ctx.placement(p)
        if ctx.me not in here.incoming:
            return
        copying = sum(1 for job in self.pulls.values() if job.confirmed_tick is None)
        if p not in self.pulls and copying >= ctx.config.max_pulls:
            self.waiting[p] = None  # started when a copy under way is done
            return
        self.waiting.pop(p, None)
        old = self.pulls.get(p)
        carried: dict[str, Source] = {}
        if old is not None:
            forget(ctx, old)
        if old is not None and old.placement.epoch != here.epoch and ctx.data.copying.get(p) == old.placement.epoch:
            # This node has stayed incoming since that copy began (a job is forgotten at the first
            # tick it isn't), so what it copied is of this ownership: go on at the new placement,
            # each source still a holder where it was (its cursor, its life, done or not). Copies
            # that started over at every change of placement might never finish under churn.
            ctx.data.continue_copy(p, here.epoch, ctx.kit.state.epoch)
            carried = {n: src for n, src in old.sources.items() if n in here.holders}
            job = CopyJob(here, here.copy_sources(ctx.quorums), keys=old.keys, counted=old.counted)
        else:
            # Start from nothing, unless this copy started at this very placement (a restart during
            # it): what this node holds of p is from an earlier ownership (a stale disk could bring
            # back a delete collected since) or writes a quorum of holders also has. A confirmation
            # of an earlier copy, still in flight, names its epoch and is ignored (cluster state).
            if ctx.data.start_copy(p, here.epoch, ctx.kit.state.epoch):
                self.floors.forget(p)
            job = CopyJob(here, here.copy_sources(ctx.quorums))
        self.pulls[p] = job
        # The same sources a fresh copy would take (not those under way first: one of them may now
        # be marked failed, and silent), each where it was if it was one before.
        for node in here.holders[: job.need]:
            source = carried.get(node)
            if source is not None and source.done:
                job.sources[node] = source
                job.tried.add(node)
            else:
                ask(ctx, p, job, node, source)
        if carried:
            self._maybe_confirm(p, job)

    def answer(self, p: int, src: str, rid: int, msg: Message) -> None:
        job = self.pulls.get(p)
        source = asked(job, src, rid)
        if job is None or source is None:
            return
        ctx = self.ctx
        if isinstance(msg, Refused):
            if msg.reason == "stale" or msg.reason == "not_serving":
                self.start(p)  # the placement moved on (ours may be behind: the next tick retries)
            else:
                source.wait = ctx.config.retry_ticks  # behind: it will catch up soon; ask again then
            return
        if not isinstance(msg, Batch):
            return
        # A source's batch at this placement holds nothing older than a delete collected at an
        # earlier one (every owner held the tombstone then), so its floor is adopted, not checked.
        self.floors.adopt_floor(p, msg.floor)
        job.keys += ctx.data.put_many(p, msg.items)
        source.tries = 0
        if source.life is not None and msg.life != source.life:
            # The source restarted: its change numbers start again (a compacted log replays to fewer
            # changes), so our cursor may lie past all of them. Pull it again from its start.
            source.life, source.after, source.done = msg.life, 0, False
            ask(ctx, p, job, src, source)
            return
        source.life = msg.life
        source.after = msg.cursor
        if msg.done:
            source.done = True
            self._maybe_confirm(p, job)
        else:
            ask(ctx, p, job, src, source)

    def launch_waiting(self) -> None:
        ctx = self.ctx
        for p in list(self.waiting):
            if ctx.me in ctx.kit.state.incoming(p):
                self.start(p)
            else:
                del self.waiting[p]

    def _maybe_confirm(self, p: int, job: CopyJob) -> None:
        if sum(s.done for s in job.sources.values()) < job.need:
            return
        ctx = self.ctx
        first = job.confirmed_tick is None
        job.confirmed_tick = ctx.ticks
        if first and not job.counted:
            job.counted = True
            ctx.stats.migrations += 1
            ctx.stats.keys_migrated += job.keys
            log.info("%s copied partition %d (%d keys) from %s", ctx.me, p, job.keys, sorted(job.sources))
            self.launch_waiting()  # a copy slot is free: don't wait for the next tick
        try:
            ctx.kit.confirm_copy(p, epoch=job.placement.epoch)
        except Exception as exc:  # noqa: BLE001 - no leader right now: the next tick asks again
            log.debug("confirm of partition %d not proposed: %s", p, exc)

    def tick(self) -> None:
        for p in list(self.pulls):
            self._tick_pull(p)
        self.launch_waiting()

    def _tick_pull(self, p: int) -> None:
        ctx = self.ctx
        job = self.pulls[p]
        state = ctx.kit.state
        if ctx.me not in state.incoming(p):
            forget(ctx, self.pulls.pop(p))
            return
        if state.changed[p] != job.placement.epoch:
            self.start(p)
            return
        if job.confirmed_tick is not None:
            if ctx.ticks - job.confirmed_tick >= 5 * ctx.config.retry_ticks:
                self._maybe_confirm(p, job)  # the confirmation may have been lost: ask again
            return
        for node, source in list(job.sources.items()):
            if source.done or ctx.ticks - source.sent_tick < source.wait:
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
                ask(ctx, p, job, spare[0])
            else:
                ask(ctx, p, job, node, source)

    def serve_pull(self, src: str, msg: Pull) -> None:
        """A new owner's batch request: the changes after its cursor, with this copy's floor and life."""
        ctx = self.ctx
        if ctx.fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            limit = max(1, min(msg.limit, 4096))
            items, cursor, done = ctx.data.changes(msg.partition, msg.after, limit, ctx.config.batch_bytes)
            ctx.send(src, Batch(msg.rid, items, done, cursor, ctx.data.floor(msg.partition), ctx.incarnation))
