"""The KV store's data on disk: an append-only, CRC-checked log of :class:`~clusterkit.kv.data.KVData`
entries, with group commit, replay on restart, a torn tail cut, and compaction by rewriting.

The file format is :mod:`.disk`'s (a one-page header of magic, salt and two sync-mark slots, then
records ``mark | length | crc32 | payload``; the CRC covers the salt, the length and the payload),
with its own magic so a Raft log can never be opened as a KV log. A record's payload is a msgpack
list of log entries: one :meth:`KVLog.append` is one record and one ``fdatasync`` (the driver calls
it once per batch of server output, before that batch's answers go out), after which the header's
sync mark records the file's size, records and entries (written in place, made durable by the next
sync's ``fdatasync``: no fsync of its own). Recovery follows :mod:`.disk`'s rules: a bad record
after the sync mark with nothing valid after it is a torn write (that batch's sync never returned,
so nothing acknowledged is lost) and is cut with a warning; anything bad or missing before the sync
mark, or a bad record followed by a valid one, is damage of synced data and refuses to open
(:class:`~.disk.StorageDamaged`). A version-1 file (no sync marks) is read by the old rule and
rewritten in version 2.

Compaction: once the file is larger than ``rewrite_bytes`` and ``dead_ratio`` times what it was
after it was last opened or rewritten (the live data then, a measured baseline rather than a
guess), :meth:`KVLog.rewrite` writes ``KVData.compacted()`` to ``log.tmp`` (fsync, rename,
directory fsync): a crash at any point leaves either the old log or the new one. Each rewrite
waits for the log to grow by a factor again, so its cost is amortized over the writes.

Not thread-safe: one driver at a time (``append`` may run in a worker thread while the event loop
only queues more entries).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack

from clusterkit.kv.data import LogEntry
from clusterkit.raft.errors import StorageError

from .disk import (
    _HEADER_BYTES,
    SyncMark,
    _damage,
    _damaged,
    _datasync,
    _frame,
    _header,
    _open_header,
    _replace_with,
    _scan,
    _write_all,
    _write_mark,
)

log = logging.getLogger("clusterkit.net.kv_disk")

MAGIC_V1 = b"CKKVL\x00\x00\x01"  # 16-byte header, no sync marks: read, then rewritten as version 2
MAGIC = b"CKKVL\x00\x00\x02"
SALT_BYTES = 8
HEADER_BYTES = _HEADER_BYTES
_RECORD_HEADER = 12
REWRITE_RECORD_ENTRIES = 4096  # a rewritten log holds the live data in records of this many entries
_array_header = msgpack.Packer().pack_array_header


class KVLog:
    def __init__(self, directory: str | os.PathLike[str], *, rewrite_bytes: int = 8 << 20, dead_ratio: float = 4.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "log"
        self.rewrite_bytes = rewrite_bytes
        self.dead_ratio = dead_ratio
        self.size = 0
        self._baseline = 0  # the size after the last load or rewrite: the live data then
        self.records = 0
        self.entries = 0  # entries in the file's records (the sync mark's count)
        self.syncs = 0
        self.rewrites = 0
        self.torn_bytes = 0
        self._fd: int | None = None
        self._salt = b""
        self._lock_fd: int | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()

    # ------------------------------------------------------------ open
    def _lock(self) -> None:
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageError(f"{self.directory} is already open (another node process?)") from None
        self._lock_fd = fd

    def load(self) -> list[LogEntry]:
        """Every synced entry, in order (a torn tail cut first). Creates an empty log when none exists."""
        tmp = self.path.with_name("log.tmp")
        if tmp.exists():
            log.info("%s: removing log.tmp, left by an interrupted rewrite", self.directory)
            tmp.unlink()
        if not self.path.exists():
            self._write_new([])
            return []
        raw = self.path.read_bytes()
        data = memoryview(raw)
        start, salt, mark = _open_header(self.path, raw, MAGIC, MAGIC_V1, "KV log", self.directory.parent)
        scan = _scan(raw, start, salt)
        entries: list[LogEntry] = []
        pos = start
        for end in scan.ends:
            try:
                batch = msgpack.unpackb(data[pos + _RECORD_HEADER : end], raw=False, use_list=True)
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise StorageError(f"{self.path}: record at byte {pos} is unreadable: {exc!r}") from exc
            if not isinstance(batch, list) or not all(_valid(e) for e in batch):
                raise StorageError(f"{self.path}: record at byte {pos} holds something that is not a KV log entry")
            entries.extend(batch)
            pos = end
        problem = _damage(raw, scan, mark, start)
        if problem is not None:
            # (the node's data directory is this one's parent: moving it away makes a fresh member)
            raise _damaged(self.path, problem, scan, mark, len(entries), "entries", self.directory.parent)
        if scan.stop < len(raw):
            log.warning("%s: torn tail after %d records: cutting %d bytes at byte %d (a sync that never returned)",
                        self.path, len(scan.ends), len(raw) - scan.stop, scan.stop)
            self.torn_bytes = len(raw) - scan.stop
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, scan.stop)
                os.fsync(fd)
            finally:
                os.close(fd)
        if mark is None:
            log.info("%s: rewriting the KV log in format 2 (with sync marks)", self.path)
            self._write_new(entries)
            return entries
        self._salt, self.size, self.records, self.entries = salt, scan.stop, len(scan.ends), len(entries)
        self._baseline = self.size
        self._fd = os.open(self.path, os.O_WRONLY)  # (not O_APPEND: the sync marks are written in place)
        os.lseek(self._fd, self.size, os.SEEK_SET)
        return entries

    # ------------------------------------------------------------ write
    def append(self, entries: list[LogEntry]) -> None:
        """One record holding ``entries``, written and fdatasync'd: durable when this returns."""
        if entries:
            self.write_record(self.encode_record(entries))

    def encode_record(self, entries: list[LogEntry]) -> bytes:
        """The record :meth:`write_record` appends for ``entries`` (framed and checksummed). A driver
        encodes on its event loop and hands only the bytes to a syncing thread, which then needs
        the GIL for as little as possible."""
        return _frame(msgpack.packb(entries, use_bin_type=True), self._salt)

    def write_record(self, blob: bytes) -> None:
        """Append one record from :meth:`encode_record` and fdatasync: durable when this returns
        (may run in a worker thread; one call at a time, never beside a rewrite)."""
        assert self._fd is not None, "load() first"
        _write_all(self._fd, blob)
        _datasync(self._fd)
        self.size += len(blob)
        self.records += 1
        self.entries += _array_len(blob, _RECORD_HEADER)
        self.syncs += 1
        _write_mark(self._fd, SyncMark(self.size, self.records, self.entries), self._salt)

    def wants_rewrite(self) -> bool:
        data, baseline = self.size - HEADER_BYTES, self._baseline - HEADER_BYTES  # (records only)
        return data >= max(self.rewrite_bytes, self.dead_ratio * baseline)

    def rewrite(self, entries: Iterable[LogEntry | tuple[Any, ...]]) -> int:
        """Replace the log with one holding exactly ``entries`` (the live data; any iterable, packed
        as it goes, so a large data set is never a list of lists at once). How many there were."""
        n = self._write_new(entries)
        self.rewrites += 1
        return n

    def _write_new(self, entries: Iterable[LogEntry | tuple[Any, ...]]) -> int:
        salt = os.urandom(SALT_BYTES)  # a new salt: the old file's records can never pass for this one's
        parts, chunk, records, n = [b""], [], 0, 0  # (the header goes first, once the sizes are known)
        pack = msgpack.Packer(use_bin_type=True).pack
        for entry in entries:
            chunk.append(pack(entry))
            if len(chunk) == REWRITE_RECORD_ENTRIES:
                parts.append(_frame(_array_header(len(chunk)) + b"".join(chunk), salt))
                records, n, chunk = records + 1, n + len(chunk), []
        if chunk:
            parts.append(_frame(_array_header(len(chunk)) + b"".join(chunk), salt))
            records, n = records + 1, n + len(chunk)
        size = HEADER_BYTES + sum(map(len, parts))
        parts[0] = _header(MAGIC, salt, SyncMark(size, records, n))
        blob = b"".join(parts)
        fd = _replace_with(self.path, blob)  # (positioned at its end, where the next record goes)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._salt, self.size, self.records, self.entries = salt, size, records, n
        self._baseline = self.size
        return n

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stats(self) -> dict[str, Any]:
        return {"log_bytes": self.size, "log_records": self.records, "syncs": self.syncs, "rewrites": self.rewrites}


def _array_len(blob: bytes, at: int) -> int:
    """The length of the msgpack array starting at ``blob[at]`` (a record's payload: its entries)."""
    first = blob[at]
    if first & 0xF0 == 0x90:
        return first & 0x0F
    if first == 0xDC:
        return int.from_bytes(blob[at + 1 : at + 3], "big")
    if first == 0xDD:
        return int.from_bytes(blob[at + 1 : at + 5], "big")
    raise ValueError(f"a KV log record's payload is not an array (first byte {first:#x})")


def _valid(entry: Any) -> bool:
    if not isinstance(entry, list) or not entry:
        return False
    if entry[0] == "put":
        return len(entry) == 4 and type(entry[1]) is int and isinstance(entry[2], str) and isinstance(entry[3], list)
    if entry[0] == "drop":
        return len(entry) == 2 and type(entry[1]) is int
    if entry[0] == "del":
        return len(entry) == 3 and type(entry[1]) is int and isinstance(entry[2], str)
    if entry[0] == "floor":
        return len(entry) == 3 and type(entry[1]) is int and type(entry[2]) is int
    if entry[0] == "seen":
        return len(entry) == 2 and type(entry[1]) is int
    if entry[0] == "copy":
        return len(entry) == 4 and all(type(e) is int for e in entry[1:])
    return False
