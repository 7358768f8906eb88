"""ASYNC replication (clusterkit.kv.replicate), driven directly: a primary's queues, batches and
retries, and a replica's side of a Replicate."""

from __future__ import annotations

from collections import OrderedDict

from clusterkit.kv.config import ServerConfig
from clusterkit.kv.floors import CollectedRounds
from clusterkit.kv.messages import Ack, Refused, Replicate, Replicated, Result, Set
from clusterkit.kv.records import Record, Version
from clusterkit.kv.replicate import Replication
from tests.test_kv_context import context, key_in, primary_of, settled


def _primary(c, nid: str = "node-1", **config):
    ctx = context(c.kits[nid], ServerConfig(strategy="async", **config))
    return ctx, Replication(ctx, CollectedRounds(ctx.data))


def _replicates(ctx) -> dict[str, Replicate]:
    return {dst: m for dst, m in ctx.outbox if isinstance(m, Replicate)}


def _written():
    """node-1's Replication after one write to a partition it is the primary of."""
    ctx, rep = _primary(settled())
    p = primary_of(ctx.kit, "node-1")
    key = key_in(ctx.kit, p)[0]
    rep.write("c", Set(1, key, "v"), p, ctx.placement(p))
    return ctx, rep, p, key


def test_a_write_is_acknowledged_then_sent_once_per_peer_and_retried_until_answered() -> None:
    ctx, rep, p, key = _written()
    record = ctx.data.get(p, key)
    assert record is not None and record.value == "v" and record.version.counter == 1
    assert ctx.outbox == [("c", Result(1, record))] and rep.due
    assert {peer: list(q) for peer, q in rep.queues.items()} == {"node-2": [(p, key)], "node-3": [(p, key)]}
    rep.flush()
    sent = _replicates(ctx)
    assert sorted(sent) == ["node-2", "node-3"] and not rep.due
    assert all(m.partitions == [p] and m.counts == [1] and m.items == [(key, record)] for m in sent.values())
    assert rep.busy_peers == {"node-2": 1, "node-3": 1} and rep.backlog() == 2
    rep.answer(sent["node-2"].rid, Ack(sent["node-2"].rid))
    assert ctx.stats.replicated == 1 and "node-2" not in rep.busy_peers and rep.due
    ctx.ticks += ctx.config.retry_ticks - 1
    rep.retry()
    assert sent["node-3"].rid in rep.in_flight  # not yet
    ctx.ticks += 1
    rep.retry()  # node-3 stayed silent: its records go back to the front of its queue
    assert list(rep.queues["node-3"]) == [(p, key)] and not rep.in_flight and not rep.busy_peers
    assert rep.backlog() == 1


def test_a_full_queue_refuses_writes_and_stores_nothing() -> None:
    c = settled()
    ctx, rep = _primary(c, queue_limit=1)
    p = primary_of(ctx.kit, "node-1")
    k1, k2 = key_in(ctx.kit, p, 2)
    rep.write("c", Set(1, k1, "a"), p, ctx.placement(p))
    rep.write("c", Set(2, k2, "b"), p, ctx.placement(p))
    [(_c, refused)] = ctx.outbox[1:]
    assert isinstance(refused, Refused) and refused.reason == "overloaded" and ctx.data.get(p, k2) is None
    assert ctx.stats.refused == 1


def test_a_replica_that_collected_since_makes_the_primary_adopt_its_floor_and_send_again() -> None:
    ctx, rep, p, key = _written()
    rep.flush()
    sent = _replicates(ctx)["node-2"]
    rep.answer(sent.rid, Replicated(sent.rid, [p], [40], []))
    assert ctx.data.floor(p) == 40 and list(rep.queues["node-2"]) == [(p, key)] and ctx.stats.replicated == 0
    rep.flush()
    again = _replicates(ctx)["node-2"]
    assert again.rid != sent.rid and again.floors == [40]
    rep.answer(again.rid, Replicated(again.rid, [], [], [p]))  # dropped there: never sent again
    assert not rep.queues["node-2"] and ctx.stats.replicated == 0


def test_a_replica_takes_what_it_serves_and_says_what_it_dropped_or_wants_again() -> None:
    c = settled(("node-1", "node-2", "node-3", "node-4"))  # RF 3 of 4: node-2 doesn't serve everything
    ctx, rep = _primary(c, "node-2")
    count = ctx.kit.state.config.partition_count
    mine = [q for q in range(count) if "node-2" in ctx.placement(q).serving]
    p, q = mine[0], mine[1]
    other = next(r for r in range(count) if "node-2" not in ctx.placement(r).serving)
    rec = Record(Version(5, "w"), "x")
    rep.serve_replicate("node-1", Replicate(1, [p, other], [0, 0], [1, 1], [("a", rec), ("b", rec)]))
    assert ctx.outbox[-1] == ("node-1", Replicated(1, [], [], [other]))
    assert ctx.data.get(p, "a") == rec and ctx.data.get(other, "b") is None
    ctx.data.raise_floor(q, 9)  # collected here since the primary's floor, no rounds remembered
    rep.serve_replicate("node-1", Replicate(2, [q], [0], [1], [("c", rec)]))
    assert ctx.outbox[-1] == ("node-1", Replicated(2, [q], [9], [])) and ctx.data.get(q, "c") is None
    rep.serve_replicate("node-1", Replicate(3, [q], [9], [1], [("c", rec)]))
    assert ctx.outbox[-1] == ("node-1", Ack(3)) and ctx.data.get(q, "c") == rec
    rep.serve_replicate("node-1", Replicate(4, [q], [9], [2], [("d", rec)]))  # counts disagree
    assert ctx.outbox[-1][1].reason == "bad_request" and ctx.data.get(q, "d") is None


def test_a_map_change_prunes_what_a_peer_no_longer_serves() -> None:
    c = settled(("node-1", "node-2", "node-3", "node-4"))
    ctx, rep = _primary(c)
    count = ctx.kit.state.config.partition_count
    served = next(q for q in range(count) if "node-4" in ctx.placement(q).serving)
    not_served = next(q for q in range(count) if "node-4" not in ctx.placement(q).serving)
    rep.queues["node-4"] = OrderedDict({(served, "a"): None, (not_served, "b"): None})
    rep.prune()
    assert list(rep.queues["node-4"]) == [(served, "a")]
