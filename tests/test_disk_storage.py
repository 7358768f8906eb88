"""DiskStorage (net/disk.py): MemoryStorage's contract on disk, restarts, torn tails, corruption,
snapshot files, the directory lock, and real SIGKILLs of a process that writes and syncs."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterkit.host import AppliedLog, NodeHost
from clusterkit.net import disk
from clusterkit.net.disk import DataDirLocked, DiskStorage
from clusterkit.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    RaftConfig,
    RaftNode,
    Snapshot,
    SnapshotMeta,
    StorageError,
)
from clusterkit.raft.storage import write_ready

from .conftest import drain

ROOT = Path(__file__).resolve().parents[1]
A = ConfState(voters=("a",))
LOGGER = "clusterkit.net.disk"


def image(s: Any) -> tuple:
    """Everything a storage tells the core, as one comparable value."""
    first, last = s.first_index(), s.last_index()
    ents = [(e.term, e.index, e.data, int(e.type)) for e in s.entries(first, last + 1)]
    return s.initial_state(), s.snapshot(), first, last, s.term(first - 1), ents


def records(path: Path) -> list[tuple[int, int]]:
    """(start, end) of each record of a log file, by its framing (header: mark, length, crc)."""
    raw = path.read_bytes()
    out, pos = [], disk._HEADER_BYTES
    while pos + 12 <= len(raw):
        length = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        out.append((pos, pos + 12 + length))
        pos += 12 + length
    return out


def flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x5A
    path.write_bytes(bytes(raw))


# ----------------------------------------------------------------- the two backends
class Backend:
    """Makes a storage, and crashes (unsynced writes lost) or cleanly restarts it."""

    name = ""

    def make(self, conf_state: ConfState | None = None) -> Any:
        raise NotImplementedError

    def crash(self, s: Any) -> Any:
        raise NotImplementedError

    def restart(self, s: Any) -> Any:
        raise NotImplementedError


class Memory(Backend):
    name = "memory"

    def make(self, conf_state: ConfState | None = None) -> MemoryStorage:
        return MemoryStorage(conf_state)

    def crash(self, s: MemoryStorage) -> MemoryStorage:
        s.crash()
        return s

    def restart(self, s: MemoryStorage) -> MemoryStorage:
        s.sync()
        return s


class Disk(Backend):
    name = "disk"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.opened: list[DiskStorage] = []

    def _open(self, directory: Path, conf_state: ConfState | None = None) -> DiskStorage:
        s = DiskStorage(directory, conf_state)
        self.opened.append(s)
        return s

    def make(self, conf_state: ConfState | None = None) -> DiskStorage:
        return self._open(self.base / f"d{len(self.opened)}", conf_state)

    def crash(self, s: DiskStorage) -> DiskStorage:
        s.close(sync=False)  # buffered writes are dropped, as a kill drops them
        return self._open(s.directory)

    def restart(self, s: DiskStorage) -> DiskStorage:
        s.close()
        return self._open(s.directory)


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield Memory()
        return
    b = Disk(tmp_path)
    yield b
    for s in b.opened:
        s.close()


# ----------------------------------------------------------------- MemoryStorage's contract
def test_fresh_storage_holds_nothing(backend: Backend):
    s = backend.make(A)
    assert s.initial_state() == (HardState(), A)
    assert (s.snapshot(), s.first_index(), s.last_index(), s.term(0)) == (Snapshot(), 1, 0, 0)
    assert s.entries(1, 1) == []
    s.sync()  # nothing to sync is fine


def test_unsynced_writes_are_lost_on_crash(backend: Backend):
    s = backend.make(A)
    s.append([Entry(1, 1, b"x")])
    s.set_hard_state(HardState(1, "a", 1))
    s.sync()
    s.append([Entry(1, 2, b"y")])
    s.set_hard_state(HardState(2, None, 1))
    assert s.last_index() == 2 and s.unsynced_writes == 2
    s = backend.crash(s)
    assert s.last_index() == 1 and s.entries(1, 2) == [Entry(1, 1, b"x")]
    assert s.initial_state()[0] == HardState(1, "a", 1)


def test_append_replaces_conflicting_suffix(backend: Backend):
    s = backend.make(A)
    s.append([Entry(1, i, b"") for i in range(1, 6)])
    s.append([Entry(2, 3, b"new")])
    assert [e.term for e in s.entries(1, s.last_index() + 1)] == [1, 1, 2]
    s.sync()
    s = backend.restart(s)
    assert [(e.term, e.data) for e in s.entries(1, s.last_index() + 1)] == [(1, b""), (1, b""), (2, b"new")]


def test_append_with_gap_is_refused(backend: Backend):
    s = backend.make(A)
    with pytest.raises(StorageError, match="gap"):
        s.append([Entry(1, 3, b"")])
    assert s.last_index() == 0 and s.unsynced_writes == 0  # a refused write is not queued


@pytest.mark.parametrize("lo, hi", [(1, 5), (0, 1), (3, 2), (5, 6), (1, 12)])
def test_out_of_range_reads_are_refused(backend: Backend, lo: int, hi: int):
    s = backend.make(A)
    s.append([Entry(1, i, b"") for i in range(1, 11)])
    s.save_snapshot(Snapshot(SnapshotMeta(5, 1, A)))
    s.compact(5)
    assert s.entries(6, 11)[0].index == 6
    with pytest.raises(StorageError, match="out of range"):
        s.entries(lo, hi)
    with pytest.raises(StorageError, match="no term"):
        s.term(4)
    with pytest.raises(StorageError, match="no term"):
        s.term(11)


def test_snapshot_compact_and_crash(backend: Backend):
    """tests/test_raft_snapshot.py's storage test, on both storages."""
    s = backend.make(A)
    s.append([Entry(1, i, b"e%d" % i) for i in range(1, 11)])
    s.set_hard_state(HardState(1, "a", 10))
    snap = Snapshot(SnapshotMeta(8, 1, A), b"state@8")
    s.save_snapshot(snap)
    s.compact(6)
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 10, 1)
    with pytest.raises(StorageError, match="out of range"):
        s.entries(6, 8)
    with pytest.raises(StorageError, match="snapshot covers 8"):
        s.compact(9)
    s = backend.crash(s)  # nothing was synced: all of it is gone
    assert s.first_index() == 1 and s.last_index() == 0 and s.snapshot().meta.index == 0
    s.append([Entry(1, i, b"e%d" % i) for i in range(1, 11)])
    s.save_snapshot(snap)
    s.compact(6)
    s.sync()
    s = backend.crash(s)
    assert s.first_index() == 7 and s.snapshot() == snap and s.term(6) == 1
    s.apply_snapshot(Snapshot(SnapshotMeta(20, 3, ConfState(("a", "b"))), b"state@20"))
    assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 3)
    s.append([Entry(3, 21, b"x")])
    s.append([Entry(3, 15, b"old")])  # below the snapshot: already covered, nothing changes
    assert s.last_index() == 21
    s.sync()
    s = backend.crash(s)
    assert (s.first_index(), s.last_index(), s.snapshot().data) == (21, 21, b"state@20")


def test_an_older_snapshot_is_refused(backend: Backend):
    s = backend.make(A)
    s.apply_snapshot(Snapshot(SnapshotMeta(5, 1, A)))
    with pytest.raises(StorageError, match="older"):
        s.save_snapshot(Snapshot(SnapshotMeta(3, 1, A)))


def test_compact_validates_its_argument(backend: Backend):
    s = backend.make(A)
    s.append([Entry(1, i, b"") for i in range(1, 6)])
    with pytest.raises(StorageError, match="snapshot covers 0"):
        s.compact(2)
    s.save_snapshot(Snapshot(SnapshotMeta(4, 1, A)))
    s.compact(3)
    s.compact(2)  # already compacted: nothing happens
    assert s.first_index() == 4
    s.apply_snapshot(Snapshot(SnapshotMeta(9, 2, A)))
    s.save_snapshot(Snapshot(SnapshotMeta(12, 2, A)))  # a snapshot may run ahead of the log
    with pytest.raises(StorageError, match="log ends at 9"):
        s.compact(12)


def test_node_restarts_from_storage_with_term_vote_and_log(backend: Backend):
    node = RaftNode("a", backend.make(A), rng=random.Random(1))
    node.campaign()
    node.propose(b"one")
    node.propose(b"two")
    drain(node)
    storage = backend.restart(node.storage)
    again = RaftNode("a", storage, rng=random.Random(2))
    assert again.term == node.term and again.vote == "a"
    assert again.log.last_index() == 3 and again.log.committed == 3
    rd = again.ready()
    assert [e.data for e in rd.committed_entries] == [b"", b"one", b"two"]  # re-applied from the log


def test_compaction_keeps_the_trailing_entries_and_restart_restores(backend: Backend):
    cfg = RaftConfig(snapshot_threshold=0, snapshot_trailing=3)
    node = RaftNode("a", backend.make(A), cfg, rng=random.Random(1))
    node.campaign()
    for i in range(10):
        node.propose(b"%d" % i)
    drain(node)
    snap = node.compact(9, b"fsm@9")
    drain(node)  # the compaction's Ready: save the snapshot, compact to 6, sync
    assert node.storage.first_index() == 7
    node.propose(b"after")
    drain(node)
    storage = backend.crash(node.storage)  # everything was synced: a crash loses nothing
    again = RaftNode("a", storage, cfg, rng=random.Random(3), applied=9)
    assert again.snapshot == snap
    assert again.log.offset == 6 and again.log.last_index() == 12 and again.log.committed == 12
    assert [e.index for e in again.ready().committed_entries] == [10, 11, 12]


# ----------------------------------------------------------------- the same random history on both
def _fast_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check what is replayed, not that it reached the platter: skip the fsyncs."""
    monkeypatch.setattr(disk, "_datasync", lambda fd: None)
    monkeypatch.setattr(disk.os, "fsync", lambda fd: None)


def _random_write(rng: random.Random, s: Any, term: int) -> tuple[str, tuple]:
    first, last, snap = s.first_index(), s.last_index(), s.snapshot().meta.index
    op = rng.choices(["append", "hard", "conf", "save", "compact", "apply"], [10, 4, 1, 2, 2, 1])[0]
    if op == "append":
        lo = rng.randint(max(1, first - 3), last + 2)
        n = rng.randint(0, 5)
        return op, (
            [Entry(term, i, rng.randbytes(rng.choice([0, 3, 50])), rng.choice([0, 0, 1])) for i in range(lo, lo + n)],
        )
    if op == "hard":
        return op, (HardState(term, rng.choice([None, "a", "b"]), rng.randint(0, last)),)
    if op == "conf":
        voters, learners = rng.sample("abcde", rng.randint(1, 3)), rng.sample("xy", rng.randint(0, 2))
        return op, (ConfState(tuple(voters), tuple(learners)),)
    if op in ("save", "compact"):
        index = rng.randint(max(0, snap - 1), max(snap, last) + 1)
        if op == "compact":
            return op, (index,)
        t = s.term(index) if first - 1 <= index <= last else term
        return op, (Snapshot(SnapshotMeta(index, t, A), rng.randbytes(rng.choice([0, 20, 5000]))),)
    index = rng.randint(max(0, last - 3), last + 5)
    return op, (Snapshot(SnapshotMeta(index, term, ConfState(("a", "b"))), b"applied@%d" % index),)


_METHODS = {"append": "append", "hard": "set_hard_state", "conf": "set_conf_state", "save": "save_snapshot",
            "compact": "compact", "apply": "apply_snapshot"}  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_disk_matches_memory_over_random_histories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int):
    """Random writes (conflicts, gaps, snapshots, compactions, refused writes), syncs, crashes and
    clean restarts, with log rewrites every few KiB: after every step both storages answer alike."""
    _fast_disk(monkeypatch)
    rng = random.Random(seed)
    mem = MemoryStorage(A)
    d = DiskStorage(tmp_path, A, rewrite_bytes=2048)
    term, rewrites, size = 1, 0, 0
    try:
        for _ in range(400):
            roll = rng.random()
            if roll < 0.15:
                mem.sync()
                d.sync()
            elif roll < 0.2:
                mem.crash()
                d.close(sync=False)
                d = DiskStorage(tmp_path, rewrite_bytes=2048)
            elif roll < 0.22:
                mem.sync()
                d.close()
                d = DiskStorage(tmp_path, rewrite_bytes=2048)
            else:
                term += rng.random() < 0.1
                op, args = _random_write(rng, mem, term)
                try:
                    getattr(mem, _METHODS[op])(*args)
                except StorageError as exc:
                    with pytest.raises(StorageError) as again:
                        getattr(d, _METHODS[op])(*args)
                    assert str(again.value) == str(exc)
                else:
                    getattr(d, _METHODS[op])(*args)
            assert image(d) == image(mem)
            now = (tmp_path / "log").stat().st_size
            rewrites += now < size
            size = now
        assert rewrites > 0  # the history ran through some rewrites of the log
        assert len(list(tmp_path.glob("snap-*"))) <= 2  # the named one, and maybe one not yet named
    finally:
        d.close()


# ----------------------------------------------------------------- restarts
def test_restart_after_close_loses_nothing(tmp_path: Path):
    with DiskStorage(tmp_path, A) as s:
        s.append([Entry(1, i, b"%d" % i * i, i % 2) for i in range(1, 101)])
        s.set_hard_state(HardState(1, "a", 90))
        s.sync()
        s.set_conf_state(ConfState(("a", "b"), ("c",)))
        s.save_snapshot(Snapshot(SnapshotMeta(50, 1, ConfState(("a", "b"), ("c",))), b"fsm@50"))
        s.compact(40)
        s.append([Entry(2, 100, b"replaced"), Entry(2, 101, b"new")])
        s.set_hard_state(HardState(2, None, 95))  # commit-only changes are buffered: close syncs them
        before = image(s)
    with DiskStorage(tmp_path, ConfState(("zzz",))) as again:  # the conf state argument only bootstraps
        assert image(again) == before
        assert again.initial_state() == (HardState(2, None, 95), ConfState(("a", "b"), ("c",)))
        with pytest.raises(StorageError, match="out of range"):
            again.entries(40, 45)
        with pytest.raises(StorageError, match="out of range"):
            again.entries(41, 103)


def test_compaction_then_restart_rewrites_the_log(tmp_path: Path):
    with DiskStorage(tmp_path, A, rewrite_bytes=4096) as s:
        for b in range(20):
            s.append([Entry(1, b * 10 + k, bytes(100)) for k in range(1, 11)])
            s.sync()
        grown = (tmp_path / "log").stat().st_size
        s.save_snapshot(Snapshot(SnapshotMeta(195, 1, A), b"fsm@195"))
        s.compact(190)
        s.sync()
        # mostly dead: rewritten, not appended to
        assert (tmp_path / "log").stat().st_size - disk._HEADER_BYTES < (grown - disk._HEADER_BYTES) / 5
        s.append([Entry(2, 201, b"after")])
        s.sync()
        before = image(s)
    with DiskStorage(tmp_path) as again:
        assert image(again) == before and again.first_index() == 191 and again.term(190) == 1


def test_apply_snapshot_then_restart(tmp_path: Path):
    with DiskStorage(tmp_path, A) as s:
        s.append([Entry(1, i, b"old") for i in range(1, 11)])
        s.save_snapshot(Snapshot(SnapshotMeta(5, 1, A), b"fsm@5"))
        s.sync()
        snap = Snapshot(SnapshotMeta(20, 3, ConfState(("a", "b"))), b"fsm@20")
        s.apply_snapshot(snap)
        s.append([Entry(3, i, b"new") for i in range(21, 26)])
        s.set_hard_state(HardState(3, "b", 22))
        s.sync()
        before = image(s)
    assert [p.name for p in tmp_path.glob("snap-*")] == ["snap-0000000000000002.snap"]  # the first is gone
    with DiskStorage(tmp_path) as again:
        assert image(again) == before
        assert (again.snapshot(), again.first_index(), again.last_index(), again.term(20)) == (snap, 21, 25, 3)


def test_only_the_named_snapshot_file_is_kept(tmp_path: Path):
    with DiskStorage(tmp_path, A) as s:
        s.append([Entry(1, i, b"") for i in range(1, 11)])
        for index in (3, 6, 9):
            s.save_snapshot(Snapshot(SnapshotMeta(index, 1, A), b"fsm@%d" % index))
            s.sync()
            assert len(list(tmp_path.glob("snap-*"))) == 1
        s.save_snapshot(Snapshot(SnapshotMeta(9, 1, A), b"again"))
        s.save_snapshot(Snapshot(SnapshotMeta(10, 1, A), b"last"))  # two in one batch: one file written
        s.sync()
        assert len(list(tmp_path.glob("snap-*"))) == 1
    with DiskStorage(tmp_path) as again:
        assert again.snapshot().data == b"last"


# ----------------------------------------------------------------- torn tails and corruption
def _three_batches(directory: Path, *, third_synced: bool = False) -> tuple[tuple, tuple]:
    """Three batches (the last with a multi-page record); the images after two and three. The third
    is written whole but its sync never returns (the process dies in its fdatasync), unless
    ``third_synced``: then it is synced like the others, and its sync mark written."""
    s = DiskStorage(directory, A)
    s.append([Entry(1, i, b"a%d" % i) for i in range(1, 6)])
    s.set_hard_state(HardState(1, "a", 3))
    s.sync()
    s.append([Entry(1, 6, b"b")])
    s.set_hard_state(HardState(1, "a", 6))
    s.sync()
    two = image(s)
    s.append([Entry(2, 5, bytes(range(256)) * 40)])
    s.set_hard_state(HardState(2, "b", 5))
    three = image(s)
    if third_synced:
        s.sync()
    else:
        record = s.prepare_sync()
        assert record is not None
        with open(directory / "log", "ab") as f:
            f.write(record)  # what write_record writes, before the fdatasync that never returned
    s.close(sync=False)
    return two, three


@pytest.mark.parametrize(
    "damage",
    ["garbage", "zeros", "cut 1", "cut 7", "cut 12", "cut half", "cut all but 1", "bad crc at the end"],
)
def test_a_torn_tail_is_cut_at_the_last_valid_record(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str):
    two, three = _three_batches(tmp_path)
    log = tmp_path / "log"
    start, end = records(log)[-1]
    if damage == "garbage":
        log.write_bytes(log.read_bytes() + random.Random(7).randbytes(300))
        keep, expected = end, three
    elif damage == "zeros":
        log.write_bytes(log.read_bytes() + bytes(4096))  # a file extended whose data never landed
        keep, expected = end, three
    elif damage == "bad crc at the end":
        flip(log, end - 100)
        keep, expected = start, two
    else:
        cut = {"cut 1": 1, "cut 7": 7, "cut 12": 12, "cut half": (end - start) // 2, "cut all but 1": end - start - 1}
        os.truncate(log, end - cut[damage])  # a write that reached the disk only in part
        keep, expected = start, two
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s = DiskStorage(tmp_path)
    assert [r.name for r in caplog.records] == [LOGGER] and "torn tail" in caplog.records[0].getMessage()
    with s:
        assert image(s) == expected
        assert log.stat().st_size == keep  # cut for good, before anything is appended after it
        s.append([Entry(3, s.last_index() + 1, b"later")])
        s.sync()
        after = image(s)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER), DiskStorage(tmp_path) as again:
        assert image(again) == after and not caplog.records


@pytest.mark.parametrize("where", ["payload", "length", "mark", "first record"])
def test_corruption_followed_by_valid_records_is_an_error(tmp_path: Path, where: str):
    _three_batches(tmp_path)
    log = tmp_path / "log"
    recs = records(log)
    start, end = recs[0] if where == "first record" else recs[1]
    flip(log, {"payload": end - 2, "length": start + 5, "mark": start, "first record": end - 1}[where])
    damaged = log.read_bytes()
    with pytest.raises(StorageError, match=f"corrupt record at byte {start} followed by a valid record"):
        DiskStorage(tmp_path)
    assert log.read_bytes() == damaged  # nothing was cut
    with pytest.raises(StorageError, match="corrupt"):  # and it stays an error, with the lock released
        DiskStorage(tmp_path)


def test_a_file_that_is_not_a_log_is_refused(tmp_path: Path):
    DiskStorage(tmp_path, A).close()
    flip(tmp_path / "log", 2)
    with pytest.raises(StorageError, match="not a clusterkit log"):
        DiskStorage(tmp_path)


# ----------------------------------------------------------------- snapshot files
def _with_snapshot(directory: Path) -> tuple:
    with DiskStorage(directory, A) as s:
        s.append([Entry(1, i, b"") for i in range(1, 11)])
        s.save_snapshot(Snapshot(SnapshotMeta(8, 1, A), b"fsm@8" * 100))
        s.compact(8)
        s.sync()
        return image(s)


def test_leftover_temp_and_orphan_files_are_ignored_and_removed(tmp_path: Path):
    before = _with_snapshot(tmp_path)
    (named,) = tmp_path.glob("snap-*.snap")
    (tmp_path / "snap-0000000000000009.snap.tmp").write_bytes(b"half a snapshot")  # crash before its rename
    (tmp_path / "log.tmp").write_bytes(b"half a rewrite")  # crash before the log's rename
    (tmp_path / "snap-0000000000000fff.snap").write_bytes(named.read_bytes())  # renamed, never named by a sync
    with DiskStorage(tmp_path) as s:
        assert image(s) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "log", named.name]
        s.save_snapshot(Snapshot(SnapshotMeta(10, 1, A), b"fsm@10"))
        s.sync()
        assert [p.name for p in tmp_path.glob("snap-*")] == ["snap-0000000000001000.snap"]  # numbers never reused
    with DiskStorage(tmp_path) as s:
        assert s.snapshot().data == b"fsm@10"


def test_a_missing_or_damaged_snapshot_is_an_error(tmp_path: Path):
    _with_snapshot(tmp_path)
    (named,) = tmp_path.glob("snap-*.snap")
    good = named.read_bytes()
    flip(named, len(good) - 3)
    with pytest.raises(StorageError, match="corrupt"):
        DiskStorage(tmp_path)
    named.unlink()
    with pytest.raises(StorageError, match="missing"):
        DiskStorage(tmp_path)
    named.write_bytes(good)
    (tmp_path / "log").unlink()
    with pytest.raises(StorageError, match="snapshot files but no log"):
        DiskStorage(tmp_path, A)


# ----------------------------------------------------------------- lock, lifecycle, failures
def test_the_data_directory_is_locked(tmp_path: Path):
    s = DiskStorage(tmp_path, A)
    with pytest.raises(DataDirLocked, match=f"already open .*process {os.getpid()}"):
        DiskStorage(tmp_path)
    code = (
        "import sys\nfrom clusterkit.net.disk import DiskStorage, DataDirLocked\n"
        "try:\n    DiskStorage(sys.argv[1])\nexcept DataDirLocked as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert f"is already open (lock {tmp_path / 'LOCK'} held, last taken by process {os.getpid()})" in out.stdout
    s.close()
    DiskStorage(tmp_path).close()  # released by close


def test_a_closed_storage_refuses_everything(tmp_path: Path):
    with DiskStorage(tmp_path, A) as s:
        s.append([Entry(1, 1, b"x")])
    assert s.closed
    s.close()  # twice is fine
    for call in (s.last_index, s.sync, lambda: s.append([Entry(1, 2, b"")]), lambda: s.entries(1, 2)):
        with pytest.raises(StorageError, match="closed"):
            call()
    assert "closed" in repr(s)


def test_a_failed_fsync_makes_the_storage_unusable_until_reopened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    s = DiskStorage(tmp_path, A)
    s.append([Entry(1, 1, b"x")])
    s.sync()

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(disk, "_datasync", eio)
    s.append([Entry(1, 2, b"y")])
    with pytest.raises(StorageError, match="write failed, reopen"):
        s.sync()
    with pytest.raises(StorageError, match="earlier write failed"):
        s.append([Entry(1, 3, b"z")])
    s.close()  # no second attempt at the sync
    monkeypatch.undo()
    with DiskStorage(tmp_path) as again:  # the unacknowledged record may or may not be there
        assert again.entries(1, 2) == [Entry(1, 1, b"x")] and again.last_index() in (1, 2)


def test_a_sync_in_three_steps_is_a_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """prepare_sync / write_record / finish_sync (a driver's sync on another thread) write the same
    record sync() would; a batch with a snapshot file to write is left to sync(); a failed write
    makes the storage unusable."""
    s = DiskStorage(tmp_path, A)
    assert s.prepare_sync() is None  # nothing to sync
    s.append([Entry(1, 1, b"x"), Entry(1, 2, b"y")])
    s.set_hard_state(HardState(1, "a", 1))
    record = s.prepare_sync()
    assert record is not None and s.unsynced_writes == 2
    s.write_record(record)
    s.finish_sync(record)
    assert s.unsynced_writes == 0
    s.save_snapshot(Snapshot(SnapshotMeta(1, 1, A), b"fsm@1"))
    assert s.prepare_sync() is None  # the snapshot file first: sync() does it
    s.sync()
    s.append([Entry(1, 3, b"z")])
    record = s.prepare_sync()
    assert record is not None
    monkeypatch.setattr(disk, "_datasync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(StorageError, match="write failed, reopen"):
        s.write_record(record)
    with pytest.raises(StorageError, match="earlier write failed"):
        s.finish_sync(record)
    s.close()
    monkeypatch.undo()
    with DiskStorage(tmp_path) as again:
        assert again.entries(1, 3) == [Entry(1, 1, b"x"), Entry(1, 2, b"y")] and again.last_index() in (2, 3)
        assert again.initial_state()[0] == HardState(1, "a", 1) and again.snapshot().data == b"fsm@1"


# ----------------------------------------------------------------- the core and the host on disk
def test_a_raft_node_runs_on_disk_storage_through_restarts(tmp_path: Path):
    cfg = RaftConfig(snapshot_threshold=0, snapshot_trailing=2)
    node = RaftNode("a", DiskStorage(tmp_path, A), cfg, rng=random.Random(1))
    node.campaign()
    for i in range(8):
        node.propose(b"v%d" % i)
    drain(node)
    node.storage.close()

    node = RaftNode("a", DiskStorage(tmp_path), cfg, rng=random.Random(2))
    assert (node.term, node.vote, node.log.last_index(), node.log.committed) == (1, "a", 9, 9)
    rd = node.ready()
    assert [e.data for e in rd.committed_entries][1:] == [b"v%d" % i for i in range(8)]  # re-applied
    if write_ready(node.storage, rd):
        node.storage.sync()
    node.advance(rd)
    node.compact(9, b"fsm@9")
    node.campaign()
    node.propose(b"after")
    drain(node)
    term = node.term
    node.storage.close(sync=False)  # drain synced every Ready: nothing is lost

    node = RaftNode("a", DiskStorage(tmp_path), cfg, rng=random.Random(3), applied=9)
    assert node.snapshot is not None and node.snapshot.data == b"fsm@9" and node.log.offset == 7
    assert node.term == term and node.log.committed == node.log.last_index() == 11
    assert [e.data for e in node.ready().committed_entries] == [b"", b"after"]
    node.storage.close()


def test_a_node_host_keeps_its_state_machine_across_restarts(tmp_path: Path):
    cfg = RaftConfig(election_ticks=3, snapshot_threshold=10, snapshot_trailing=2)
    values = []
    for life in range(3):
        storage = DiskStorage(tmp_path, ConfState(("solo",)))
        host = NodeHost("solo", storage, AppliedLog(), cfg)
        while not host.is_leader:
            host.tick()
            host.process()
        assert host.machine.data() == values  # the snapshot and the log after it, re-applied
        for i in range(15):
            values.append(b"%d.%d" % (life, i))
            p = host.propose(values[-1])
            host.process()
            assert p.ok
        assert storage.snapshot().meta.index > 0 and storage.first_index() > 1
        storage.close()


# ----------------------------------------------------------------- SIGKILL
class _Workload:
    """A deterministic stream of Ready-like batches: entries (some overwriting the uncommitted
    suffix in a new term, some spanning pages), the hard state, now and then a snapshot and a
    compaction. The child writes it to disk; the test replays it on a MemoryStorage to know what
    every sync made durable."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.term, self.last, self.commit, self.snap = 1, 0, 0, 0
        self.terms: dict[int, int] = {}

    def write(self, s: Any) -> None:
        rng = self.rng
        if self.last > self.commit and rng.random() < 0.2:
            lo = rng.randint(self.commit + 1, self.last)  # a new leader overwrites what never committed
            self.term += 1
        else:
            lo = self.last + 1
        hi = lo + rng.randint(1, 20) - 1
        sizes = [rng.choice([8, 8, 8, 200, 6000]) for _ in range(lo, hi + 1)]  # some records span pages
        s.append([Entry(self.term, i, b"%d/%d/" % (self.term, i) + b"." * n) for i, n in zip(range(lo, hi + 1), sizes)])
        self.terms.update((i, self.term) for i in range(lo, hi + 1))
        self.last = hi
        self.commit = max(self.commit, hi - rng.randint(0, 5))
        s.set_hard_state(HardState(self.term, "a", self.commit))
        if self.commit - self.snap > 40 and rng.random() < 0.3:
            self.snap = self.commit
            s.save_snapshot(Snapshot(SnapshotMeta(self.snap, self.terms[self.snap], A), b"fsm@%d" % self.snap))
            s.compact(self.snap - 5)


def _crash_child(directory: str, seed: int) -> None:
    """Runs in the subprocess that gets killed: write, sync, say so, forever."""
    s = DiskStorage(directory, A, rewrite_bytes=32 << 10)  # small: rewrites happen under the kill too
    work = _Workload(seed)
    synced = 0
    while True:
        work.write(s)
        s.sync()
        synced += 1
        print(synced, s.last_index(), flush=True)  # how many syncs returned, and the last index synced


def test_sigkill_loses_nothing_that_was_synced(tmp_path: Path):
    """A child writes and syncs in a loop, printing after each sync; it is SIGKILLed at a seeded
    moment (in a write, an fsync, a snapshot's rename, a log rewrite). Reopened, the directory
    holds exactly the state after the last printed sync, or after one more (killed between that
    sync and its print): every printed entry with its data, the hard state, the snapshot."""
    code = "import sys\nfrom tests.test_disk_storage import _crash_child\n_crash_child(sys.argv[1], int(sys.argv[2]))"
    deadline = time.monotonic() + 12
    for seed in range(6):
        if seed >= 3 and time.monotonic() > deadline - 3:
            break  # a slow, shared machine: three kills are still a test
        rng = random.Random(seed)
        directory = tmp_path / f"kill{seed}"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(directory), str(seed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        printed = last = 0
        try:
            for _ in range(rng.randint(5, 60)):
                line = proc.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    pytest.fail(f"the child stopped: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
                printed, last = map(int, line.split())
            time.sleep(rng.uniform(0, 0.02))  # the kill lands anywhere: in a write, an fsync, a rename
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        for line in out.split(b"\n")[:-1]:  # printed before the kill; the last piece is empty or cut short
            printed, last = map(int, line.split())

        model, work, states = MemoryStorage(A), _Workload(seed), []
        for _ in range(printed + 1):
            work.write(model)
            model.sync()
            states.append(image(model))
        assert states[printed - 1][3] == last  # the model replays what the child wrote
        with DiskStorage(directory) as s:
            found = image(s)
            # Every printed sync is durable; one more may be too (killed between its sync and its print).
            assert found in (states[printed - 1], states[printed]), f"seed {seed}: printed {printed}"
            hs = s.initial_state()[0]
            assert (hs.term, hs.commit) >= (states[printed - 1][0][0].term, states[printed - 1][0][0].commit)
