"""Migration (clusterkit.kv.migrate), driven directly: a joining node pulls its new partitions in
batches from a read quorum of holders, at most ``max_pulls`` at once, and confirms; a holder
serves batches; a node drops what it no longer serves."""

from __future__ import annotations

from clusterkit.kv.config import ServerConfig
from clusterkit.kv.floors import CollectedRounds
from clusterkit.kv.messages import Batch, Pull, Refused
from clusterkit.kv.migrate import Migration
from clusterkit.kv.records import Record, Version
from tests.test_kv_context import context, settled

REC = Record(Version(1, "w"), "v")


def _joined(**config):
    """node-4 joins a settled 3-node cluster: its Migration, and the partitions it must copy."""
    c = settled(("node-1", "node-2", "node-3", "node-4"), members=3)
    assert c.submit("node-4", c.kits["node-4"].join_command()).ok
    ctx = context(c.kits["node-4"], ServerConfig(**config))
    mig = Migration(ctx, CollectedRounds(ctx.data))
    incoming = [p for p in range(ctx.kit.state.config.partition_count) if "node-4" in ctx.placement(p).incoming]
    return c, ctx, mig, incoming


def _pulls(ctx) -> dict[tuple[int, str], Pull]:
    return {(m.partition, dst): m for dst, m in ctx.outbox if isinstance(m, Pull)}


def test_a_new_owner_copies_at_most_max_pulls_partitions_at_once_from_a_read_quorum() -> None:
    _c, ctx, mig, incoming = _joined(max_pulls=2)
    assert len(incoming) > 2
    mig.reconcile()
    assert list(mig.pulls) == incoming[:2] and list(mig.waiting) == incoming[2:]
    for p in incoming[:2]:
        here = ctx.placement(p)
        asked = sorted(dst for (q, dst) in _pulls(ctx) if q == p)
        assert asked == sorted(here.holders[: here.copy_sources(ctx.quorums)])
        assert all(m.epoch == here.epoch and m.after == 0 for (q, _d), m in _pulls(ctx).items() if q == p)


def test_batches_merge_move_the_cursor_and_the_last_one_confirms_and_frees_a_slot() -> None:
    _c, ctx, mig, incoming = _joined(max_pulls=1)
    mig.reconcile()
    p = incoming[0]
    job = mig.pulls[p]
    for (q, src), pull in _pulls(ctx).items():
        assert q == p
        ctx.outbox.clear()
        mig.answer(p, src, pull.rid, Batch(pull.rid, [(f"{src}-a", REC)], False, 7, 0, 1))
        [(dst, more)] = ctx.outbox
        assert dst == src and isinstance(more, Pull) and more.after == 7 and job.sources[src].after == 7
        mig.answer(p, src, pull.rid, Batch(pull.rid, [], True, 9, 0, 1))  # the earlier request: late
        assert not job.sources[src].done
        mig.answer(p, src, more.rid, Batch(more.rid, [(f"{src}-b", REC)], True, 9, 3, 1))
        assert job.sources[src].done and ctx.data.floor(p) == 3
    assert job.confirmed_tick == ctx.ticks and ctx.stats.migrations == 1 and ctx.stats.keys_migrated == 2 * job.need
    assert incoming[1] in mig.pulls and incoming[1] not in mig.waiting  # the freed slot taken at once


def test_a_source_that_restarted_is_pulled_again_from_its_start_and_behind_waits_less() -> None:
    _c, ctx, mig, incoming = _joined()
    mig.reconcile()
    p = incoming[0]
    (_q, src), pull = next((k, m) for k, m in _pulls(ctx).items() if k[0] == p)
    mig.answer(p, src, pull.rid, Batch(pull.rid, [], False, 50, 0, 1))
    again = mig.pulls[p].sources[src]
    mig.answer(p, src, again.rid, Batch(again.rid, [], True, 3, 0, 2))  # another life: its LSNs restarted
    assert again.after == 0 and not again.done and again.life == 2
    mig.answer(p, src, again.rid, Refused(again.rid, "behind", 0))
    assert again.wait == ctx.config.retry_ticks


def test_a_holder_serves_its_changes_after_the_cursor_at_the_senders_epoch_only() -> None:
    c = settled()
    ctx = context(c.kits["node-2"], ServerConfig(batch_bytes=1 << 20), incarnation=5)
    mig = Migration(ctx, CollectedRounds(ctx.data))
    p = 0
    epoch = ctx.placement(p).epoch
    ctx.data.put(p, "a", REC)
    ctx.data.put(p, "b", REC)
    ctx.data.raise_floor(p, 4)
    mig.serve_pull("node-4", Pull(1, p, epoch, 0, 1))
    [(_d, first)] = ctx.outbox
    assert isinstance(first, Batch) and [k for k, _r in first.items] == ["a"] and not first.done
    assert first.floor == 4 and first.life == 5
    mig.serve_pull("node-4", Pull(2, p, epoch, first.cursor, 10))
    assert [k for k, _r in ctx.outbox[-1][1].items] == ["b"] and ctx.outbox[-1][1].done
    mig.serve_pull("node-4", Pull(3, p, epoch + 1, 0, 10))
    assert ctx.outbox[-1] == ("node-4", Refused(3, "behind", epoch))


def test_a_partition_no_longer_served_is_dropped_with_its_remembered_rounds() -> None:
    c = settled(("node-1", "node-2", "node-3", "node-4"))
    ctx = context(c.kits["node-1"])
    mig = Migration(ctx, CollectedRounds(ctx.data))
    count = ctx.kit.state.config.partition_count
    mine = next(p for p in range(count) if "node-1" in ctx.placement(p).asked)
    other = next(p for p in range(count) if "node-1" not in ctx.placement(p).asked)
    for p in (mine, other):
        ctx.data.put(p, "k", REC)
        mig.floors.note(p, 0, 1, {})
    mig.reconcile()
    assert ctx.data.get(mine, "k") == REC and ctx.data.get(other, "k") is None
    assert mine in mig.floors.rounds and other not in mig.floors.rounds and ctx.stats.dropped == 1
