"""What every KV protocol shares (clusterkit.kv.context): the epoch fence, the one outbox with its
messages to ourselves, the answers remembered for duplicates, and the per-epoch placement cache.
Also home to the small in-memory clusters the other tests/test_kv_<protocol>.py files build on."""

from __future__ import annotations

from clusterkit.facade import ClusterKit
from clusterkit.kv.config import ServerConfig
from clusterkit.kv.context import ServerContext
from clusterkit.kv.data import KVData
from clusterkit.kv.messages import Ack, Found, Refused, Result
from clusterkit.mem.cluster import MemCluster
from tests.test_kv_tombstones import _settled, _three_of_four


def settled(names: tuple[str, ...] = ("node-1", "node-2", "node-3"), members: int | None = None) -> MemCluster:
    """A Raft group of ``names`` whose first ``members`` (default: all) make a settled cluster:
    every copy confirmed, nothing moving."""
    if members is not None:
        assert names == ("node-1", "node-2", "node-3", "node-4") and members == 3
        return _three_of_four()
    return _settled(names)[0]


def context(kit: ClusterKit, config: ServerConfig | None = None, incarnation: int = 0) -> ServerContext:
    return ServerContext(kit, KVData(), config or ServerConfig(), incarnation)


def primary_of(kit: ClusterKit, node: str) -> int:
    return next(p for p in range(kit.state.config.partition_count) if kit.partition(p).primary == node)


def key_in(kit: ClusterKit, p: int, n: int = 1) -> list[str]:
    number = kit.state.config.hash_config.number
    return [k for k in (f"k{i}" for i in range(20_000)) if number(k) == p][:n]


def test_the_fence_serves_only_the_senders_epoch_of_a_partition_this_copy_serves() -> None:
    c = settled(("node-1", "node-2", "node-3", "node-4"))  # RF 3 of 4: some partitions aren't here
    ctx = context(c.kits["node-1"])
    kit = ctx.kit
    p = primary_of(kit, "node-1")
    epoch = kit.partition(p).epoch
    assert ctx.fence("x", 1, p, epoch) == ctx.placement(p)
    assert ctx.fence("x", 2, p, epoch - 1) is None
    assert ctx.fence("x", 3, p, epoch + 1) is None
    assert ctx.fence("x", 4, kit.state.config.partition_count, epoch) is None
    elsewhere = next(q for q in range(kit.state.config.partition_count) if "node-1" not in ctx.placement(q).asked)
    assert ctx.fence("x", 5, elsewhere, ctx.placement(elsewhere).epoch) is None
    reasons = [(m.rid, m.reason) for _dst, m in ctx.outbox]
    assert reasons == [(2, "stale"), (3, "behind"), (4, "bad_request"), (5, "not_serving")]
    assert ctx.stats.refused == 4
    assert [m.epoch for _dst, m in ctx.outbox][:2] == [epoch, epoch]  # the copy's epoch: the sender catches up


def test_a_node_without_a_map_refuses_every_partition_as_behind() -> None:
    c = MemCluster(["node-1"], seed=1)  # never bootstrapped: no cluster config
    ctx = context(c.kits["node-1"])
    assert ctx.kit.state.config is None
    assert not ctx.known_partition("x", 1, 0)
    assert ctx.outbox == [("x", Refused(1, "behind", ctx.kit.state.epoch))]


def test_messages_to_ourselves_wait_in_local_and_client_answers_are_remembered() -> None:
    c = settled()
    ctx = context(c.kits["node-1"])
    ctx.send("node-1", Ack(7))
    assert ctx.local == [Ack(7)] and ctx.outbox == []
    ctx.requests.begin("client", 9)
    assert ctx.requests.state("client", 9) is True
    ctx.send("client", Found(9, None))  # not an answer to a client: not remembered
    assert ctx.requests.state("client", 9) is True
    ctx.send("client", Result(9, None))
    assert ctx.requests.state("client", 9) == Result(9, None) and not ctx.requests.in_progress
    assert ctx.outbox == [("client", Found(9, None)), ("client", Result(9, None))]
    ctx.requests.age()
    assert ctx.requests.state("client", 9) == Result(9, None)  # one generation older: still answered
    ctx.requests.age()
    assert ctx.requests.state("client", 9) is False


def test_request_ids_differ_across_incarnations_and_placements_are_cached_per_epoch() -> None:
    c = settled(("node-1", "node-2", "node-3", "node-4"), members=3)
    one, two = context(c.kits["node-1"]), context(c.kits["node-1"], incarnation=1)
    assert {one.next_rid(), one.next_rid()}.isdisjoint({two.next_rid(), two.next_rid()})
    count = one.kit.state.config.partition_count
    cached = {p: one.placement(p) for p in range(count)}
    assert all(one.placement(p) is cached[p] for p in range(count))
    epoch = one.kit.state.epoch
    assert c.submit("node-4", c.kits["node-4"].join_command()).ok
    assert one.kit.state.epoch > epoch
    moved = [p for p in range(count) if "node-4" in one.kit.partition(p).incoming]
    assert moved and all("node-4" in one.placement(p).incoming for p in moved)  # not the cached ones
    assert all("node-4" not in cached[p].serving for p in moved)
    p = moved[0]
    assert one.partition_of(key_in(one.kit, p)[0]) == p
