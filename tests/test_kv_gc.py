"""Tombstone collection and fresh copies, sans-IO: three KV servers on a settled in-memory cluster,
their messages delivered by hand."""

from __future__ import annotations

import msgpack
import pytest

from clusterkit.kv.data import KVData
from clusterkit.kv.messages import Ack, Collect, Found, Have, ProtocolError, Query, Refused, Store, decode
from clusterkit.kv.records import Record, Version
from clusterkit.kv.server import KVServer, ServerConfig
from clusterkit.mem.cluster import MemCluster
from net.kv_disk import _valid
from tests.test_kv_tombstones import _pump  # (ticks every server, delivers every message)

GC = ServerConfig(gc_ticks=4, repair_ticks=1000)


def _settled():
    c = MemCluster(["node-1", "node-2", "node-3"], seed=1)
    c.elect()
    assert c.submit("node-1", c.kits["node-1"].bootstrap_command()).ok
    for nid in ("node-2", "node-3"):
        assert c.submit(nid, c.kits[nid].join_command()).ok
    for nid, kit in c.kits.items():  # nothing stored yet: every copy is trivially complete
        for p in range(kit.state.config.partition_count):
            if nid in kit.partition(p).incoming:
                assert c.submit(nid, kit.confirm_copy_command(p)).ok
    kit = c.kits["node-1"]
    assert not kit.state.migrating
    servers = {nid: KVServer(k, config=GC, hooks=False) for nid, k in sorted(c.kits.items())}
    return c, servers


def _key_of(kit, p: int) -> str:
    return next(k for k in (f"k{i}" for i in range(10_000)) if kit.state.config.hash_config.number(k) == p)


def test_a_tombstone_every_owner_holds_is_collected_and_nothing_older_comes_back() -> None:
    c, servers = _settled()
    kit = c.kits["node-1"]
    p = next(q for q in range(kit.state.config.partition_count) if kit.partition(q).primary == "node-1")
    key, other = _key_of(kit, p), "zz-never-deleted"
    epoch = kit.partition(p).epoch
    old, tomb = Record(Version(3, "w1"), "old"), Record(Version(4, "d1"), None)
    for s in servers.values():
        s.data.put(p, key, tomb)
    # one round to see the tombstone, the next (gc_ticks later) to collect it
    _pump(servers, rounds=2 * GC.gc_ticks + 1)
    assert all(s.data.get(p, key) is None for s in servers.values()), "collected on every owner"
    floors = {s.data.floor(p) for s in servers.values()}
    assert len(floors) == 1 and floors.pop() > tomb.version.counter
    assert servers["node-1"].stats.collected == 1
    floor = servers["node-2"].data.floor(p)
    # a Store read before the collection (older floor), of a version older than the delete: refused
    s2 = servers["node-2"]
    s2.handle("client", Store(1, p, epoch, key, old, floor - 1))
    [(_, answer)] = s2.take_outbox()
    assert isinstance(answer, Refused) and answer.reason == "collected" and s2.data.get(p, key) is None
    # the same old floor for a key no collection touched: taken (the rounds since are remembered)
    s2.handle("client", Store(2, p, epoch, other, old, floor - 1))
    assert s2.take_outbox() == [("client", Ack(2))] and s2.data.get(p, other) == old
    # a query reports the floor: a new write's version goes above it
    s2.handle("client", Query(3, p, epoch, key))
    [(_, found)] = s2.take_outbox()
    assert isinstance(found, Found) and found.record is None and found.floor == floor
    # a restarted copy doesn't remember the rounds: any older-floor Store of an absent key is refused
    s2.data.take_unsynced()
    entries = [e for e in s2.data.compacted()]
    assert all(_valid(list(e)) for e in entries)
    again = KVServer(c.kits["node-2"], KVData.replay(entries), GC, hooks=False, incarnation=1)
    assert again.data.floor(p) == floor and again.data.get(p, key) is None
    again.handle("client", Store(4, p, epoch, "yet-another", old, floor - 1))
    [(_, answer)] = again.take_outbox()
    assert isinstance(answer, Refused) and answer.reason == "collected"


def test_a_tombstone_one_owner_lacks_is_kept() -> None:
    c, servers = _settled()
    kit = c.kits["node-1"]
    p = next(q for q in range(kit.state.config.partition_count) if kit.partition(q).primary == "node-1")
    key = _key_of(kit, p)
    tomb = Record(Version(4, "d1"), None)
    for nid in ("node-1", "node-2"):  # node-3 missed the delete (and anti-entropy is off here)
        servers[nid].data.put(p, key, tomb)
    _pump(servers, rounds=3 * GC.gc_ticks)
    assert servers["node-1"].data.get(p, key) == tomb and servers["node-1"].data.floor(p) == 0


def test_collect_is_idempotent_and_leaves_newer_writes() -> None:
    c, servers = _settled()
    s = servers["node-1"]
    p = 0
    tomb, newer = Record(Version(4, "d"), None), Record(Version(9, "w"), "new")
    s.data.put(p, "a", tomb)
    s.data.put(p, "b", newer)
    for rid in (1, 2):  # a Collect delivered twice; b's tombstone was overwritten since
        s.handle("node-2", Collect(rid, p, 10, [("a", tomb), ("b", Record(Version(5, "d"), None))]))
        assert s.take_outbox() == [("node-2", Ack(rid))]
    assert s.data.get(p, "a") is None and s.data.get(p, "b") == newer and s.data.floor(p) == 10


def test_a_copy_starts_from_nothing_unless_restarted_at_the_same_placement() -> None:
    d = KVData()
    d.put(3, "stale", Record(Version(1, "x"), "from an earlier ownership"))
    assert d.start_copy(3, epoch=7, cluster_epoch=9)
    assert d.get(3, "stale") is None
    d.put(3, "fresh", Record(Version(2, "y"), "copied"))
    replayed = KVData.replay(d.take_unsynced())
    assert not replayed.start_copy(3, epoch=7, cluster_epoch=9)  # a restart during that copy keeps it
    assert replayed.get(3, "fresh") is not None
    assert not replayed.start_copy(3, epoch=8, cluster_epoch=5)  # a map older than one seen: left alone
    assert replayed.start_copy(3, epoch=8, cluster_epoch=10) and replayed.get(3, "fresh") is None


def test_a_new_owner_still_copying_refuses_a_refreshed_store_of_a_key_it_lacks() -> None:
    """A write whose version was chosen at an older placement may be older than a delete its new
    owner's sources collected since; a new owner that hasn't copied the key yet can't tell."""
    c, servers = _settled()
    kit = c.kits["node-1"]
    s = servers["node-1"]
    p = 0
    here = s.placement(p)
    s.placement = lambda q, here=here: here.__class__(  # node-1 seen as still copying p
        here.number, here.epoch, here.primary, here.serving, tuple(n for n in here.holders if n != "node-1"),
        here.owners, ("node-1",))
    old = Record(Version(3, "w"), "old")
    s.handle("x", Store(1, p, here.epoch, "absent-here", old, 0, True))
    [(_, answer)] = s.take_outbox()
    assert isinstance(answer, Refused) and answer.reason == "collected" and s.data.get(p, "absent-here") is None
    s.handle("x", Store(2, p, here.epoch, "fresh", old, 0, False))  # chosen at this placement: fine
    assert s.take_outbox() == [("x", Ack(2))]
    s.data.put(p, "held", Record(Version(1, "v"), "x"))
    s.handle("x", Store(3, p, here.epoch, "held", old, 0, True))  # a key it holds: merged as ever
    assert s.take_outbox() == [("x", Ack(3))] and s.data.get(p, "held") == old
    assert kit.state.config is not None


def test_bad_collection_messages_are_refused_and_change_nothing() -> None:
    c, servers = _settled()
    s = servers["node-1"]
    tomb = Record(Version(4, "d"), None)
    s.data.put(0, "a", tomb)
    s.data.take_unsynced()
    for msg in (Collect(1, 10**6, 99, [("a", tomb)]), Have(2, 10**6, 1, [("a", tomb)]), Have(3, 0, 10**6, [])):
        s.handle("x", msg)
        [(_, answer)] = s.take_outbox()
        assert isinstance(answer, Refused) and answer.reason in ("bad_request", "behind"), (msg, answer)
    assert s.data.get(0, "a") == tomb and s.data.floor(0) == 0 and s.data.take_unsynced() == []
    for raw in ([16, 1, 0, 1, [["a", [1, "w"]]]], [17, 1, "x", 0], [18, 1, 0, "floor", []]):  # malformed
        with pytest.raises(ProtocolError):
            decode(msgpack.packb(raw))
