"""Snapshots: storage, log compaction, chunked InstallSnapshot, restart from a snapshot."""

from __future__ import annotations

import random

import pytest

from clusterkit.check import RaftSafetyMonitor
from clusterkit.host.node import unwrap_snapshot
from clusterkit.mem.network import MemNetwork, decode_applied
from clusterkit.raft import (
    ConfigError,
    ConfState,
    Entry,
    HardState,
    InstallSnapshot,
    MemoryStorage,
    RaftConfig,
    RaftNode,
    Snapshot,
    SnapshotMeta,
    SnapshotResponse,
    StorageError,
)

from .conftest import drain, make_node

SMALL = RaftConfig(election_ticks=5, snapshot_threshold=20, snapshot_trailing=5, snapshot_chunk_bytes=64)


def same_state(net: MemNetwork) -> None:
    """Every live node's state machine holds the same entries in the same order."""
    ref = None
    for node in net.nodes.values():
        if node.raft is None:
            continue
        mine = [(e.index, e.term, e.data, e.type) for e in node.applied]
        if ref is None:
            ref = mine
        n = min(len(ref), len(mine))
        assert mine[:n] == ref[:n]


def commit_n(net: MemNetwork, n: int, prefix: bytes = b"w") -> None:
    for i in range(n):
        leader = net.leader()
        assert leader is not None
        net.propose(leader, prefix + b"%d" % i)
        net.deliver_all()


# ----------------------------------------------------------------- storage
def test_storage_snapshot_compact_and_crash():
    s = MemoryStorage(ConfState(voters=("a",)))
    s.append([Entry(1, i, b"e%d" % i) for i in range(1, 11)])
    s.set_hard_state(HardState(1, "a", 10))
    snap = Snapshot(SnapshotMeta(8, 1, ConfState(("a",))), b"state@8")
    s.save_snapshot(snap)
    s.compact(6)
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 10, 1)
    with pytest.raises(StorageError, match="out of range"):
        s.entries(6, 8)
    with pytest.raises(StorageError, match="snapshot covers 8"):
        s.compact(9)
    s.crash()  # nothing was synced: all of it is gone
    assert s.first_index() == 1 and s.last_index() == 0 and s.snapshot().meta.index == 0
    s.append([Entry(1, i, b"e%d" % i) for i in range(1, 11)])
    s.save_snapshot(snap)
    s.compact(6)
    s.sync()
    s.crash()
    assert s.first_index() == 7 and s.snapshot() == snap
    s.apply_snapshot(Snapshot(SnapshotMeta(20, 3, ConfState(("a", "b"))), b"state@20"))
    assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 3)
    s.append([Entry(3, 21, b"x")])
    s.append([Entry(3, 15, b"old")])  # below the snapshot: already covered, nothing changes
    assert s.last_index() == 21


def test_a_compacted_log_without_a_snapshot_is_refused_at_start():
    class Broken(MemoryStorage):
        def first_index(self) -> int:
            return 5  # claims a compaction, but snapshot() is empty

    s = Broken(ConfState(voters=("a",)))
    with pytest.raises(ConfigError, match="compacted its log to 4 but its snapshot covers only 0"):
        RaftNode("a", s)


def test_storage_refuses_an_older_snapshot():
    s = MemoryStorage(ConfState(voters=("a",)))
    s.apply_snapshot(Snapshot(SnapshotMeta(5, 1, ConfState(("a",)))))
    with pytest.raises(StorageError, match="older"):
        s.save_snapshot(Snapshot(SnapshotMeta(3, 1, ConfState(("a",)))))


# ------------------------------------------------------------ compaction
def test_compact_validates_its_arguments():
    node = make_node("a", voters=("a",))
    node.campaign()
    for i in range(5):
        node.propose(b"%d" % i)
    drain(node)
    assert node.log.applied == 6
    with pytest.raises(StorageError, match="only 6 applied"):
        node.compact(7, b"")
    with pytest.raises(TypeError):
        node.compact(5, "text")  # type: ignore[arg-type]
    node.compact(5, b"fsm@5")
    with pytest.raises(StorageError, match="already covers 5"):
        node.compact(4, b"")


def test_compaction_keeps_the_trailing_entries_and_restart_restores():
    cfg = RaftConfig(snapshot_threshold=0, snapshot_trailing=3)
    node = make_node("a", voters=("a",), config=cfg)
    node.campaign()
    for i in range(10):
        node.propose(b"%d" % i)
    drain(node)
    snap = node.compact(9, b"fsm@9")
    assert snap.meta.index == 9 and snap.meta.conf == ConfState(("a",))
    rd = node.ready()
    assert rd.compaction is not None and rd.compaction.compact_to == 6
    node.storage.save_snapshot(rd.compaction.snapshot)
    node.storage.compact(rd.compaction.compact_to)
    node.storage.sync()
    node.advance(rd)
    assert node.log.offset == 6 and node.storage.first_index() == 7
    node.propose(b"after")
    drain(node)

    again = RaftNode("a", node.storage, cfg, rng=random.Random(3), applied=9)
    assert again.snapshot == snap
    assert again.log.offset == 6 and again.log.last_index() == 12 and again.log.committed == 12
    rd = again.ready()
    assert [e.index for e in rd.committed_entries] == [10, 11, 12]  # only what follows the snapshot


def test_snapshot_due_follows_the_threshold():
    node = make_node("a", voters=("a",), config=RaftConfig(snapshot_threshold=4))
    node.campaign()
    drain(node)
    for i in range(3):
        node.propose(b"%d" % i)
        drain(node)
    assert node.snapshot_due()  # noop + 3 entries applied
    node.compact(node.log.applied, b"s")
    assert not node.snapshot_due()


# ------------------------------------------------------- InstallSnapshot
def test_far_behind_follower_catches_up_by_snapshot():
    net = MemNetwork(["n1", "n2", "n3"], seed=3, config=SMALL, monitor=RaftSafetyMonitor())
    net.elect()
    lagging = next(n for n in net.ids if n != net.leader())
    net.crash(lagging, synced=True)
    commit_n(net, 200)
    leader = net.nodes[net.leader()].raft
    assert leader.log.offset > 100  # the entries the lagging node needs are gone
    net.restart(lagging)
    assert net.run_until(lambda: net.nodes[lagging].raft.log.applied == leader.log.committed, 200)
    assert net.nodes[lagging].snapshots_installed >= 1
    same_state(net)
    net.check_logs()
    assert [e.data for e in net.nodes[lagging].applied if e.data][:3] == [b"w0", b"w1", b"w2"]


def test_chunked_transfer_survives_loss_and_duplicates():
    cfg = RaftConfig(election_ticks=8, snapshot_threshold=30, snapshot_trailing=0, snapshot_chunk_bytes=16)
    net = MemNetwork(["n1", "n2", "n3"], seed=5, config=cfg, monitor=RaftSafetyMonitor())
    net.elect()
    lagging = next(n for n in net.ids if n != net.leader())
    net.crash(lagging, synced=True)
    commit_n(net, 100, prefix=b"payload-")
    net.restart(lagging)
    net.drop_rate, net.dup_rate = 0.3, 0.1
    chunks = 0
    original = net._send

    def count(m):
        nonlocal chunks
        chunks += isinstance(m, InstallSnapshot)
        original(m)

    net._send = count  # type: ignore[method-assign]
    lead = net.nodes[net.leader()].raft
    assert net.run_until(lambda: net.nodes[lagging].raft.log.applied >= lead.log.committed, 600)
    assert chunks > 20  # many small chunks, some of them resent
    same_state(net)


def test_interrupted_transfer_restarts_after_follower_restart():
    cfg = RaftConfig(election_ticks=8, snapshot_threshold=30, snapshot_trailing=0, snapshot_chunk_bytes=32)
    net = MemNetwork(["n1", "n2", "n3"], seed=9, config=cfg, monitor=RaftSafetyMonitor())
    leader = net.elect()
    lagging = next(n for n in net.ids if n != leader)
    net.crash(lagging, synced=True)
    commit_n(net, 80)
    net.restart(lagging)
    # Deliver a few chunks, then crash the receiver mid-transfer: its partial buffer is lost.
    net.tick(leader)
    for _ in range(30):
        net.deliver(0)
    follower = net.nodes[lagging].raft
    assert follower._snap_buffer is not None and 0 < follower._snap_buffer.offset
    net.crash(lagging)
    net.restart(lagging)
    lead = net.nodes[leader].raft
    assert net.run_until(lambda: net.nodes[lagging].raft.log.applied >= lead.log.committed, 300)
    same_state(net)


def test_stale_and_out_of_order_chunks_get_the_expected_offset():
    node = make_node("b")
    conf = (["a", "b", "c"], [])
    node.step(InstallSnapshot(2, "a", "b", 50, 2, *conf, 10, 0, b"01234"))
    (resp,) = drain(node)
    assert isinstance(resp, SnapshotResponse) and resp.offset == 5 and not resp.done
    node.step(InstallSnapshot(2, "a", "b", 50, 2, *conf, 10, 7, b"789"))  # a gap: ask again from 5
    (resp,) = drain(node)
    assert resp.offset == 5
    node.step(InstallSnapshot(2, "a", "b", 50, 2, *conf, 10, 5, b"56789"))
    msgs = []
    while node.has_ready():
        rd = node.ready()
        if rd.snapshot is not None:
            assert rd.snapshot.data == b"0123456789" and rd.snapshot.meta.index == 50
        node.storage.apply_snapshot(rd.snapshot) if rd.snapshot else None
        msgs += rd.messages
        node.advance(rd)
    assert msgs[-1].done and node.log.committed == 50 and node.log.applied == 50
    assert node.voters == ("a", "b", "c")


def test_snapshot_of_a_held_entry_just_moves_commit():
    node = make_node("b")
    node.step(InstallSnapshot(1, "a", "b", 0, 0, ["a", "b", "c"], [], 0, 0, b""))
    (resp,) = drain(node)
    assert resp.done and node.snapshot is None


def test_restart_from_snapshot_replays_only_the_tail():
    net = MemNetwork(["n1", "n2", "n3"], seed=2, config=SMALL, monitor=RaftSafetyMonitor())
    net.elect()
    commit_n(net, 60)
    nid = net.ids[0]
    before = [(e.index, e.data) for e in net.nodes[nid].applied]
    snap_index = net.nodes[nid].storage.snapshot().meta.index
    assert snap_index > 0
    net.crash(nid, synced=True)
    net.restart(nid)
    raft = net.nodes[nid].raft
    assert raft.snapshot is not None and raft.snapshot.meta.index == snap_index
    assert len(decode_applied(unwrap_snapshot(raft.snapshot.data)[1])) == snap_index
    net.run_until(lambda: len(net.nodes[nid].applied) >= len(before), 50)
    assert [(e.index, e.data) for e in net.nodes[nid].applied][: len(before)] == before
