"""The KV core, sans-IO: versions, quorum sizes, the codec, the data, one ABD operation, the fence."""

from __future__ import annotations

import msgpack
import pytest

from clusterkit.kv.data import KVData, bucket_of
from clusterkit.kv.messages import (
    Ack, Batch, Digest, Fetch, Found, Get, ProtocolError, Pull, Query, Refused, Replicate, Replicated, Result, Set, Store, Sums,
    decode, encode,
)
from clusterkit.kv.operation import Operation
from clusterkit.kv.quorum import Placement, Quorums, needed
from clusterkit.kv.records import Record, Version, newer
from clusterkit.kv.server import KVServer, ServerConfig
from clusterkit.mem.cluster import MemCluster

R1 = Record(Version(1, "a"), "one")
R2 = Record(Version(2, "a"), "two")


def test_versions_order_and_merge_is_order_free() -> None:
    assert Version(2, "a") > Version(1, "z") and Version(1, "b") > Version(1, "a")
    assert newer(R1, R2) is R2 and newer(R2, R1) is R2 and newer(None, R1) is R1
    tomb = Record(Version(3, "b"), None)
    assert tomb.deleted and newer(R2, tomb) is tomb


@pytest.mark.parametrize("rf", [1, 2, 3, 5])
def test_read_and_write_quorums_intersect_at_every_size(rf: int) -> None:
    for w in range(1, rf + 1):
        for r in range(1, rf + 1):
            if w + r <= rf:
                with pytest.raises(ValueError):
                    Quorums(rf, w, r)
                continue
            for n in range(1, 2 * rf + 2):
                assert needed(n, w, rf) + needed(n, r, rf) > n, (rf, w, r, n)


def test_quorum_defaults_and_per_write_raise() -> None:
    q = Quorums(3)
    assert (q.w, q.r) == (2, 2)
    assert q.with_w(3).w == 3
    with pytest.raises(ValueError):
        q.with_w(1)  # lowering W would let reads miss the write
    with pytest.raises(ValueError):
        Quorums(3, 4, 2)


def test_a_write_during_a_migration_needs_a_quorum_of_the_new_owners_too() -> None:
    p = Placement(0, 5, "a", ("a", "b", "c", "d"), ("a", "b", "c"), ("a", "b", "d"), ("d",))
    q = Quorums(3)
    assert not p.write_done({"b", "c"}, q)  # if the migration releases c, only b would hold it
    assert p.write_done({"a", "b"}, q) and p.write_done({"b", "c", "d"}, q)
    assert not p.read_done({"a", "d"}, q)  # d is still copying: not a quorum of complete copies
    # and not {a, c} alone: once d's copy is confirmed (c released), a write needs only a and d or
    # b and d, which {a, c} misses while a lagging c still serves this placement
    assert not p.read_done({"a", "c"}, q)
    assert p.read_done({"a", "c", "d"}, q) and p.read_done({"a", "b"}, q)


def test_codec_round_trips_and_refuses_bad_frames() -> None:
    msgs = [Query(1, 2, 3, "k"), Store(1, 2, 3, "k", R1), Pull(1, 2, 3, 0, 10), Pull(1, 2, 3, 7, 10),
            Replicate(1, [2, 5], [0, 9], [1, 0], [("a", R1)]), Replicated(4, [2], [7], [5]), Set(1, "k", None), Set(1, "k", b"\x00", 3, 1), Get(1, "k"),
            Found(1, None), Found(2, R2), Ack(1), Batch(1, [("a", R1)], True), Batch(1, [], False, 9), Sums(1, 2, 3), Fetch(1, 2, 3, [0, 63], "k", 5), Digest(1, [0, 2**64 - 1]), Refused(1, "stale", 3, "why"),
            Result(1, R1, "info", "t")]
    for m in msgs:
        assert decode(encode(m)) == m
    bad = [b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([99]), msgpack.packb([1, "x", 2, 3, "k"]),
           msgpack.packb([2, 1, 2, 3, "k", [1, "c", 5]]), msgpack.packb([11]), msgpack.packb([11, 1, 2]),
           msgpack.packb([12, 1, [["a"]], True]), msgpack.packb([2, 1, 2, 3, "k", [-1, "c", "v"]])]
    for data in bad:
        with pytest.raises(ProtocolError):
            decode(data)


def test_data_merges_scans_in_batches_and_replays_its_log() -> None:
    d = KVData()
    assert d.put(0, "b", R1) and not d.put(0, "b", R1) and d.put(0, "b", R2) and not d.put(0, "b", R1)
    for k in "acde":
        d.put(0, k, R1)
    d.put(1, "z", R1)
    items, done = d.scan(0, None, 2)
    assert [k for k, _ in items] == ["a", "b"] and not done
    items, done = d.scan(0, "b", 10)
    assert [k for k, _ in items] == ["c", "d", "e"] and done
    log = d.take_unsynced()
    d.drop(1)
    log += d.take_unsynced()
    again = KVData.replay(log)
    assert again.parts == d.parts and again.get(0, "b") == R2 and again.get(1, "z") is None
    assert KVData.replay(d.compacted()).parts == d.parts
    # changes since a change number: oldest first, a record changed again comes again, never skipped
    d2 = KVData()
    for k in "abcde":
        d2.put(3, k, R1)
    first, cursor, done = d2.changes(3, 0, 3)
    assert [k for k, _ in first] == ["a", "b", "c"] and not done
    d2.put(3, "a", R2)  # changed while a puller pages through
    rest, cursor, done = d2.changes(3, cursor, 10)
    assert [(k, r) for k, r in rest] == [("d", R1), ("e", R1), ("a", R2)] and done
    assert d2.changes(3, cursor, 10) == ([], cursor, True)
    for i in range(3000):
        d2.put(3, "hot", Record(Version(i + 3, "w"), str(i)))
    assert len(d2._state[3].lsns) < 2 * 6 + 1024 + 1  # the change list is trimmed, not grown forever
    assert d2.changes(3, cursor, 10)[0] == [("hot", d2.get(3, "hot"))]
    # bucket digests: equal copies agree, a missed write shows in exactly its bucket, fetch gets it
    a, b = KVData(), KVData()
    for k in "abcdefgh":
        a.put(5, k, R1)
        b.put(5, k, R1)
    assert a.sums(5) == b.sums(5) and any(a.sums(5))
    a.put(5, "c", R2)
    differ = [i for i, (x, y) in enumerate(zip(a.sums(5), b.sums(5))) if x != y]
    assert differ == [bucket_of("c")]
    fetched, done = a.scan(5, None, 100, buckets=set(differ))
    assert ("c", R2) in fetched and done and all(bucket_of(k) in differ for k, _ in fetched)
    for k, r in fetched:
        b.put(5, k, r)
    assert a.sums(5) == b.sums(5)
    assert KVData.replay(a.take_unsynced()).sums(5) == a.sums(5)  # the same digests in any process
    big = KVData()
    for k in "abcdef":
        big.put(0, k, Record(Version(1, "w"), "x" * 1000))
    items, done = big.scan(0, None, 100, max_bytes=2500)
    assert [k for k, _ in items] == ["a", "b"] and not done  # a batch stays near its byte budget
    items, done = big.scan(0, "e", 100, max_bytes=10)
    assert [k for k, _ in items] == ["f"] and done  # one record even when it alone is over


def _placement() -> Placement:
    return Placement(3, 7, "a", ("a", "b", "c"), ("a", "b", "c"), ("a", "b", "c"), ())


def _op(write: bool, value: str | None = "v") -> Operation:
    rids = iter(range(1, 100))
    return Operation("k", _placement(), Quorums(3), "c#1", lambda: next(rids), write=write, value=value)


def test_a_write_picks_a_version_above_what_a_read_quorum_reports() -> None:
    op = _op(True)
    sends = op.start()
    assert {d for d, _ in sends} == {"a", "b", "c"} and all(isinstance(m, Query) and m.epoch == 7 for _, m in sends)
    rid = sends[0][1].rid
    assert op.on_message("a", Found(rid, R2)) == []
    stores = op.on_message("b", Found(rid, R1))
    assert {d for d, _ in stores} == {"a", "b", "c"}
    record = stores[0][1].record
    assert record.version == Version(3, "c#1") and record.value == "v"
    op.on_message("a", Ack(stores[0][1].rid))
    assert op.outcome is None
    op.on_message("c", Ack(rid))  # an answer to the first phase's request id: ignored
    assert op.outcome is None
    op.on_message("c", Ack(stores[0][1].rid))
    assert op.outcome == "ok" and op.result == record


def test_a_read_writes_back_unless_a_quorum_already_holds_the_newest() -> None:
    op = _op(False)
    rid = op.start()[0][1].rid
    op.on_message("a", Found(rid, R2))
    back = op.on_message("b", Found(rid, R1))
    assert back and all(isinstance(m, Store) and m.record == R2 for _, m in back)
    op.on_message("a", Ack(back[0][1].rid))
    op.on_message("b", Ack(back[0][1].rid))
    assert op.outcome == "ok" and op.result == R2
    quick = _op(False)
    rid = quick.start()[0][1].rid
    quick.on_message("a", Found(rid, R2))
    assert quick.on_message("c", Found(rid, R2)) == [] and quick.outcome == "ok"


def test_a_stale_answer_refreshes_and_a_write_keeps_its_version() -> None:
    newer_placement = Placement(3, 9, "a", ("a", "b", "d"), ("a", "b", "d"), ("a", "b", "d"), ())
    asking = _op(True)
    rid = asking.start()[0][1].rid
    asking.on_message("c", Refused(rid, "stale", 9))
    again = asking.refresh(newer_placement)
    assert {d for d, _ in again} == {"a", "b", "d"} and all(isinstance(m, Query) and m.epoch == 9 for _, m in again)
    op = _op(True)
    rid = op.start()[0][1].rid
    op.on_message("a", Found(rid, None))
    stores = op.on_message("b", Found(rid, None))
    record = stores[0][1].record
    op.on_message("c", Refused(stores[0][1].rid, "stale", 9))
    assert op.stale and op.retry() == []
    again = op.refresh(newer_placement)
    # no second version (it could overtake a later write), and marked: a new owner still copying
    # refuses it for a key it doesn't hold yet
    assert {d for d, _ in again} == {"a", "b", "d"}
    assert all(m.record == record and m.epoch == 9 and m.refreshed for _, m in again)
    op.expire()
    assert op.outcome == "info"  # a Store went out: it may have happened
    never = _op(True)
    never.start()
    never.expire()
    assert never.outcome == "fail"


def _kits(n: int = 3):
    c = MemCluster([f"node-{i}" for i in range(1, n + 1)], seed=1)
    c.elect()
    first = sorted(c.kits)[0]
    assert c.submit(first, c.kits[first].bootstrap_command()).ok
    for nid in sorted(c.kits)[1:]:
        assert c.submit(nid, c.kits[nid].join_command()).ok
    return c


def test_the_server_fences_requests_by_partition_epoch_and_refuses_bad_requests() -> None:
    c = _kits()
    kit = c.kits["node-1"]
    server = KVServer(kit, config=ServerConfig())
    p = next(p for p in range(kit.state.config.partition_count) if "node-1" in kit.partition(p).holders)
    epoch = kit.partition(p).epoch
    server.handle("x", Store(1, p, epoch, "k", R1))
    assert server.take_outbox() == [("x", Ack(1))] and server.data.get(p, "k") == R1
    assert server.data.take_unsynced(), "a store is logged before it is acknowledged"
    server.handle("x", Store(2, p, epoch - 1, "k", R2))
    [(_, refused)] = server.take_outbox()
    assert isinstance(refused, Refused) and refused.reason == "stale" and server.data.get(p, "k") == R1
    server.handle("x", Query(3, p, epoch + 1, "k"))
    assert server.take_outbox()[0][1].reason == "behind"
    server.handle("x", Query(4, 10**6, epoch, "k"))
    assert server.take_outbox()[0][1].reason == "bad_request"
    server.data.take_unsynced()
    bad_text = "\ud800"  # a lone surrogate: msgpack and the log can't encode it
    for bad in (Set(5, "", "v"), Set(6, "k", "x" * (2 << 20)), Set(7, "k", "v", 1), Set(8, "k", bad_text),
                Set(9, bad_text, "v"), Set(10, "k", "\u00e9" * (600 << 10))):  # 1.2 MB as UTF-8
        server.handle("x", bad)
        [(_, answer)] = server.take_outbox()
        assert isinstance(answer, Refused) and answer.reason == "bad_request" and answer.detail
    assert server.data.take_unsynced() == []  # refused before anything was stored or logged


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        ServerConfig(strategy="eventual")
    with pytest.raises(ValueError):
        ServerConfig(batch=0)
