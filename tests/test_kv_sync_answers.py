"""The KV server's fast paths that need its driver's help: answers sent before a sync only when
they report synced data, and ASYNC replication in one batch per flush."""

from __future__ import annotations

from clusterkit.kv.data import KVData
from clusterkit.kv.messages import Ack, Found, Query, Refused, Replicate, Replicated, Result, Set, Store, encode
from clusterkit.kv.records import Record, Version
from clusterkit.kv.server import MAX_VALUE_BYTES, KVServer, ServerConfig

from .test_kv_core import _kits


def _server(strategy: str = "sync") -> tuple[KVServer, int, int]:
    kit = _kits().kits["node-1"]
    server = KVServer(kit, config=ServerConfig(strategy=strategy))
    p = next(p for p in range(kit.state.config.partition_count) if kit.partition(p).primary == "node-1")
    return server, p, kit.partition(p).epoch


def test_a_found_leaves_before_the_sync_only_when_what_it_reports_is_synced() -> None:
    server, p, epoch = _server()
    server.answer_early = True
    r1, r2 = Record(Version(1, "w"), "one"), Record(Version(2, "w"), "two")
    server.handle("c", Query(1, p, epoch, "k"))  # never written: nothing to wait for
    assert server.take_early() == [("c", Found(1, None))]
    server.handle("c", Store(2, p, epoch, "k", r1))
    server.handle("c", Query(3, p, epoch, "k"))  # reports r1, not synced yet: waits for the sync
    assert server.take_early() == []
    lsn = server.data.lsn
    assert server.data.take_unsynced() and not server.data.durable(p, "k")
    assert server.take_outbox() == [("c", Ack(2)), ("c", Found(3, r1))]
    server.data.mark_synced(lsn)  # the driver synced those entries
    assert server.data.durable(p, "k")
    server.handle("c", Query(4, p, epoch, "k"))
    assert server.take_early() == [("c", Found(4, r1))]
    server.handle("c", Store(5, p, epoch, "k", r2))  # changed again: not durable until the next sync
    server.handle("c", Query(6, p, epoch, "k"))
    server.handle("c", Query(7, p, epoch, "other"))
    assert server.take_early() == [("c", Found(7, None))]
    assert server.take_outbox() == [("c", Ack(5)), ("c", Found(6, r2))]
    # early answers nobody took leave with the outbox, first; without answer_early none is early
    server.handle("c", Query(8, p, epoch, "other"))
    assert server.take_outbox() == [("c", Found(8, None))]
    plain, p2, epoch2 = _server()
    plain.handle("c", Query(1, p2, epoch2, "k"))
    assert plain.take_early() == [] and plain.take_outbox() == [("c", Found(1, None))]
    # data replayed from the synced log is durable
    assert KVData.replay(server.data.compacted()).durable(p, "k")


def test_async_writes_handled_before_a_flush_replicate_in_one_message_per_peer() -> None:
    server, p, _epoch = _server("async")
    number = server.kit.state.config.hash_config.number
    keys = [k for k in (f"key-{i}" for i in range(2000)) if number(k) == p][:6]
    q = next(n for n in range(server.kit.state.config.partition_count)
             if n != p and server.placement(n).primary == "node-1" and server.placement(n).serving == server.placement(p).serving)
    other = [k for k in (f"other-{i}" for i in range(5000)) if number(k) == q][:2]
    assert len(keys) == 6 and len(other) == 2
    for i, key in enumerate(keys[:3] + other + keys[3:]):
        server.handle("c", Set(i + 1, key, "v"))
    out = server.take_outbox()
    assert [msg.rid for _dst, msg in out if isinstance(msg, Result)] == [1, 2, 3, 4, 5, 6, 7, 8]
    replicates = [(dst, msg) for dst, msg in out if isinstance(msg, Replicate)]
    # one per peer for the eight writes of two partitions, each partition's in write order
    assert sorted(dst for dst, _msg in replicates) == sorted(n for n in server.placement(p).serving if n != "node-1")
    for _dst, msg in replicates:
        assert msg.partitions == [p, q] and msg.counts == [6, 2]
        assert [k for k, _r in msg.items] == keys + other
    assert server.take_outbox() == []


def test_an_answered_request_is_answered_again_for_at_least_ten_timeouts_then_forgotten() -> None:
    server, p, _epoch = _server("async")
    number = server.kit.state.config.hash_config.number
    key = next(k for k in (f"key-{i}" for i in range(2000)) if number(k) == p)
    server.handle("c", Set(1, key, "v"))
    [answer] = [msg for _dst, msg in server.take_outbox() if isinstance(msg, Result)]
    server.handle("c", Set(1, key, "v"))  # a duplicate: the same answer, not a second write
    assert [msg for _dst, msg in server.take_outbox()] == [answer]
    assert server.request_state("c", 1) == answer
    window = 10 * server.config.op_timeout_ticks
    for _ in range(window):
        server.tick()
    assert server.request_state("c", 1) == answer  # still within the window
    server.take_outbox()  # (the Replicates resent to peers that never answer)
    server.handle("c", Set(1, key, "v"))
    assert [msg for _dst, msg in server.take_outbox() if not isinstance(msg, Replicate)] == [answer]
    for _ in range(window):
        server.tick()
    assert server.request_state("c", 1) is False and not server._answers and not server._older_answers
    assert not server._in_progress


def test_a_replicate_is_taken_per_partition_and_what_was_not_taken_is_sent_again_or_dropped() -> None:
    primary, p, _epoch = _server("async")
    kit = primary.kit
    # a copy on another node of the same cluster map (every node serves every partition: RF 3 of 3)
    replica = KVServer(_kits().kits["node-2"], config=ServerConfig(strategy="async"))
    number = kit.state.config.hash_config.number
    q = next(n for n in range(kit.state.config.partition_count) if n != p and primary.placement(n).primary == "node-1")
    kp, kp2 = [k for k in (f"key-{i}" for i in range(2000)) if number(k) == p][:2]
    kq = next(k for k in (f"key-{i}" for i in range(2000)) if number(k) == q)
    primary.handle("c", Set(1, kp, "a"))
    primary.handle("c", Set(2, kq, "b"))
    [(_dst, rep)] = [(d, m) for d, m in primary.take_outbox() if isinstance(m, Replicate) and d == "node-2"]
    assert rep.partitions == [p, q] and rep.counts == [1, 1]
    replica.handle("node-1", rep)
    assert replica.take_outbox() == [("node-1", Ack(rep.rid))] and replica.data.get(q, kq).value == "b"
    primary.handle("node-2", Ack(rep.rid))
    # the replica collected tombstones in p since (a floor the primary never saw, no rounds kept):
    # p's record of a key it lacks (one collected there, for all it knows) comes back to be sent
    # again once the primary took that floor; q's is taken
    replica.data.raise_floor(p, 50)
    primary.handle("c", Set(3, kp2, "a2"))
    primary.handle("c", Set(4, kq, "b2"))
    [rep] = [m for d, m in primary.take_outbox() if isinstance(m, Replicate) and d == "node-2"]
    replica.handle("node-1", rep)
    [(_dst, answer)] = replica.take_outbox()
    assert answer == Replicated(rep.rid, [p], [50], []) and replica.data.get(q, kq).value == "b2"
    assert replica.data.get(p, kp2) is None
    primary.handle("node-2", answer)
    assert primary.data.floor(p) == 50
    [rep] = [m for d, m in primary.take_outbox() if isinstance(m, Replicate) and d == "node-2"]
    assert rep.partitions == [p] and rep.floors == [50] and [k for k, _r in rep.items] == [kp2]
    replica.handle("node-1", rep)
    assert replica.take_outbox() == [("node-1", Ack(rep.rid))] and replica.data.get(p, kp2).value == "a2"
    primary.handle("node-2", Ack(rep.rid))
    # a partition outside the map is dropped (never sent again); a malformed one refused whole
    replica.handle("node-1", Replicate(77, [q, 10_000], [0, 0], [0, 1], [("x", Record(Version(1, "w"), "v"))]))
    assert replica.take_outbox() == [("node-1", Replicated(77, [], [], [10_000]))]
    replica.handle("node-1", Replicate(78, [q], [0], [2], [("x", Record(Version(1, "w"), "v"))]))
    [(_dst, refused)] = replica.take_outbox()
    assert isinstance(refused, Refused) and refused.reason == "bad_request" and replica.data.get(q, "x") is None
    assert "node-2" not in primary._busy_peers and primary.stats.replicated == 2 + 2  # (node-3 never answered)


def test_a_replicate_is_capped_by_bytes_so_large_values_never_make_a_frame_too_large() -> None:
    # (found by review: 80 writes of 1 MiB values in one flush made one 80 MiB Replicate, which a
    # peer refuses as oversized, and the retry rebuilt the same one forever)
    server, _p, _epoch = _server("async")
    kit = server.kit
    number = kit.state.config.hash_config.number
    mine = [p for p in range(kit.state.config.partition_count) if kit.partition(p).primary == "node-1"]
    value = "x" * (MAX_VALUE_BYTES - 1)
    keys = [k for k in (f"key-{i}" for i in range(100_000)) if number(k) in mine][:80]
    for i, key in enumerate(keys):
        server.handle("client", Set(i + 1, key, value))
    out = server.take_outbox()
    for peer in ("node-2", "node-3"):
        reps = [m for d, m in out if isinstance(m, Replicate) and d == peer]
        assert max(len(encode(m)) for m in reps) <= server.config.batch_bytes + MAX_VALUE_BYTES + 4096
        sent = [k for m in reps for k, _r in m.items]
        assert sorted(sent) == sorted(keys[:len(sent)]) and len(sent) >= 4  # oldest first, and several
        # what is in flight is answered: the rest follows, one capped message at a time
        while reps:
            for m in reps:
                server.handle(peer, Ack(m.rid))
            reps = [m for d, m in server.take_outbox() if isinstance(m, Replicate) and d == peer]
            sent += [k for m in reps for k, _r in m.items]
        assert sorted(sent) == sorted(keys)
    assert server.replication_backlog() == 0


def test_merging_no_records_creates_no_partition() -> None:
    data = KVData()
    assert data.put_many(3, []) == 0 and 3 not in data.parts and not data.take_unsynced()
