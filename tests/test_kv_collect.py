"""Tombstone collection (clusterkit.kv.collect) and the rounds a copy remembers (clusterkit.kv.floors),
driven directly: a primary's Have/Collect round, an owner's answers, and what a floor lets in."""

from __future__ import annotations

from clusterkit.kv.collect import Collection
from clusterkit.kv.config import ServerConfig
from clusterkit.kv.data import KVData
from clusterkit.kv.floors import REMEMBERED_ROUNDS, CollectedRounds
from clusterkit.kv.messages import Ack, Collect, Has, Have, Refused
from clusterkit.kv.migrate import Migration
from clusterkit.kv.records import Record, Version
from tests.test_kv_context import context, primary_of, settled

OLD, TOMB, NEWER = Record(Version(3, "w"), "old"), Record(Version(4, "d"), None), Record(Version(6, "w"), "new")


def _collection(kit, **config):
    ctx = context(kit, ServerConfig(**{"gc_ticks": 1000, **config}))
    floors = CollectedRounds(ctx.data)
    return ctx, Collection(ctx, floors, Migration(ctx, floors))


def _round_under_way():
    """node-1, the primary of p, holding a tombstone for a whole round: the round has started."""
    c = settled()
    kit = c.kits["node-1"]
    ctx, col = _collection(kit)
    p = primary_of(kit, "node-1")
    ctx.data.put(p, "dead", TOMB)
    ctx.ticks = p  # the partition's turn
    col.tick()
    assert not col.rounds and ctx.outbox == []  # first seen: a whole round must pass
    ctx.ticks += ctx.config.gc_ticks
    col.tick()
    return c, ctx, col, p


def test_remembered_rounds_refuse_only_records_older_than_a_delete_collected_since() -> None:
    floors = CollectedRounds(KVData())
    floors.data.raise_floor(0, 10)
    floors.note(0, 0, 10, {"k": TOMB.version})
    assert not floors.may_take(0, "k", OLD, 0)  # older than the delete collected: it would come back
    assert floors.may_take(0, "k", NEWER, 0)  # newer: a write after the delete
    assert floors.may_take(0, "other", OLD, 0)  # no delete of it collected
    assert floors.remembered(0, "k") == TOMB.version and floors.remembered(0, "other") is None
    floors.data.put(0, "k", NEWER)
    assert floors.may_take(0, "k", OLD, 0)  # held here: a merge keeps the newer anyway
    floors.adopt_floor(0, 20)  # a floor from another copy: what it collected below isn't known here
    assert floors.data.floor(0) == 20 and not floors.may_take(0, "gone", OLD, 10)
    assert floors.may_take(0, "gone", OLD, 20)


def test_only_the_last_rounds_are_remembered() -> None:
    floors = CollectedRounds(KVData())
    for i in range(REMEMBERED_ROUNDS + 1):
        floors.note(0, 10 * i, 10 * (i + 1), {f"k{i}": Version(10 * i + 1, "d")})
    reach, rounds = floors.rounds[0]
    assert len(rounds) == REMEMBERED_ROUNDS and reach == 10
    assert floors.remembered(0, "k0") is None and floors.remembered(0, "k1") is not None
    assert not floors.may_take(0, "x", OLD, 5)  # older than the rounds reach back: not safe
    floors.forget(0)
    assert 0 not in floors.rounds


def test_applying_a_round_removes_its_tombstones_raises_the_floor_and_remembers_them() -> None:
    c = settled()
    ctx, col = _collection(c.kits["node-2"])
    ctx.data.put(0, "dead", TOMB)
    ctx.data.put(0, "rewritten", NEWER)
    col.apply(0, 7, [("dead", TOMB), ("rewritten", TOMB), ("absent", TOMB)])
    assert ctx.data.get(0, "dead") is None and ctx.data.get(0, "rewritten") == NEWER
    assert ctx.data.floor(0) == 7 and ctx.stats.collected == 1
    assert col.floors.remembered(0, "dead") == TOMB.version and col.floors.remembered(0, "absent") == TOMB.version
    assert col.floors.remembered(0, "rewritten") is None  # a newer value is held: nothing to remember


def test_an_owner_counts_as_holding_a_tombstone_only_if_it_has_it_or_collected_it() -> None:
    c = settled()
    ctx, col = _collection(c.kits["node-2"])
    p = 0
    epoch = ctx.placement(p).epoch
    ctx.data.put(p, "held", TOMB)
    ctx.data.put(p, "live", OLD)
    col.apply(p, 5, [("collected", TOMB)])
    col.serve_have("node-1", Have(1, p, epoch, [("held", TOMB), ("live", TOMB), ("absent", TOMB), ("collected", TOMB)]))
    assert ctx.outbox[-1] == ("node-1", Has(1, [0, 3], 5))
    col.serve_have("node-1", Have(2, p, epoch - 1, [("held", TOMB)]))
    assert isinstance(ctx.outbox[-1][1], Refused) and ctx.outbox[-1][1].reason == "stale"


def test_the_primary_collects_a_tombstone_seen_for_a_whole_round_once_every_owner_holds_it() -> None:
    _c, ctx, col, p = _round_under_way()
    rnd = col.rounds[p]
    haves = {dst: m for dst, m in ctx.outbox}
    assert sorted(haves) == ["node-2", "node-3"] and all(isinstance(m, Have) and m.items == [("dead", TOMB)]
                                                       for m in haves.values())
    assert ctx.routes[rnd.rid] == ("gc", p)
    col.answer(p, "node-2", Has(rnd.rid, [0], 2))
    assert not rnd.collecting  # node-3 hasn't answered
    ctx.outbox.clear()
    col.answer(p, "node-3", Has(rnd.rid, [0], 0))
    assert rnd.collecting and ctx.data.get(p, "dead") is None
    assert ctx.data.floor(p) == rnd.floor == max(2, TOMB.version.counter) + 1
    assert sorted(dst for dst, _m in ctx.outbox) == ["node-2", "node-3"]
    assert all(m == Collect(rnd.rid, p, rnd.floor, [("dead", TOMB)]) for _d, m in ctx.outbox)
    col.answer(p, "node-2", Ack(rnd.rid))
    col.answer(p, "node-3", Ack(rnd.rid))
    assert p not in col.rounds and rnd.rid not in ctx.routes


def test_a_tombstone_one_owner_lacks_is_kept_and_a_collect_elsewhere_is_acknowledged() -> None:
    c, ctx, col, p = _round_under_way()
    rid = col.rounds[p].rid
    col.answer(p, "node-2", Has(rid, [0], 0))
    col.answer(p, "node-3", Has(rid, [], 0))  # node-3 never got the delete
    assert p not in col.rounds and ctx.data.get(p, "dead") == TOMB
    other, owner = _collection(c.kits["node-2"])
    other.data.put(p, "dead", TOMB)
    owner.collect_in("node-1", Collect(9, p, 8, [("dead", TOMB)]))
    assert other.outbox == [("node-1", Ack(9))] and other.data.get(p, "dead") is None and other.data.floor(p) == 8
    owner.collect_in("node-1", Collect(10, 10_000, 8, []))
    assert other.outbox[-1][1].reason == "bad_request"
