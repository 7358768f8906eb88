"""A job that copies one partition in from other copies: a migration's pull or an anti-entropy repair.

Both ask each source in turn and keep a cursor per source; they differ in what they ask (a
migration pulls changes, a repair compares bucket digests and fetches the buckets that differ)
and in what ends them (a migration is confirmed through ClusterKit, a repair just ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import ServerContext
from .messages import Fetch, Pull, Sums
from .quorum import Placement


@dataclass
class Source:
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
class CopyJob:
    placement: Placement
    need: int
    sources: dict[str, Source] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)
    confirmed_tick: int | None = None
    keys: int = 0
    repair: bool = False  # anti-entropy among holders: nothing to confirm
    started: int = 0
    counted: bool = False  # in stats.migrations already (a copy that went on at a newer placement)


def ask(ctx: ServerContext, p: int, job: CopyJob, node: str, source: Source | None = None) -> None:
    """Send ``node`` the job's next request for partition ``p`` (a new request id: an answer to
    an earlier one is late and dropped)."""
    source = job.sources.setdefault(node, source or Source())
    job.tried.add(node)
    ctx.routes.pop(source.rid, None)
    source.rid, source.sent_tick = next(ctx.rids), ctx.ticks
    config = ctx.config
    source.wait = config.retry_ticks if job.repair and source.buckets is None else config.pull_retry_ticks
    ctx.routes[source.rid] = ("repair" if job.repair else "pull", p)
    epoch = job.placement.epoch
    if not job.repair:
        ctx.send(node, Pull(source.rid, p, epoch, source.after, config.batch))
    elif source.buckets is None:
        ctx.send(node, Sums(source.rid, p, epoch))
    else:
        ctx.send(node, Fetch(source.rid, p, epoch, source.buckets, source.key_after, config.batch))


def forget(ctx: ServerContext, job: CopyJob) -> None:
    """A pull or repair job is over: late answers to its requests are dropped."""
    for source in job.sources.values():
        ctx.routes.pop(source.rid, None)


def asked(job: CopyJob | None, src: str, rid: int) -> Source | None:
    """The job's source ``src`` if ``rid`` is its request under way (else the answer is late)."""
    source = job.sources.get(src) if job is not None else None
    return source if source is not None and source.rid == rid else None
