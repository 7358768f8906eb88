"""Replication strategies as objects (clusterkit.kv.strategies): the registry, what each declares,
and ALL (W = RF) from its quorums to a simulated chaos run and real nodes through the SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clusterkit.kv.config import ServerConfig
from clusterkit.kv.messages import Ack, Found, Query, Store
from clusterkit.kv.operation import Operation
from clusterkit.kv.quorum import Placement, Quorums
from clusterkit.kv.records import Record, Version
from clusterkit.kv.strategies import STRATEGIES, Route, Strategy, by_name
from clusterkit.net.client import KVClient, KVFailed, KVUnknown
from clusterkit.net.local import LocalCluster, http_json
from clusterkit.sim.runner import run_scenario
from clusterkit.sim.scenario import Scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
R1, R2 = Record(Version(1, "x"), "one"), Record(Version(2, "y"), "two")


def test_the_registry_names_every_strategy_and_refuses_others() -> None:
    assert list(STRATEGIES) == ["sync", "async", "server-side", "all"]
    for name, strategy in STRATEGIES.items():
        assert isinstance(strategy, Strategy) and strategy.name == name == str(strategy)
        assert by_name(name) is strategy and ServerConfig(strategy=name).policy is strategy
    with pytest.raises(ValueError, match="one of sync, async, server-side, all, got 'eventual'"):
        by_name("eventual")
    with pytest.raises(ValueError, match="strategy must be one of"):
        ServerConfig(strategy="ALL")
    with pytest.raises(TypeError):
        STRATEGIES["mine"] = STRATEGIES["sync"]  # type: ignore[index]  # fixed at import


@pytest.mark.parametrize(("name", "answers"), [
    # route, forwards_to_primary, acks_before_replicating, reads_from_any_copy, linearizable, loss_window
    ("sync", (Route.COPIES, False, False, False, True, False)),
    ("server-side", (Route.ANY, True, False, False, True, False)),
    ("async", (Route.PRIMARY, True, True, True, False, True)),
    ("all", (Route.COPIES, False, False, False, True, False)),
])
def test_what_each_strategy_declares(name: str, answers: tuple) -> None:
    s = STRATEGIES[name]
    assert (s.route, s.forwards_to_primary, s.acks_before_replicating, s.reads_from_any_copy,
            s.linearizable, s.loss_window) == answers
    assert s.client_quorum == (s.route is Route.COPIES)


def test_the_seed_strategies_keep_majority_quorums() -> None:
    for name in ("sync", "async", "server-side"):
        assert STRATEGIES[name].quorums(3) == Quorums(3) == Quorums(3, 2, 2, 2)
        assert STRATEGIES[name].quorums(5, 4, 2) == Quorums(5, 4, 2)
        q = STRATEGIES[name].quorums(5, 4, 2)
        assert q.echo == q.w and q.writeback() is q  # a read writes back to W copies, as before


@pytest.mark.parametrize("rf", [1, 2, 3, 4, 5])
def test_all_writes_every_copy_and_reads_a_majority(rf: int) -> None:
    q = STRATEGIES["all"].quorums(rf)
    assert q.w == rf and q.r == rf // 2 + 1 and q.echo + q.r > rf and q.echo <= q.r
    assert q.with_w(rf) is q
    for r in range(1, rf + 1):  # any R the operator picks: the write-back meets every read
        given = STRATEGIES["all"].quorums(rf, 0, r)
        assert given.echo + r == rf + 1
    if rf > 1:
        with pytest.raises(ValueError, match="W is RF"):
            STRATEGIES["all"].quorums(rf, rf - 1)
    with pytest.raises(ValueError, match="write-back"):
        Quorums(3, 3, 2, echo=1)  # a write-back two reads of two could both miss


def _op(write: bool) -> Operation:
    rids = iter(range(1, 100))
    placement = Placement(3, 7, "a", ("a", "b", "c"), ("a", "b", "c"), ("a", "b", "c"), ())
    return Operation("k", placement, STRATEGIES["all"].quorums(3), "c#1", lambda: next(rids),
                     write=write, value="v")


def test_an_all_write_needs_every_copy() -> None:
    op = _op(True)
    rid = op.start()[0][1].rid
    op.on_message("a", Found(rid, R1))
    stores = op.on_message("b", Found(rid, R2))  # a read quorum (2) chose the version
    assert {d for d, _ in stores} == {"a", "b", "c"}
    srid = stores[0][1].rid
    op.on_message("a", Ack(srid))
    op.on_message("b", Ack(srid))
    assert op.outcome is None  # two of three is a SYNC write, not an ALL one
    op.on_message("c", Ack(srid))
    assert op.outcome == "ok" and op.result.version == Version(3, "c#1")


def test_an_all_read_asks_a_majority_and_writes_back_to_a_majority() -> None:
    quick = _op(False)
    rid = quick.start()[0][1].rid
    quick.on_message("a", Found(rid, R2))
    assert quick.on_message("b", Found(rid, R2)) == [] and quick.outcome == "ok" and quick.result == R2
    op = _op(False)
    sends = op.start()
    assert all(isinstance(m, Query) for _, m in sends)
    rid = sends[0][1].rid
    op.on_message("a", Found(rid, R2))  # a write in progress, on one copy so far
    back = op.on_message("b", Found(rid, R1))
    assert {d for d, _ in back} == {"a", "b", "c"} and all(isinstance(m, Store) and m.record == R2 for _, m in back)
    op.on_message("a", Ack(back[0][1].rid))
    assert op.outcome is None
    op.on_message("b", Ack(back[0][1].rid))  # on two copies: every later read of two meets one
    assert op.outcome == "ok" and op.result == R2


def test_all_under_chaos_in_the_simulator() -> None:
    report = run_scenario(Scenario.load(SCENARIOS / "kv-all-chaos.toml"), 3)
    assert report.ok, report.problems
    assert report.kv["kv_lost_writes"] == 0 and report.kv["kv_acked_writes"] > 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("kv-all")
    with LocalCluster(root, size=3, extra_args=["--log-level", "WARNING", "--kv-strategy", "all"], kv=True) as c:
        c.start_all()
        c.wait(c.kv_settled, 30, "the KV store on every node")
        yield c


def test_all_on_real_nodes_through_the_sdk(cluster: LocalCluster) -> None:
    seeds = [cluster.nodes["node-1"].http]

    async def run() -> None:
        async with KVClient(seeds, strategy="all", timeout=3.0) as kv:
            assert kv.quorums == Quorums(3, 3, 2, 2)
            await asyncio.gather(*(kv.set(f"k{i}", f"v{i}") for i in range(50)))
            for i in range(50):
                assert await kv.get(f"k{i}") == f"v{i}"
                copies = await kv.holders(f"k{i}")  # acknowledged: on every owner already
                assert len(copies) == 3 and all(r is not None and r.value == f"v{i}" for r in copies.values())
        async with KVClient(seeds, strategy="all", smart=False, timeout=3.0) as simple:  # a node coordinates
            await simple.set("s", "x")
            assert await simple.get("s") == "x"
        # The seed's quorum route is a quorum write here (only a strategy that acknowledges
        # before replicating refuses it).
        status, _ = http_json(cluster.nodes["node-2"].url + "/kv/replicate", "POST", {"key": "r", "value": "y"})
        assert status == 200
        cluster.kill("node-3")
        async with KVClient(seeds, strategy="all", timeout=1.0) as kv:
            assert await kv.get("k7") == "v7"  # reads need a majority of the copies
            with pytest.raises((KVFailed, KVUnknown)):
                await kv.set("k7", "w")  # a write needs every owner, and one is down

    asyncio.run(run())
