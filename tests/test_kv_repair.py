"""Anti-entropy repair (clusterkit.kv.repair), driven directly: two holders' Repair modules answer
each other by hand, so a copy that missed writes gets exactly the buckets that differ."""

from __future__ import annotations

from clusterkit.kv.config import ServerConfig
from clusterkit.kv.copyjob import CopyJob
from clusterkit.kv.data import bucket_of
from clusterkit.kv.floors import CollectedRounds
from clusterkit.kv.messages import Batch, Digest, Fetch, Refused, Sums
from clusterkit.kv.migrate import Migration
from clusterkit.kv.records import Record, Version
from clusterkit.kv.repair import Repair
from tests.test_kv_context import context, key_in, settled

REC = Record(Version(2, "w"), "v")


def _repair(kit):
    ctx = context(kit, ServerConfig(repair_ticks=1000))
    floors = CollectedRounds(ctx.data)
    return ctx, Repair(ctx, floors, Migration(ctx, floors))


def _relay(ctx, holders: dict, src: str) -> None:
    """Every request in ``src``'s outbox served by its holder, the answers handed back."""
    out, ctx.outbox = ctx.outbox, []
    for dst, msg in out:
        peer_ctx, peer = holders[dst]
        serve = peer.serve_sums if isinstance(msg, Sums) else peer.serve_fetch
        serve(src, msg)
        answers, peer_ctx.outbox = peer_ctx.outbox, []
        for _to, answer in answers:
            holders[src][1].answer(msg.partition, dst, msg.rid, answer)


def test_a_copy_that_missed_writes_fetches_only_the_buckets_that_differ() -> None:
    c = settled()
    nodes = {nid: _repair(c.kits[nid]) for nid in ("node-1", "node-2", "node-3")}
    ctx, rep = nodes["node-1"]
    p = 0
    keys = key_in(ctx.kit, p, 40)
    for nid in ("node-2", "node-3"):
        for k in keys:
            nodes[nid][0].data.put(p, k, REC)
    missed = keys[:3]
    for k in keys[3:]:
        ctx.data.put(p, k, REC)
    ctx.ticks = p  # the partition's turn
    rep.tick()
    assert sorted(d for d, _m in ctx.outbox) == ["node-2", "node-3"]
    assert all(isinstance(m, Sums) for _d, m in ctx.outbox)
    _relay(ctx, nodes, "node-1")  # digests: the buckets of the missed keys differ
    job = rep.repairs[p]
    assert all(s.buckets == sorted({bucket_of(k) for k in missed}) for s in job.sources.values())
    assert all(isinstance(m, Fetch) and m.buckets == job.sources[d].buckets for d, m in ctx.outbox)
    _relay(ctx, nodes, "node-1")
    assert all(ctx.data.get(p, k) == REC for k in missed)
    assert p not in rep.repairs and ctx.stats.repaired == len(missed)  # (the second holder's copies changed nothing)
    ctx.ticks += ctx.config.repair_ticks
    rep.tick()
    _relay(ctx, nodes, "node-1")  # the copies agree now: digests only
    assert p not in rep.repairs and ctx.outbox == [] and ctx.stats.repaired == len(missed)


def test_a_batch_read_before_a_collection_here_is_checked_record_by_record() -> None:
    c = settled()
    ctx, rep = _repair(c.kits["node-1"])
    p = 0
    ctx.data.raise_floor(p, 10)
    rep.floors.note(p, 0, 10, {"gone": Version(5, "d")})
    ctx.ticks = p
    rep.tick()
    job = rep.repairs[p]
    src, source = next(iter(job.sources.items()))
    source.buckets = [bucket_of("gone"), bucket_of("fresh")]
    old = Record(Version(4, "w"), "old")  # older than the delete collected here
    rep.answer(p, src, source.rid, Batch(source.rid, [("gone", old), ("fresh", REC)], True, 0, 0))
    assert ctx.data.get(p, "gone") is None and ctx.data.get(p, "fresh") == REC


def test_a_moved_placement_ends_the_round_and_a_partition_being_copied_in_is_left_alone() -> None:
    c = settled()
    ctx, rep = _repair(c.kits["node-1"])
    ctx.ticks = 0
    rep.migration.pulls[0] = CopyJob(ctx.placement(0), 2)  # being copied in: migration merges it
    rep.tick()
    assert 0 not in rep.repairs and ctx.outbox == []
    del rep.migration.pulls[0]
    rep.tick()
    job = rep.repairs[0]
    src, source = next(iter(job.sources.items()))
    rep.answer(0, src, source.rid, Refused(source.rid, "behind", 0))
    assert source.wait == ctx.config.retry_ticks and 0 in rep.repairs
    rep.answer(0, src, source.rid + 1, Digest(source.rid + 1, []))  # not the request under way: late
    assert source.buckets is None
    rep.answer(0, src, source.rid, Refused(source.rid, "stale", 0))
    assert 0 not in rep.repairs and source.rid not in ctx.routes
