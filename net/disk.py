"""Durable Raft storage: an append-only log file behind the core's ``Storage`` protocol.

:class:`DiskStorage` keeps the whole held state in memory (as :class:`~clusterkit.raft.MemoryStorage`
does: the core reads storage only at start, and keeps its log in memory anyway) and makes it durable
in one append-only file. Every ``sync()`` appends one framed record holding every write made since the
previous ``sync()`` and makes it durable with one ``fdatasync``: group commit, one fsync per drained
Ready batch. Writes before ``sync()`` are only buffered in memory, so what a crash keeps is always a
prefix of whole ``sync()`` batches.

Why a log file and not sqlite in WAL mode: measured with ``bench/disk_storage.py --seconds 2
--slices 10`` (ext4 on a shared virtual disk whose fdatasync takes ~4 ms, 2 shared cores, 100-byte
entries, the batch plus its hard state then one sync; ``bare`` is the batch's bytes appended and
fdatasync'd, nothing else)::

    batch   appends/s: bare / log file / sqlite    CPU us/entry: bare / log / sqlite   sync p99 ms: log / sqlite
        1             285 /      286 /    284                    80 /  97 / 144                 6.9 / 6.9
       16           4,393 /    3,673 /  3,637                   7.2 / 9.4 / 12.3                9.1 / 11.9
      256          51,268 /   67,043 / 63,627                   0.7 / 1.3 / 2.1                 7.9 / 12.9

Both sit on the fsync floor here: same throughput within the noise. The log file spends about
half of sqlite's CPU per entry, which is what shows once the disk is fast (in a run where the
fdatasync dropped to 0.2 ms: 629,000 against 458,000 appends/s at batch 256) or the cores are busy,
and it has the shorter tail (sqlite's checkpoints fsync the database too). Reopening 130,000
entries: 95 ms against 190 ms. What decides it, though, is recovery: sqlite does not checksum its
database pages, and its WAL recovery silently ignores a bad frame and every frame after it, which
is the silent loss of acknowledged writes that this storage must refuse. Here the framing and the
rules (torn tail vs. corruption) are ours to state and test, and nothing but msgpack is needed.

Files in the directory:

``LOCK``
    ``flock``'d while a DiskStorage has the directory open: one process (and one instance) at a time.
``log``
    A one-page header (magic, 8 random salt bytes, two sync-mark slots, zeros), then records. A
    record is ``mark(4) | length(4) | crc32(4) | payload``: ``mark`` is the salt's first 4 bytes (it
    lets recovery find record boundaries with a byte search), the CRC covers the salt, the length
    and the payload, and the payload is a msgpack list of operations (append, hard state, conf
    state, snapshot saved, compact, snapshot applied) replayed in order on open. A sync mark
    (:class:`SyncMark`: the file's size, records and last index, CRC-checked) is written in place
    into one slot, alternately, after each sync's fdatasync returned: it is in the page cache at
    once (a killed process keeps it) and durable with the next sync's fdatasync, so it costs no
    fsync (a pwrite, and one more page in that fdatasync). A file of the previous format (version
    1: a 16-byte header, no marks) is read by the old rule and rewritten in this one on open.
``snap-<seq>.snap``
    One snapshot per file, written to a ``.tmp`` name, fsynced, renamed, and the directory fsynced
    before the log record that names it is appended. The log names the current one; any other
    snapshot file or temp file is a leftover of a crash and is removed on open.

Recovery on open: records are read in order. A torn write can only be the last record, written
after the last sync mark: each sync appends one record and fdatasyncs it before another is written,
and the mark follows that fdatasync. So a record that fails its checks (short header, length past
the end, bad CRC) at or after the mark, with nothing valid after it, is a torn write: the file is
cut there, with a warning on the ``clusterkit.net.disk`` logger (that batch's ``sync()`` never
returned, so nothing acknowledged is lost). Anything else is damage of synced data, never a silent
loss: a bad record before the mark, a file that ends before it (cut short, even at a record
boundary), a bad record followed by a valid one, a header with no readable mark, a missing or
corrupt snapshot file. :class:`StorageDamaged` says where and what is lost (records, index range)
in one line, and the node refuses to start (``clusterkit node`` exits 65): what it acknowledged or
voted for may be gone, so it must come back as a fresh member (README, "Damaged storage"). After
a power cut the mark on disk may be one sync behind: the last synced batch alone can then be
damaged and still be taken for a torn write; after a crash of the process it is exact.

Compaction is lazy: ``compact`` and ``apply_snapshot`` append an operation, and once the file is
larger than ``rewrite_bytes`` and at least half of it is dead, ``sync()`` writes the live state to
``log.tmp`` (fsync, rename, directory fsync) instead of appending; the old file stays valid until
the rename, so a crash at any point leaves one consistent log. That sync costs a few fsyncs instead
of one, amortised over the file's growth.

Not thread-safe: one driver calls it (``sync()`` may run in an executor thread as long as nothing
else touches the storage meanwhile). On macOS ``os.fsync`` does not flush the drive's cache.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgpack

from clusterkit.raft.errors import StorageError
from clusterkit.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMeta

# The in-memory image MemoryStorage keeps: reusing it makes the append/compact/snapshot rules (and their
# StorageError messages) the same by construction, not by a second copy of the code.
from clusterkit.raft.storage import _Image

__all__ = ["DataDirLocked", "DiskStorage", "StorageDamaged", "StorageError", "SyncMark"]

logger = logging.getLogger("clusterkit.net.disk")

_LOG_MAGIC_V1 = b"CKLOG\x00\x00\x01"  # 16-byte header, no sync marks: read, then rewritten as version 2
_LOG_MAGIC = b"CKLOG\x00\x00\x02"
_SNAP_MAGIC = b"CKSNP\x00\x00\x01"
_SALT_BYTES = 8
_V1_HEADER_BYTES = len(_LOG_MAGIC) + _SALT_BYTES
# Version 2: magic, salt, two sync-mark slots, zeros up to a full page. The page is rewritten in
# place at every sync (the slots): it holds nothing else, so no record shares its sectors.
_MARK = struct.Struct("<QQQI")  # synced bytes, records, last index (KV: entries), crc32
_MARK_SLOTS = (16, 48)
_HEADER_BYTES = 4096
_RECORD = struct.Struct("<4sII")  # mark, payload length, crc32
_MAX_PAYLOAD = 0xFFFF_FFFF
_SNAP_NAME = re.compile(r"snap-([0-9a-f]{16})\.snap")

# Operation codes inside a record's payload. Stable: never renumber, only add.
_BASE = 0  # [_BASE, offset, offset_term, *snap_ref]: a rewritten file's starting point (empty log)
_ENTRIES = 1  # [_ENTRIES, [[term, index, data, type], ...]]
_HARD_STATE = 2  # [_HARD_STATE, term, vote, commit]
_CONF_STATE = 3  # [_CONF_STATE, voters, learners]
_SAVE_SNAPSHOT = 4  # [_SAVE_SNAPSHOT, *snap_ref]
_COMPACT = 5  # [_COMPACT, index]
_APPLY_SNAPSHOT = 6  # [_APPLY_SNAPSHOT, *snap_ref]
# snap_ref = seq, index, term, voters, learners: the snapshot file's number and its metadata

_ENTRY_OVERHEAD = 16  # about what msgpack adds around an entry's data: for the dead-bytes estimate

# fdatasync skips the inode's timestamps: a log append only needs its data and the file size durable.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class DataDirLocked(StorageError):
    """The data directory is already open (by another process, or another DiskStorage in this one)."""


class StorageDamaged(StorageError):
    """Data that was synced (acknowledged) is gone or unreadable: a log cut short or corrupted
    before its last sync mark, a bad record followed by good ones, a missing or corrupt snapshot
    file. Never a torn write. The node must not start on it: what it acknowledged, and what it
    voted for, may be gone. ``path`` is the damaged file, ``offset`` where the damage starts."""

    def __init__(self, message: str, path: Path, offset: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


def rejoin_hint(data_dir: Path) -> str:
    """How an operator brings back a node whose storage is damaged (README, "Damaged storage")."""
    return (f"to rejoin as a fresh member, move {data_dir} away and restart the node with the same node id"
            " and JOIN_ADDR")


@dataclass(frozen=True, slots=True)
class SyncMark:
    """What a log file held when it was last synced: its size in bytes, its records, and its last
    index (the KV log: its entries). Stored in the file's header (two slots, each written in place
    after a sync returned, alternately), so it becomes durable with the next sync's fdatasync: no
    fsync of its own. Recovery compares the file with it: whatever is missing or bad before
    ``size`` was synced, and is damage, not a torn write."""

    size: int
    records: int
    last: int

    def pack(self, salt: bytes) -> bytes:
        body = _MARK.pack(self.size, self.records, self.last, 0)[:-4]
        return body + struct.pack("<I", zlib.crc32(body, zlib.crc32(salt)))

    @classmethod
    def unpack(cls, raw: bytes | memoryview, at: int, salt: bytes) -> SyncMark | None:
        if len(raw) < at + _MARK.size:
            return None
        size, records, last, crc = _MARK.unpack_from(raw, at)
        if zlib.crc32(raw[at : at + _MARK.size - 4], zlib.crc32(salt)) != crc:
            return None
        return cls(size, records, last)


def _header(magic: bytes, salt: bytes, mark: SyncMark) -> bytes:
    """A version-2 header: magic, salt, ``mark`` in both slots, zeros to the page's end."""
    packed = mark.pack(salt)
    head = bytearray(_HEADER_BYTES)
    head[: len(magic)] = magic
    head[len(magic) : len(magic) + _SALT_BYTES] = salt
    for at in _MARK_SLOTS:
        head[at : at + len(packed)] = packed
    return bytes(head)


def _write_mark(fd: int, mark: SyncMark, salt: bytes) -> None:
    """Record ``mark`` in the slot its record count picks (a torn write of one slot leaves the
    other, one sync older). In place and not synced here: the next sync's fdatasync carries it."""
    os.pwrite(fd, mark.pack(salt), _MARK_SLOTS[mark.records & 1])


def _read_mark(raw: bytes, salt: bytes) -> SyncMark | None:
    """The latest sync mark in a version-2 header (a file's size only grows between rewrites),
    None if neither slot is readable."""
    marks = [m for at in _MARK_SLOTS if (m := SyncMark.unpack(raw, at, salt)) is not None]
    return max(marks, key=lambda m: m.size) if marks else None


def _open_header(
    path: Path, raw: bytes, magic: bytes, magic_v1: bytes, kind: str, data_dir: Path
) -> tuple[int, bytes, SyncMark | None]:
    """Where a log file's records start, its salt, and its sync mark (None: a version-1 file,
    which has none). A header cut short or with no readable mark is damage (the header was
    written whole, and fsynced, before the file got its name); another file is an error."""
    if raw[: len(magic)] == magic:
        if len(raw) < _HEADER_BYTES:
            raise StorageDamaged(
                f"{path}: synced data is damaged: the file ends at byte {len(raw)}, inside its header; refusing to"
                f" start: {rejoin_hint(data_dir)}",
                path,
                len(raw),
            )
        salt = raw[len(magic) : len(magic) + _SALT_BYTES]
        mark = _read_mark(raw, salt)
        if mark is None:
            raise StorageDamaged(
                f"{path}: synced data is damaged: neither sync mark in its header is readable; refusing to start:"
                f" {rejoin_hint(data_dir)}",
                path,
                _MARK_SLOTS[0],
            )
        return _HEADER_BYTES, salt, mark
    if raw[: len(magic_v1)] == magic_v1 and len(raw) >= _V1_HEADER_BYTES:
        return _V1_HEADER_BYTES, raw[len(magic_v1) : _V1_HEADER_BYTES], None
    if len(raw) < len(magic) and magic.startswith(raw):
        raise StorageDamaged(
            f"{path}: synced data is damaged: the file ends at byte {len(raw)}, inside its header; refusing to"
            f" start: {rejoin_hint(data_dir)}",
            path,
            len(raw),
        )
    raise StorageError(f"{path}: not a clusterkit {kind} (bad header)")


def _damaged(
    path: Path, problem: str, scan: _Scan, mark: SyncMark | None, readable: int | None, what: str, data_dir: Path
) -> StorageDamaged:
    """The one-line account of damaged synced data: where, what was synced, what is readable."""
    good = len(scan.ends)
    facts = f"readable are the first {good} records ({what} {readable if readable is not None else 'none'})"
    if mark is not None:
        facts = f"synced were {mark.records} records ({what} {mark.last}), " + facts
        if mark.records > good:
            facts += f": {mark.records - good} synced records are lost"
            if what == "last index" and readable is not None and mark.last > readable:
                facts += f", entries {readable + 1}..{mark.last} among them"
    return StorageDamaged(
        f"{path}: synced data is damaged: {problem}; {facts}; refusing to start: {rejoin_hint(data_dir)}",
        path,
        scan.stop,
    )


@dataclass(slots=True)
class _Scan:
    """A log file's records read by their framing: what recovery judges."""

    ends: list[int]  # end of each valid record, in order (the first starts at the header's end)
    stop: int  # where the valid records stop: the file's end, or a record that fails its checks
    later: int | None  # a valid record after ``stop`` (then ``stop`` is damage, never a torn write)


def _scan(raw: bytes, start: int, salt: bytes) -> _Scan:
    data = memoryview(raw)
    ends: list[int] = []
    pos = start
    while pos < len(raw):
        end = _record_at(data, pos, salt)
        if end is None:
            return _Scan(ends, pos, _next_valid_record(data, raw, pos + 1, salt))
        ends.append(end)
        pos = end
    return _Scan(ends, pos, None)


def _damage(raw: bytes, scan: _Scan, mark: SyncMark | None, start: int) -> str | None:
    """What is wrong with a scanned log beyond a torn tail, in words (None: nothing, or a torn tail).

    A torn write can only be the last record, written after the last sync mark: each sync
    appends one record and fdatasyncs it before the next is written, and the mark is written
    only after that fdatasync returned. So a bad record with a valid one after it, and anything
    bad or missing before the mark, is synced data damaged."""
    if scan.later is not None:
        return f"corrupt record at byte {scan.stop} followed by a valid record at byte {scan.later}"
    if mark is None:
        return None
    if scan.stop < mark.size:
        if scan.stop == len(raw):
            return f"the file ends at byte {len(raw)}, before its last sync mark (byte {mark.size})"
        return f"bad record at byte {scan.stop}, before the last sync mark (byte {mark.size})"
    if mark.size != start and mark.size not in scan.ends:
        return f"the last sync mark (byte {mark.size}) is not at a record boundary"
    return None


def _snap_ref(seq: int, meta: SnapshotMeta) -> list[Any]:
    return [seq, meta.index, meta.term, list(meta.conf.voters), list(meta.conf.learners)]


def _meta_from_ref(ref: tuple[Any, ...]) -> tuple[int, SnapshotMeta]:
    seq, index, term, voters, learners = ref
    return seq, SnapshotMeta(index, term, ConfState(tuple(voters), tuple(learners)))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory entry is: fsync the directory.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_with(path: Path, blob: bytes) -> int:
    """Make ``path`` hold exactly ``blob``, atomically and durably (temp file, fsync, rename, fsync
    of the directory); the new file's descriptor, positioned at its end, for appending."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, blob)
        os.fsync(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _frame(payload: bytes, salt: bytes) -> bytes:
    if len(payload) > _MAX_PAYLOAD:
        raise StorageError(f"a record of {len(payload)} bytes is larger than the log format allows")
    length = struct.pack("<I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length, zlib.crc32(salt)))
    return salt[:4] + length + struct.pack("<I", crc) + payload


def _record_at(data: memoryview, pos: int, salt: bytes) -> int | None:
    """End of the valid record starting at ``pos``, or None if there is none there."""
    if len(data) - pos < _RECORD.size:
        return None
    mark, length, crc = _RECORD.unpack_from(data, pos)
    end = pos + _RECORD.size + length
    if mark != salt[:4] or length == 0 or end > len(data):
        return None
    seed = zlib.crc32(data[pos + 4 : pos + 8], zlib.crc32(salt))
    if zlib.crc32(data[pos + _RECORD.size : end], seed) != crc:
        return None
    return end


def _next_valid_record(data: memoryview, raw: bytes, start: int, salt: bytes) -> int | None:
    """Offset of the first valid record at or after ``start``. Only offsets holding the salt's mark
    are checked (a C-speed search), so even a long torn tail costs little."""
    mark = salt[:4]
    pos = raw.find(mark, start)
    while pos != -1:
        if _record_at(data, pos, salt) is not None:
            return pos
        pos = raw.find(mark, pos + 1)
    return None


class DiskStorage:
    """Raft storage in a directory: see the module docstring for the format and the recovery rules.

    ``conf_state`` is the bootstrap membership, used only when the directory holds no log yet; an
    existing directory is loaded as it was synced. ``rewrite_bytes``: the log file is rewritten
    without its dead records once it is at least this large and at least half dead.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        conf_state: ConfState | None = None,
        *,
        rewrite_bytes: int = 64 << 20,
    ) -> None:
        self.directory = Path(directory)
        self._rewrite_bytes = rewrite_bytes
        self._log_path = self.directory / "log"
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._broken: BaseException | None = None
        self._pending: list[list[Any]] = []  # operations written since the last sync
        self._pending_snaps: dict[int, Snapshot] = {}  # snapshot files those operations need
        self._snap_seq = 0  # file number of the current snapshot (0: none, Snapshot())
        self._on_disk: set[int] = set()  # snapshot files present (and possibly stale)
        self._next_seq = 1
        self._salt = b""
        self._size = 0  # bytes in the log file
        self._format = 2  # the log file's format: 1 has no sync marks (rewritten as 2 on open)
        self._records = 0  # records in the log file
        self._next_mark: SyncMark | None = None  # the mark write_record records (from prepare_sync)
        self._rewrite_at = rewrite_bytes
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True)
            _fsync_dir(self.directory.parent)  # else a power cut can lose the new directory, log and all
        self._lock()
        try:
            if self._log_path.exists():
                self._cur = self._load()
                if self._format == 1:
                    logger.info("%s: rewriting the log in format 2 (with sync marks)", self._log_path)
                    self._rewrite()
            else:
                if any(_SNAP_NAME.fullmatch(p.name) for p in self.directory.iterdir()):
                    # Snapshots are only ever written after the log exists: the log was lost.
                    raise StorageDamaged(
                        f"{self.directory} holds snapshot files but no log: the synced log is lost; refusing to"
                        f" start empty: {rejoin_hint(self.directory)}",
                        self._log_path,
                    )
                self._cur = _Image(conf_state=conf_state or ConfState())
                self._rewrite()
            self._remove_leftovers()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ reads
    def initial_state(self) -> tuple[HardState, ConfState]:
        self._check_open()
        return self._cur.hard_state, self._cur.conf_state

    def snapshot(self) -> Snapshot:
        self._check_open()
        return self._cur.snap

    def first_index(self) -> int:
        self._check_open()
        return self._cur.offset + 1

    def last_index(self) -> int:
        self._check_open()
        return self._cur.last_index()

    def term(self, index: int) -> int:
        self._check_open()
        return self._cur.term(index)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        self._check_open()
        img = self._cur
        if lo <= img.offset or hi > img.last_index() + 1 or lo > hi:
            raise StorageError(f"entries [{lo}, {hi}) out of range [{img.offset + 1}, {img.last_index() + 1})")
        return img.entries[lo - img.offset - 1 : hi - img.offset - 1]

    @property
    def unsynced_writes(self) -> int:
        """Writes buffered since the last ``sync()`` (lost if the process dies now)."""
        return len(self._pending)

    # ----------------------------------------------------------------- writes
    # Each write updates the in-memory image first (which validates it and may raise), then queues
    # the operation that replays it: a refused write never reaches the log.
    def append(self, entries: list[Entry]) -> None:
        self._check_writable()
        if entries:
            self._cur.append(entries)
            # e.type as is: an EntryType packs as its int (an int() per entry costs more than the rest).
            self._pending.append([_ENTRIES, [[e.term, e.index, e.data, e.type] for e in entries]])

    def set_hard_state(self, hs: HardState) -> None:
        self._check_writable()
        self._cur.hard_state = hs
        self._pending.append([_HARD_STATE, hs.term, hs.vote, hs.commit])

    def set_conf_state(self, cs: ConfState) -> None:
        self._check_writable()
        self._cur.conf_state = cs
        self._pending.append([_CONF_STATE, list(cs.voters), list(cs.learners)])

    def save_snapshot(self, snap: Snapshot) -> None:
        self._check_writable()
        if snap.meta.index < self._cur.snap.meta.index:
            raise StorageError(
                f"snapshot at {snap.meta.index} is older than the one held ({self._cur.snap.meta.index})"
            )
        self._cur.snap = snap
        self._pending.append([_SAVE_SNAPSHOT, *_snap_ref(self._new_snapshot(snap), snap.meta)])

    def compact(self, index: int) -> None:
        self._check_writable()
        if index <= self._cur.offset:
            return  # already compacted: nothing to log
        self._cur.compact(index)
        self._pending.append([_COMPACT, index])

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._check_writable()
        self._cur.apply_snapshot(snap)
        self._pending.append([_APPLY_SNAPSHOT, *_snap_ref(self._new_snapshot(snap), snap.meta)])

    def sync(self) -> None:
        """Make every earlier write durable: one record, one fdatasync (more when a snapshot file is
        written or the log is rewritten). A failed write or fsync leaves the storage unusable: after
        a failed fsync the kernel may have dropped the dirty pages, so only a reopen (which reads
        what really is on disk) is safe."""
        self._check_writable()
        if not self._pending:
            return
        try:
            if self._snap_seq in self._pending_snaps:
                # Durable under its own name before any record names it. Snapshots superseded
                # within this batch are never named by a durable state: no file for them.
                self._write_snapshot(self._snap_seq, self._cur.snap)
            record = _frame(msgpack.packb(self._pending, use_bin_type=True), self._salt)
            size = self._size + len(record)
            # Counting the live bytes is O(entries): done when a compaction or a received snapshot just
            # killed many of them, or when the file has doubled since the last count.
            dropped = any(op[0] in (_COMPACT, _APPLY_SNAPSHOT) for op in self._pending)
            if size > self._rewrite_bytes and (dropped or size > self._rewrite_at) and self._mostly_dead(size):
                self._rewrite()
            else:
                assert self._fd is not None
                _write_all(self._fd, record)
                self._size += len(record)
                _datasync(self._fd)
                self._records += 1
                _write_mark(self._fd, SyncMark(self._size, self._records, self._cur.last_index()), self._salt)
                if self._size > self._rewrite_at:
                    self._rewrite_at = 2 * self._size  # mostly live: check again once it doubles
        except OSError as exc:
            self._broken = exc
            raise StorageError(f"{self._log_path}: write failed, reopen the directory to go on: {exc}") from exc
        self._pending.clear()
        self._pending_snaps.clear()
        self._drop_stale_snapshots()

    # A sync in three steps, for a driver that syncs on another thread: the record is encoded on the
    # caller's thread, the other thread only writes it and fdatasyncs (holding the GIL for nothing
    # else), and the caller's thread takes note. sync() is the three in one, and the only way for
    # a batch that must write a snapshot file or rewrite the log.
    def prepare_sync(self) -> bytes | None:
        """The record that makes every earlier write durable, when appending it and fdatasyncing is
        all the sync takes; then :meth:`write_record` it (on any one thread) and :meth:`finish_sync`.
        None when there is nothing to sync, or the sync must do more: call :meth:`sync`. No write may
        come between this and :meth:`finish_sync`."""
        self._check_writable()
        if not self._pending or self._snap_seq in self._pending_snaps:
            return None
        record = _frame(msgpack.packb(self._pending, use_bin_type=True), self._salt)
        size = self._size + len(record)
        if size > self._rewrite_bytes:
            dropped = any(op[0] in (_COMPACT, _APPLY_SNAPSHOT) for op in self._pending)
            if (dropped or size > self._rewrite_at) and self._mostly_dead(size):
                return None  # sync() rewrites the log instead
        self._next_mark = SyncMark(size, self._records + 1, self._cur.last_index())
        return record

    def write_record(self, record: bytes) -> None:
        """Append ``record`` (from :meth:`prepare_sync`) and fdatasync: the part of a sync that may
        run on another thread. A failure leaves the storage unusable, as in :meth:`sync`."""
        try:
            assert self._fd is not None and self._next_mark is not None
            _write_all(self._fd, record)
            _datasync(self._fd)
            _write_mark(self._fd, self._next_mark, self._salt)
        except OSError as exc:
            self._broken = exc
            raise StorageError(f"{self._log_path}: write failed, reopen the directory to go on: {exc}") from exc

    def finish_sync(self, record: bytes) -> None:
        """After :meth:`write_record` returned: the writes ``record`` holds are durable."""
        self._check_writable()
        self._size += len(record)
        self._records += 1
        self._next_mark = None
        if self._size > self._rewrite_at:
            self._rewrite_at = 2 * self._size  # mostly live: check again once it doubles
        self._pending.clear()
        self._pending_snaps.clear()
        self._drop_stale_snapshots()

    # -------------------------------------------------------------- lifecycle
    def close(self, sync: bool = True) -> None:
        """Sync what is buffered (a clean stop loses nothing), then release the directory. With
        ``sync=False`` the buffered writes are dropped, as a kill would drop them (for tests)."""
        if self._lock_fd is None:
            return
        try:
            if sync and self._broken is None and self._pending:
                self.sync()
        finally:
            self._release()

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"[{self.first_index()}, {self.last_index()}]"
        return f"DiskStorage({str(self.directory)!r}, {state})"

    # --------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise StorageError(f"DiskStorage({str(self.directory)!r}) is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._broken is not None:
            raise StorageError(f"{self._log_path}: an earlier write failed ({self._broken}); reopen the directory")

    def _lock(self) -> None:
        path = self.directory / "LOCK"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirLocked(
                    f"{self.directory} is already open (lock {path} held, last taken by process {holder}):"
                    " a data directory serves one node at a time"
                ) from None
            raise
        # Who holds it, for the error above. Fixed width, overwritten in place: truncating a file
        # with data makes ext4 flush it (auto_da_alloc), a few ms for nothing.
        os.pwrite(fd, f"{os.getpid():>12}\n".encode(), 0)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _new_snapshot(self, snap: Snapshot) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self._snap_seq = seq
        self._pending_snaps[seq] = snap
        return seq

    def _snap_path(self, seq: int) -> Path:
        return self.directory / f"snap-{seq:016x}.snap"

    def _write_snapshot(self, seq: int, snap: Snapshot) -> None:
        meta = snap.meta
        body = msgpack.packb(
            [meta.index, meta.term, list(meta.conf.voters), list(meta.conf.learners), snap.data], use_bin_type=True
        )
        blob = _SNAP_MAGIC + struct.pack("<I", zlib.crc32(body)) + body
        path = self._snap_path(seq)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)
        self._on_disk.add(seq)

    def _read_snapshot(self, seq: int, meta: SnapshotMeta) -> Snapshot:
        if seq == 0:
            return Snapshot()
        path = self._snap_path(seq)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise StorageDamaged(
                f"{path}: the log names this snapshot but the file is missing: synced state is lost; refusing"
                f" to start: {rejoin_hint(self.directory)}",
                path,
            ) from None
        head = len(_SNAP_MAGIC) + 4
        if len(blob) < head or blob[: len(_SNAP_MAGIC)] != _SNAP_MAGIC:
            raise StorageDamaged(
                f"{path}: not a clusterkit snapshot file; refusing to start: {rejoin_hint(self.directory)}", path
            )
        (crc,) = struct.unpack_from("<I", blob, len(_SNAP_MAGIC))
        if zlib.crc32(memoryview(blob)[head:]) != crc:
            raise StorageDamaged(
                f"{path}: snapshot file is corrupt (bad CRC): synced state is damaged; refusing to start:"
                f" {rejoin_hint(self.directory)}",
                path,
            )
        index, term, voters, learners, data = msgpack.unpackb(memoryview(blob)[head:], use_list=False)
        snap = Snapshot(SnapshotMeta(index, term, ConfState(tuple(voters), tuple(learners))), data)
        if snap.meta != meta:
            raise StorageError(f"{path}: holds the snapshot {snap.meta}, the log names {meta}")
        return snap

    def _drop_stale_snapshots(self) -> None:
        # The log durably names self._snap_seq now: every other snapshot file is garbage. Not fsynced:
        # a file that comes back after a crash is removed on open.
        for seq in sorted(self._on_disk - {self._snap_seq}):
            self._snap_path(seq).unlink(missing_ok=True)
            self._on_disk.discard(seq)

    def _remove_leftovers(self) -> None:
        for path in self.directory.iterdir():
            m = _SNAP_NAME.fullmatch(path.name)
            if path.name == "log.tmp" or (path.name.endswith(".tmp") and _SNAP_NAME.fullmatch(path.name[:-4])):
                logger.info("%s: removing %s, left by an interrupted write", self.directory, path.name)
                path.unlink(missing_ok=True)
            elif m is not None:
                seq = int(m.group(1), 16)
                self._next_seq = max(self._next_seq, seq + 1)
                if seq != self._snap_seq:
                    logger.info("%s: removing %s, a snapshot no durable state names", self.directory, path.name)
                    path.unlink(missing_ok=True)
                else:
                    self._on_disk.add(seq)

    def _mostly_dead(self, size: int) -> bool:
        live = sum(len(e.data) + _ENTRY_OVERHEAD for e in self._cur.entries) + _HEADER_BYTES + 256
        return 2 * live <= size

    def _rewrite(self) -> None:
        """Replace the log with one record holding the live state: temp file, fsync, rename, fsync
        of the directory. Until the rename the old log is intact, so a crash leaves one of the two."""
        img = self._cur
        ops: list[list[Any]] = [
            [_BASE, img.offset, img.offset_term, *_snap_ref(self._snap_seq, img.snap.meta)],
            [_HARD_STATE, img.hard_state.term, img.hard_state.vote, img.hard_state.commit],
            [_CONF_STATE, list(img.conf_state.voters), list(img.conf_state.learners)],
        ]
        if img.entries:
            ops.append([_ENTRIES, [[e.term, e.index, e.data, e.type] for e in img.entries]])
        salt = os.urandom(_SALT_BYTES)  # new salt: records of the old file can never pass for this one's
        record = _frame(msgpack.packb(ops, use_bin_type=True), salt)
        size = _HEADER_BYTES + len(record)
        blob = _header(_LOG_MAGIC, salt, SyncMark(size, 1, img.last_index())) + record
        fd = _replace_with(self._log_path, blob)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd  # positioned at the end of the renamed file: later records go after the blob
        self._salt, self._size, self._records = salt, size, 1
        self._rewrite_at = max(self._rewrite_bytes, 2 * self._size)

    def _load(self) -> _Image:
        raw = self._log_path.read_bytes()
        data = memoryview(raw)
        start, salt, mark = _open_header(self._log_path, raw, _LOG_MAGIC, _LOG_MAGIC_V1, "log", self.directory)
        self._format = 1 if mark is None else 2
        scan = _scan(raw, start, salt)
        img: _Image | None = None
        pos = start
        for end in scan.ends:
            try:
                ops = msgpack.unpackb(data[pos + _RECORD.size : end], use_list=False)
                for op in ops:
                    img = self._replay(img, op)
            except StorageError as exc:
                raise StorageError(f"{self._log_path}: record at byte {pos} does not apply: {exc}") from exc
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise StorageError(f"{self._log_path}: record at byte {pos} is unreadable: {exc!r}") from exc
            pos = end
        problem = _damage(raw, scan, mark, start)
        if problem is not None:
            readable = img.last_index() if img is not None else None
            raise _damaged(self._log_path, problem, scan, mark, readable, "last index", self.directory)
        if scan.stop < len(raw):
            logger.warning(
                "%s: torn tail after %d records: cutting %d bytes at byte %d (a sync that never returned)",
                self._log_path,
                len(scan.ends),
                len(raw) - scan.stop,
                scan.stop,
            )
            self._cut(scan.stop)
        if img is None:
            raise StorageError(f"{self._log_path}: no valid first record")
        img.snap = self._read_snapshot(self._snap_seq, img.snap.meta)
        self._salt, self._size, self._records = salt, scan.stop, len(scan.ends)
        self._fd = os.open(self._log_path, os.O_WRONLY)  # (not O_APPEND: the sync marks are written in place)
        os.lseek(self._fd, self._size, os.SEEK_SET)
        self._rewrite_at = max(self._rewrite_bytes, 2 * self._size)
        return img

    def _replay(self, img: _Image | None, op: tuple[Any, ...]) -> _Image:
        code = op[0]
        if code == _BASE:
            seq, meta = _meta_from_ref(op[3:])
            self._snap_seq = seq
            # The snapshot's data is read once, at the end: only the last one named matters.
            if img is not None:
                raise StorageError("a base record after the first record")
            self._next_seq = max(self._next_seq, seq + 1)
            return _Image(snap=Snapshot(meta), offset=op[1], offset_term=op[2])
        if img is None:
            raise StorageError("the log does not start with a base record")
        if code == _ENTRIES:
            img.append([Entry(t, i, d, ty) for t, i, d, ty in op[1]])
        elif code == _HARD_STATE:
            img.hard_state = HardState(op[1], op[2], op[3])
        elif code == _CONF_STATE:
            img.conf_state = ConfState(tuple(op[1]), tuple(op[2]))
        elif code == _SAVE_SNAPSHOT:
            self._snap_seq, meta = _meta_from_ref(op[1:])
            img.snap = Snapshot(meta)
        elif code == _COMPACT:
            img.compact(op[1])
        elif code == _APPLY_SNAPSHOT:
            self._snap_seq, meta = _meta_from_ref(op[1:])
            img.apply_snapshot(Snapshot(meta))
        else:
            raise StorageError(f"unknown operation {code!r}")
        self._next_seq = max(self._next_seq, self._snap_seq + 1)
        return img

    def _cut(self, size: int) -> None:
        fd = os.open(self._log_path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)  # the cut must be durable before new records land after it
        finally:
            os.close(fd)
