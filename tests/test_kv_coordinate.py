"""Client requests (clusterkit.kv.coordinate), driven directly: duplicates answered never run twice,
bad requests refused, a quorum write run to its end, forwarding and its timeout, and a copy's
side (Store, Query)."""

from __future__ import annotations

from clusterkit.kv.config import ServerConfig
from clusterkit.kv.coordinate import Coordinator
from clusterkit.kv.floors import CollectedRounds
from clusterkit.kv.messages import Ack, Found, Get, Query, Refused, Result, Set, Store
from clusterkit.kv.records import Record, Version
from clusterkit.kv.replicate import Replication
from clusterkit.mem.cluster import MemCluster
from tests.test_kv_context import context, key_in, primary_of, settled


def _coordinator(kit, **config):
    ctx = context(kit, ServerConfig(**config))
    floors = CollectedRounds(ctx.data)
    return ctx, Coordinator(ctx, floors, Replication(ctx, floors))


def _answer(ctx, coord, src: str, msg) -> None:
    """What the dispatcher does with an answer to one of the coordinator's requests."""
    kind, key = ctx.routes[msg.rid]
    assert kind == "pending"
    coord.answer(key, src, msg)


def test_a_quorum_write_runs_once_and_a_duplicate_gets_the_same_answer() -> None:
    c = settled()
    ctx, coord = _coordinator(c.kits["node-1"])
    p = primary_of(ctx.kit, "node-1")
    key = key_in(ctx.kit, p)[0]
    coord.client("c", Set(1, key, "v"))
    queries = {dst: m for dst, m in ctx.outbox if isinstance(m, Query)}
    assert sorted(queries) == ["node-2", "node-3"] and len(ctx.local) == 1  # and one to itself
    coord.client("c", Set(1, key, "v"))  # a duplicate while in progress: nothing more
    assert len(ctx.outbox) == 2 and ctx.stats.sets == 1
    ctx.outbox.clear()
    for src in ("node-2", "node-3"):
        _answer(ctx, coord, src, Found(queries[src].rid, None, 0))
    stores = {dst: m for dst, m in ctx.outbox if isinstance(m, Store)}
    assert sorted(stores) == ["node-2", "node-3"] and stores["node-2"].record.value == "v"
    ctx.outbox.clear()
    for src in ("node-2", "node-3"):
        _answer(ctx, coord, src, Ack(stores[src].rid))
    [(dst, result)] = ctx.outbox
    assert dst == "c" and isinstance(result, Result) and result.outcome == "ok" and result.record.value == "v"
    assert not coord.pending and not [r for r, route in ctx.routes.items() if route[0] == "pending"]
    coord.client("c", Set(1, key, "v"))
    assert ctx.outbox[-1] == ("c", result) and ctx.stats.sets == 1  # answered again, not run again


def test_bad_requests_and_a_node_without_a_map_are_refused_before_anything_runs() -> None:
    c = settled()
    ctx, coord = _coordinator(c.kits["node-1"])
    coord.client("c", Set(1, "", "v"))
    coord.client("c", Set(2, "k", "v", 1))  # W below the configured majority
    coord.client("c", Get(3, "k" * 2000))
    assert [(m.rid, m.reason) for _d, m in ctx.outbox] == [(1, "bad_request"), (2, "bad_request"), (3, "bad_request")]
    assert not coord.pending and ctx.stats.sets == 0
    alone = MemCluster(["node-1"], seed=1)
    ctx2, coord2 = _coordinator(alone.kits["node-1"])
    coord2.client("c", Get(4, "k"))
    assert [(m.rid, m.reason) for _d, m in ctx2.outbox] == [(4, "unavailable")]


def test_server_side_forwards_to_the_primary_relays_its_answer_and_times_out_alone() -> None:
    c = settled()
    ctx, coord = _coordinator(c.kits["node-2"], strategy="server-side", op_timeout_ticks=5)
    p = primary_of(ctx.kit, "node-1")
    key, other = key_in(ctx.kit, p, 2)
    coord.client("c", Set(100, key, "v"))
    [(dst, fwd)] = ctx.outbox
    assert dst == "node-1" and isinstance(fwd, Set) and fwd.hops == 1 and fwd.rid != 100
    assert ctx.stats.forwarded == 1
    record = Record(Version(1, "w"), "v")
    _answer(ctx, coord, "node-1", Result(fwd.rid, record))
    assert ctx.outbox[-1] == ("c", Result(100, record)) and not coord.pending
    coord.client("c", Set(2, other, "v", None, 2))  # already forwarded twice: maps disagree
    assert ctx.outbox[-1][1].reason == "not_primary"
    coord.client("c", Get(3, other))
    for _ in range(5):
        ctx.ticks += 1
        coord.tick()
    assert ctx.outbox[-1] == ("c", Result(3, None, "fail", "the primary did not answer in time"))
    assert not coord.pending


def test_a_copy_takes_a_store_at_its_epoch_unless_a_delete_it_collected_since_may_be_newer() -> None:
    c = settled()
    ctx, coord = _coordinator(c.kits["node-2"])
    p = 0
    epoch = ctx.placement(p).epoch
    old = Record(Version(3, "w"), "old")
    ctx.data.raise_floor(p, 10)
    coord.floors.note(p, 0, 10, {"gone": Version(5, "d")})
    coord.store("node-1", Store(1, p, epoch, "gone", old, 0))
    assert ctx.outbox[-1] == ("node-1", Refused(1, "collected", 0, "", 10))
    coord.store("node-1", Store(2, p, epoch, "fresh", old, 0))
    assert ctx.outbox[-1] == ("node-1", Ack(2)) and ctx.data.get(p, "fresh") == old
    coord.store("node-1", Store(3, p, epoch - 1, "late", old, 10))
    assert ctx.outbox[-1][1].reason == "stale" and ctx.data.get(p, "late") is None


def test_a_query_answers_early_only_what_is_synced() -> None:
    c = settled()
    ctx, coord = _coordinator(c.kits["node-2"])
    ctx.answer_early = True
    p = 0
    epoch = ctx.placement(p).epoch
    rec = Record(Version(1, "w"), "v")
    ctx.data.put(p, "k", rec)
    coord.query("node-1", Query(1, p, epoch, "k"))
    assert ctx.early == [] and ctx.outbox == [("node-1", Found(1, rec, 0))]
    lsn = ctx.data.lsn
    ctx.data.take_unsynced()
    ctx.data.mark_synced(lsn)
    coord.query("node-1", Query(2, p, epoch, "k"))
    assert ctx.early == [("node-1", Found(2, rec, 0))]
