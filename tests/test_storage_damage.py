"""Synced records are never silently dropped (issue 20, item 3).

A torn write can only be the last batch written since the last sync: each sync appends one record
and fdatasyncs it before the next is written, and the log's sync mark (in its header) is written
only once that fdatasync returned. So a log cut short or damaged before its sync mark lost data
it had synced and acknowledged: it refuses to open (:class:`StorageDamaged`), and ``clusterkit
node`` on it exits with one CRITICAL line and its own code. A torn last batch whose sync never
returned is still cut with a warning. The same holds for the KV store's log.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit.cli.codes import EXIT_STORAGE_DAMAGED
from clusterkit.kv.data import KVData
from clusterkit.kv.records import Record, Version
from clusterkit.net import disk, kv_disk
from clusterkit.net.disk import DiskStorage, StorageDamaged
from clusterkit.net.kv_disk import KVLog
from clusterkit.net.local import free_port
from clusterkit.raft import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from clusterkit.raft.errors import StorageError

from .test_disk_storage import _three_batches, flip, image, records

ROOT = Path(__file__).resolve().parents[1]
A = ConfState(voters=("a",))
LOGGER = "clusterkit.net.disk"


def _synced_log(directory: Path, syncs: int) -> Path:
    """A log of ``syncs`` synced batches of one entry each (entry i in batch i), closed cleanly."""
    with DiskStorage(directory, A) as s:
        for i in range(1, syncs + 1):
            s.append([Entry(1, i, b"entry %d" % i)])
            s.set_hard_state(HardState(1, "a", i))
            s.sync()
    return directory / "log"


# ----------------------------------------------------------------- the Raft log
@pytest.mark.parametrize("where", ["at a record boundary", "inside a record"])
def test_a_log_cut_to_half_refuses_to_open_and_names_what_is_lost(tmp_path: Path, where: str) -> None:
    """The issue's case: 162 synced records, the file cut to half. Before, the cut inside a record
    was taken for a torn write (one WARNING, 81 acknowledged records gone) and the cut at a
    boundary was not even noticed."""
    log = _synced_log(tmp_path, 162)
    recs = records(log)  # the rewrite's base record, then one per sync
    start, end = recs[82]  # the record of the 82nd sync: entries 82.. are lost
    os.truncate(log, start if where == "at a record boundary" else (start + end) // 2)
    damaged = log.read_bytes()
    with pytest.raises(StorageDamaged) as caught:
        DiskStorage(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{log}: synced data is damaged: ")
    assert f"byte {start}" in message or f"byte {len(damaged)}" in message
    assert "81 synced records are lost, entries 82..162 among them" in message
    assert f"move {tmp_path} away and restart the node with the same node id and JOIN_ADDR" in message
    assert "\n" not in message
    assert caught.value.path == log and caught.value.offset == (start if where == "inside a record" else len(damaged))
    assert log.read_bytes() == damaged  # nothing cut
    with pytest.raises(StorageDamaged):  # and it stays refused, the lock released
        DiskStorage(tmp_path)


@pytest.mark.parametrize("damage", ["cut 1", "cut half", "cut all but 1", "bad crc at the end"])
def test_damage_to_the_last_synced_batch_refuses_to_open(tmp_path: Path, damage: str) -> None:
    """The last batch synced (its sync returned) is damage too: before, with nothing after it, it
    was cut as a torn write."""
    _three_batches(tmp_path, third_synced=True)
    log = tmp_path / "log"
    start, end = records(log)[-1]
    if damage == "bad crc at the end":
        flip(log, end - 100)
    else:
        cut = {"cut 1": 1, "cut half": (end - start) // 2, "cut all but 1": end - start - 1}[damage]
        os.truncate(log, end - cut)
    with pytest.raises(StorageDamaged, match=f"before the last sync mark \\(byte {end}\\)"):
        DiskStorage(tmp_path)


@pytest.mark.parametrize("damage", ["cut 1", "cut half", "bad crc at the end", "garbage after it"])
def test_a_torn_batch_whose_sync_never_returned_is_cut_and_the_log_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """The production path: the third sync's fdatasync fails (as a crash inside it would end it),
    so its mark is never written; whatever part of its record reached the disk is a torn tail."""
    s = DiskStorage(tmp_path, A)
    for i in (1, 2):
        s.append([Entry(1, i, b"x%d" % i)])
        s.sync()
    two = image(s)
    s.append([Entry(1, 3, bytes(range(256)) * 40)])
    monkeypatch.setattr(disk, "_datasync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(StorageError, match="write failed"):
        s.sync()
    s.close()
    monkeypatch.undo()
    log = tmp_path / "log"
    start, end = records(log)[-1]
    if damage == "bad crc at the end":
        flip(log, end - 100)
    elif damage == "garbage after it":
        os.truncate(log, start)
        with log.open("ab") as f:
            f.write(b"\x00" * 12 + b"garbage")
    else:
        os.truncate(log, end - {"cut 1": 1, "cut half": (end - start) // 2}[damage])
    with caplog.at_level(logging.WARNING, logger=LOGGER), DiskStorage(tmp_path) as again:
        assert image(again) == two
        assert log.stat().st_size == start
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "torn tail" in caplog.text


def test_a_record_synced_but_whose_mark_was_not_written_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between the fdatasync and the mark's write: the record is whole and kept (its sync
    never returned to the caller, so keeping it or not are both right; it is kept)."""
    s = DiskStorage(tmp_path, A)
    s.append([Entry(1, 1, b"a")])
    s.sync()
    s.append([Entry(1, 2, b"b")])
    monkeypatch.setattr(disk, "_write_mark", lambda fd, mark, salt: None)
    s.sync()
    s.close(sync=False)
    monkeypatch.undo()
    with DiskStorage(tmp_path) as again:
        assert again.last_index() == 2


def test_one_torn_mark_slot_falls_back_to_the_other_and_two_are_damage(tmp_path: Path) -> None:
    log = _synced_log(tmp_path, 5)
    raw = log.read_bytes()
    latest = disk._MARK_SLOTS[6 & 1]  # 6 records: the rewrite's and 5 syncs
    flip(log, latest + 3)  # a torn write of the newest slot: the other is one sync older
    with DiskStorage(tmp_path) as s:
        assert s.last_index() == 5
    log.write_bytes(raw)
    for at in disk._MARK_SLOTS:
        flip(log, at + 3)
    with pytest.raises(StorageDamaged, match="neither sync mark"):
        DiskStorage(tmp_path)
    os.truncate(log, 100)
    with pytest.raises(StorageDamaged, match="the file ends at byte 100, inside its header"):
        DiskStorage(tmp_path)


def test_a_version_1_log_is_read_by_the_old_rule_and_rewritten_with_marks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = _synced_log(tmp_path, 4)
    with DiskStorage(tmp_path) as s:
        before = image(s)
    raw = log.read_bytes()
    salt = raw[8:16]
    body = raw[disk._HEADER_BYTES :]
    log.write_bytes(disk._LOG_MAGIC_V1 + salt + body + b"torn")  # the previous format, with a torn tail
    with caplog.at_level(logging.INFO, logger=LOGGER), DiskStorage(tmp_path) as s:
        assert image(s) == before
    assert "torn tail" in caplog.text and "format 2" in caplog.text
    assert log.read_bytes()[:8] == disk._LOG_MAGIC
    with DiskStorage(tmp_path) as s:
        assert image(s) == before


def test_a_sync_is_still_one_fdatasync_and_no_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync mark costs no flush of its own: it rides on the next sync's fdatasync."""
    s = DiskStorage(tmp_path, A)
    calls: list[str] = []
    real_datasync, real_fsync = disk._datasync, os.fsync
    monkeypatch.setattr(disk, "_datasync", lambda fd: (calls.append("datasync"), real_datasync(fd))[1])
    monkeypatch.setattr(disk.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    for i in range(1, 11):
        s.append([Entry(1, i, b"x")])
        s.sync()
    for i in range(11, 21):  # the three-step sync a driver's sync thread runs
        s.append([Entry(1, i, b"x")])
        record = s.prepare_sync()
        assert record is not None
        s.write_record(record)
        s.finish_sync(record)
    assert calls == ["datasync"] * 20
    s.close()


def test_a_missing_snapshot_or_a_lost_log_is_damage(tmp_path: Path) -> None:
    with DiskStorage(tmp_path, A) as s:
        s.append([Entry(1, i, b"") for i in range(1, 5)])
        s.save_snapshot(Snapshot(SnapshotMeta(3, 1, A), b"fsm@3"))
        s.compact(3)
        s.sync()
    (named,) = tmp_path.glob("snap-*.snap")
    good = named.read_bytes()
    named.unlink()
    with pytest.raises(StorageDamaged, match="missing"):
        DiskStorage(tmp_path)
    named.write_bytes(good)
    (tmp_path / "log").unlink()
    with pytest.raises(StorageDamaged, match="snapshot files but no log"):
        DiskStorage(tmp_path, A)


# ----------------------------------------------------------------- the KV log
def _put(p: int, key: str, n: int) -> list:
    return ["put", p, key, Record(Version(n, "w"), "v").to_wire()]


def _kv_log(directory: Path, syncs: int) -> KVLog:
    log = KVLog(directory)
    log.load()
    for i in range(syncs):
        log.append([_put(i % 4, f"k{i}", 1), _put(i % 4, f"j{i}", 1)])
    log.close()
    return log


def _kv_records(path: Path) -> list[tuple[int, int]]:
    raw = path.read_bytes()
    out, pos = [], kv_disk.HEADER_BYTES
    while pos + 12 <= len(raw):
        end = pos + 12 + int.from_bytes(raw[pos + 4 : pos + 8], "little")
        out.append((pos, end))
        pos = end
    return out


@pytest.mark.parametrize("where", ["at a record boundary", "inside a record"])
def test_a_kv_log_cut_in_its_synced_records_refuses_to_open(tmp_path: Path, where: str) -> None:
    kv = tmp_path / "kv"
    _kv_log(kv, 40)
    start, end = _kv_records(kv / "log")[20]
    os.truncate(kv / "log", start if where == "at a record boundary" else start + 5)
    with pytest.raises(StorageDamaged) as caught:
        KVLog(kv).load()
    message = str(caught.value)
    assert message.startswith(f"{kv / 'log'}: synced data is damaged: ")
    assert "synced were 40 records (entries 80), readable are the first 20 records (entries 40)" in message
    assert "20 synced records are lost" in message and f"move {tmp_path} away" in message


def test_a_torn_unsynced_kv_batch_is_still_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kv = tmp_path / "kv"
    log = _kv_log(kv, 3)
    size = log.size
    log = KVLog(kv)
    log.load()
    blob = log.encode_record([_put(0, "late", 1)])
    log.close()
    with (kv / "log").open("ab") as f:
        f.write(blob[: len(blob) // 2])  # written in part, its fdatasync never returned
    with caplog.at_level(logging.WARNING, logger="clusterkit.net.kv_disk"):
        log = KVLog(kv)
        entries = log.load()
    assert len(entries) == 6 and log.size == size and log.torn_bytes == len(blob) // 2
    assert "torn tail" in caplog.text
    log.append([_put(0, "after", 1)])
    log.close()
    again = KVLog(kv)
    assert len(again.load()) == 7
    again.close()


def test_a_version_1_kv_log_is_read_and_rewritten_with_marks(tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    _kv_log(kv, 3)
    raw = (kv / "log").read_bytes()
    (kv / "log").write_bytes(kv_disk.MAGIC_V1 + raw[8:16] + raw[kv_disk.HEADER_BYTES :])
    log = KVLog(kv)
    entries = log.load()
    assert len(entries) == 6 and (kv / "log").read_bytes()[:8] == kv_disk.MAGIC
    log.append([_put(0, "after", 1)])
    log.close()
    again = KVLog(kv)
    assert KVData.replay(again.load()).get(0, "after") is not None
    again.close()


# ----------------------------------------------------------------- a real node process
def _node(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "JOIN_", "BOOTSTRAP", "DATA_DIR"))}
    return subprocess.run(
        [sys.executable, "-m", "clusterkit", "node", "--node-id", "node-1", "--data-dir", str(data_dir),
         "--http-addr", f"127.0.0.1:{free_port()}", "--raft-addr", f"127.0.0.1:{free_port()}", *extra],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False,
    )


@pytest.mark.parametrize("log", ["raft", "kv"])
def test_a_node_on_damaged_storage_exits_with_one_critical_line(tmp_path: Path, log: str) -> None:
    data = tmp_path / "node-1"
    extra: tuple[str, ...] = ()
    if log == "raft":
        path = _synced_log(data, 20)
        start, _ = records(path)[10]
    else:
        DiskStorage(data, ConfState(voters=("node-1",))).close()
        _kv_log(data / "kv", 20)
        path = data / "kv" / "log"
        start, _ = _kv_records(path)[10]
        extra = ("--kv-addr", f"127.0.0.1:{free_port()}")
    os.truncate(path, start + 3)
    done = _node(data, *extra)
    assert done.returncode == EXIT_STORAGE_DAMAGED, done.stderr
    critical = [line for line in done.stderr.splitlines() if " CRITICAL " in line]
    assert len(critical) == 1, done.stderr
    lost = 11 if log == "raft" else 10  # (the Raft log's first record is its base: 21 records, 20 syncs)
    assert f"{path}: synced data is damaged" in critical[0] and f"{lost} synced records are lost" in critical[0]
    assert f"move {data} away" in critical[0]
    assert "Traceback" not in done.stderr and " ERROR " not in done.stderr
