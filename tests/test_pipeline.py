"""The core's pipelines, driven directly: the Ready pipeline and the KV store's log-sync-send loop
with a sync runner the test completes by hand, and MemoryStorage's three-step sync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clusterkit.host.kv_pipeline import KVPipeline
from clusterkit.host.syncs import Done
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import ConfState, Entry, HardState, MemoryStorage, RaftConfig, StorageError
from clusterkit.raft.messages import AppendEntries


class ManualSyncs:
    """Syncs that end when the test says so."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], None], Done]] = []

    def start(self, work: Callable[[], None], done: Done) -> None:
        self.waiting.append((work, done))

    def finish(self, error: BaseException | None = None) -> None:
        work, done = self.waiting.pop(0)
        if error is None:
            work()
        done(error)


def _entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"x%d" % i) for i in range(lo, hi + 1)]


# ------------------------------------------------------------------ MemoryStorage
def test_a_record_is_durable_once_written_and_a_crash_before_loses_or_tears_it() -> None:
    s = MemoryStorage(ConfState(voters=("a",)))
    s.append(_entries(1, 3))
    s.sync()
    s.append(_entries(4, 6))
    s.set_hard_state(HardState(term=1, vote="a", commit=3))
    record = s.prepare_sync()
    assert record == 2 and s.unsynced_writes == 2
    with pytest.raises(StorageError):
        s.prepare_sync()  # one record at a time
    s.crash()
    assert s.last_index() == 3  # the record under way was never written
    s.append(_entries(4, 6))
    record = s.prepare_sync()
    s.crash(keep_writes=0, keep_entries=2)
    assert s.last_index() == 5  # torn inside the record: a prefix of its entries
    s.append(_entries(6, 7))
    record = s.prepare_sync()
    s.write_record(record)
    s.append(_entries(8, 8))  # a write after the record: not in it
    assert s.unsynced_writes == 1
    s.crash()
    assert s.last_index() == 7  # written: kept, though finish_sync never ran


def test_finish_sync_drops_only_the_records_writes() -> None:
    s = MemoryStorage()
    s.append(_entries(1, 2))
    record = s.prepare_sync()
    s.write_record(record)
    s.finish_sync(record)
    assert s.unsynced_writes == 0 and s.prepare_sync() is None
    s.append(_entries(3, 3))
    s.crash()
    assert s.last_index() == 2


# ------------------------------------------------------------------ the Ready pipeline
def _net_with_manual_disk(leader: bool) -> tuple[MemNetwork, ManualSyncs, str, str]:
    """An elected network whose leader's (or a follower's) disk syncs by hand: (net, its runner,
    the leader, the node with that disk)."""
    net = MemNetwork(["a", "b", "c"], seed=1, config=RaftConfig(election_ticks=6))
    lead = net.elect()
    nid = lead if leader else next(n for n in net.ids if n != lead)
    manual = ManualSyncs()
    net.pipelines[nid].syncs = manual
    return net, manual, lead, nid


def test_the_leaders_appends_leave_before_its_sync_and_the_rest_after() -> None:
    net, manual, lead, _ = _net_with_manual_disk(leader=True)
    net.nodes[lead].propose(b"v")
    net.process(lead)
    assert len(manual.waiting) == 1 and net.pipelines[lead].syncing
    assert any(isinstance(m, AppendEntries) for m in net.inflight)  # early: before the sync ends
    net.nodes[lead].propose(b"w")
    net.process(lead)  # a sync is under way: the next Ready waits for it
    assert len(manual.waiting) == 1
    manual.finish()
    assert len(manual.waiting) == 1  # the pipeline went on with the next Ready
    manual.finish()
    assert not net.pipelines[lead].syncing


def test_a_sync_of_a_crashed_life_is_ignored_and_the_new_life_drains() -> None:
    net, manual, lead, nid = _net_with_manual_disk(leader=False)
    net.propose(lead, b"v")
    net.deliver_all()
    assert net.pipelines[nid].syncing
    stale = manual.waiting.pop(0)
    net.crash(nid)
    net.restart(nid)  # a new life: its Readies don't wait for the dead one's sync
    stale[1](None)  # the old sync's callback, late: nothing of it is finished
    while manual.waiting:
        manual.finish()
    assert net.nodes[nid].up and not net.pipelines[nid].syncing
    net.pipelines[nid].syncs = net.disks[nid]  # memnet's own disk again
    assert net.run_until(lambda: b"v" in net.nodes[nid].applied_data(), 50)


def test_a_failed_sync_stops_the_pipeline_and_tells_the_driver() -> None:
    net, manual, lead, nid = _net_with_manual_disk(leader=False)
    failures: list[BaseException] = []
    net.pipelines[nid].failed = failures.append
    net.propose(lead, b"v")
    net.deliver_all()
    manual.finish(OSError("disk gone"))
    assert [str(e) for e in failures] == ["disk gone"] and not net.pipelines[nid].syncing


# ------------------------------------------------------------------ the KV loop
class FakeData:
    def __init__(self) -> None:
        self.lsn = 0
        self.unsynced: list[Any] = []
        self.synced_lsn = 0

    def change(self, entry: Any) -> None:
        self.lsn += 1
        self.unsynced.append(entry)

    def take_unsynced(self) -> list[Any]:
        out, self.unsynced = self.unsynced, []
        return out

    def mark_synced(self, lsn: int) -> None:
        self.synced_lsn = max(self.synced_lsn, lsn)

    def snapshot(self) -> list[Any]:
        return []


class FakeServer:
    def __init__(self) -> None:
        self.data = FakeData()
        self.outbox: list[Any] = []
        self.early: list[Any] = []

    def take_outbox(self) -> list[Any]:
        out, self.outbox = self.outbox, []
        return out

    def take_early(self) -> list[Any]:
        out, self.early = self.early, []
        return out


class FakeLog:
    def __init__(self) -> None:
        self.records: list[list[Any]] = []
        self.rewrites = 0
        self.rewrite_due = False

    def encode_record(self, entries: list[Any]) -> list[Any]:
        return list(entries)

    def write_record(self, record: list[Any]) -> None:
        self.records.append(record)

    def wants_rewrite(self) -> bool:
        return self.rewrite_due

    def rewrite(self, entries: Any) -> int:
        self.rewrites += 1
        self.rewrite_due = False
        return len(list(entries))


def test_kv_answers_leave_after_their_record_and_early_ones_at_once() -> None:
    server, disk, manual, sent = FakeServer(), FakeLog(), ManualSyncs(), []
    kv = KVPipeline(server, disk, sent.extend, manual)
    server.data.change("put k1")
    server.outbox.append(("c1", "ok k1"))
    kv.kick()
    assert sent == [] and kv.writing
    server.data.change("put k2")  # handled while the record is written: waits for the next one
    server.outbox.append(("c2", "ok k2"))
    server.early.append(("c3", "read of durable data"))
    kv.kick()
    assert sent == [("c3", "read of durable data")]
    manual.finish()
    assert disk.records == [["put k1"]] and sent[-1] == ("c1", "ok k1") and server.data.synced_lsn == 1
    disk.rewrite_due = True
    manual.finish()  # the second record; then a rewrite, with no record beside it
    assert disk.records[-1] == ["put k2"] and sent[-1] == ("c2", "ok k2") and kv.writing
    manual.finish()
    assert disk.rewrites == 1 and not kv.writing and kv.stats.rewrites == 1


def test_a_failed_kv_record_sends_nothing_of_it() -> None:
    server, disk, manual, sent, failures = FakeServer(), FakeLog(), ManualSyncs(), [], []
    kv = KVPipeline(server, disk, sent.extend, manual, failed=failures.append)
    server.data.change("put k")
    server.outbox.append(("c", "ok"))
    kv.kick()
    manual.finish(OSError("EIO"))
    assert sent == [] and len(failures) == 1 and server.data.synced_lsn == 0
    server.outbox.append(("c", "later"))
    kv.kick()  # stopped for good: never answers what may not be durable
    assert sent == []
