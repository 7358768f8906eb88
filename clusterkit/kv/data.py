"""One node's KV data: partitions of versioned records, and the log that makes them durable.

Every change is also queued as a log entry; the driver persists the queued
entries (and syncs them) before it sends any answer that acknowledges them,
so an acknowledged write survives a crash. :meth:`KVData.replay` rebuilds
the data from the entries that were synced.

Every change also gets a sequence number (LSN) in this copy's life, and
:meth:`KVData.changes` lists a partition's records changed after a given LSN
(migration batches page through a partition in change order, so a record
changed while they do comes again, never skipped).

Each partition also has a *floor*: a counter above every tombstone this copy
has collected there (see :meth:`KVData.collect`). A write's version goes above
the floors its query saw, and a copy refuses a write or a copy of data whose
sender knew an older floor than its own (the server's part), so a collected
delete can't be undone by a value older than it arriving late.

And each partition keeps :data:`BUCKETS` digests, the XOR of a stable hash of
every (key, version) in that bucket, kept up to date on every change: two
copies compare 1,024 numbers instead of their data, and anti-entropy fetches
only the buckets whose digests differ. Under a steady stream of writes two
copies always differ by the few keys still being replicated: buckets fine
enough that those few touch a few buckets, not all of them, keep repair from
fetching whole partitions again and again (with 64 buckets it did, and took
a third of the nodes' CPU in a 12-second ASYNC benchmark). Once a partition
has been fetched from, it also keeps its keys by bucket, so a fetch reads
only the buckets asked for.
"""

from __future__ import annotations

import hashlib
import zlib
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .records import Record, newer

# Log entries: ["put", partition, key, record-wire], ["drop", partition], ["del", partition, key]
# (a collected tombstone), ["floor", partition, counter], ["copy", partition, epoch, cluster epoch] and
# ["seen", cluster epoch] (the newest map the server acted on).
LogEntry = list[Any]

BUCKETS = 1024


def bucket_of(key: str) -> int:
    return zlib.crc32(key.encode()) % BUCKETS


def record_size(key: str, record: Record) -> int:
    """About what one record takes in a batch."""
    return len(key) + (len(record.value) if record.value is not None else 0) + 16


def _digest(key: str, counter: int, writer: str) -> int:
    """A stable 64-bit hash of one key at one version (the same in every process)."""
    return int.from_bytes(_blake2b(f"{key}\0{counter}\0{writer}".encode(), digest_size=8).digest(), "big")


_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_crc32 = zlib.crc32


@dataclass(slots=True)
class _Part:
    """One partition's records and what is kept up to date with them on every change."""

    records: dict[str, Record]
    sums: list[int] = field(default_factory=lambda: [0] * BUCKETS)  # per bucket: XOR of its digests
    digests: dict[str, int] = field(default_factory=dict)  # key -> its digest now
    key_lsn: dict[str, int] = field(default_factory=dict)  # key -> its last change
    # Every change as parallel (LSN, key) lists in LSN order; an entry whose key changed again
    # later is stale and skipped (the lists are trimmed when mostly stale).
    lsns: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    sorted: list[str] | None = None  # key order, for scan (None: to sort again)
    # Per bucket, its keys: built at the first fetch by bucket (anti-entropy), then kept up to date
    by_bucket: list[list[str]] | None = None


@dataclass
class KVData:
    parts: dict[int, dict[str, Record]] = field(default_factory=dict)
    unsynced: list[LogEntry] = field(default_factory=list)
    lsn: int = 0  # the newest change's sequence number (in this life of the data)
    synced_lsn: int = 0  # every change up to this one is durable (the driver says so: mark_synced)
    # Per partition, its indexes (see _Part); ``parts[p]`` is ``_state[p].records``.
    _state: dict[int, _Part] = field(default_factory=dict)
    floors: dict[int, int] = field(default_factory=dict)  # per partition: above every tombstone collected
    # Per partition this node is copying in: the placement epoch its copy was started at (see
    # KVServer._start_pull). Kept across restarts, dropped with the partition.
    copying: dict[int, int] = field(default_factory=dict)
    seen_epoch: int = 0  # the newest cluster epoch a copy was started at (a map older than this is stale)

    def get(self, partition: int, key: str) -> Record | None:
        part = self.parts.get(partition)
        return part.get(key) if part is not None else None

    def put(self, partition: int, key: str, record: Record) -> bool:
        """Merge one copy: keep whichever version is newer. True when ours changed."""
        return self.put_many(partition, ((key, record),)) == 1

    def put_many(self, partition: int, items: Sequence[tuple[str, Record]]) -> int:
        """:meth:`put` each of ``items`` (keys of ``partition``); how many changed ours."""
        if not items:
            return 0  # (nothing to merge: not even an empty partition to start)
        # (the hot path of every write on every copy: the partition's indexes looked up once per
        # batch, the version compared inline, _digest and bucket_of inlined)
        st = self._state.get(partition)
        if st is None:
            st = self._part(partition)
        records, digests, sums, key_lsn, lsns, keys = st.records, st.digests, st.sums, st.key_lsn, st.lsns, st.keys
        log, lsn, changed = self.unsynced.append, self.lsn, 0
        for key, record in items:
            old = records.get(key)
            version = record.version
            counter, writer = version.counter, version.writer
            bucket = _crc32(key.encode()) % BUCKETS
            if old is None:
                st.sorted = None
                if st.by_bucket is not None:
                    st.by_bucket[bucket].append(key)
                was = 0
            else:
                held = old.version
                if counter < held.counter or (counter == held.counter and writer <= held.writer):
                    continue  # ours is as new or newer (see records.newer)
                was = digests[key]
            digest = digests[key] = _from_bytes(_blake2b(f"{key}\0{counter}\0{writer}".encode(), digest_size=8).digest(), "big")
            sums[bucket] ^= was ^ digest
            records[key] = record
            log(["put", partition, key, [counter, writer, record.value]])
            lsn += 1
            key_lsn[key] = lsn
            lsns.append(lsn)
            keys.append(key)
            changed += 1
        self.lsn = lsn
        if len(lsns) > 2 * len(records) + 1024:
            self._trim(st)
        return changed

    def _part(self, partition: int) -> _Part:
        records = self.parts.get(partition)
        if records is None:
            records = self.parts[partition] = {}
        st = self._state[partition] = _Part(records)
        return st

    @staticmethod
    def _trim(st: _Part) -> None:
        current = st.key_lsn
        live = [(n, k) for n, k in zip(st.lsns, st.keys) if current.get(k) == n]
        st.lsns = [n for n, _k in live]
        st.keys = [k for _n, k in live]

    def changes(
        self, partition: int, after: int, limit: int, max_bytes: int = 4 << 20
    ) -> tuple[list[tuple[str, Record]], int, bool]:
        """Records of ``partition`` changed after LSN ``after``, oldest change first: up to
        ``limit`` of them and about ``max_bytes`` (at least one); the LSN to ask after next time;
        and whether that reached the newest change. ``after=0`` lists the whole partition. A
        record changed again while a caller pages through comes again later: none is skipped."""
        st = self._state.get(partition)
        if st is None:
            return [], after, True
        lsns, keys, part, current = st.lsns, st.keys, st.records, st.key_lsn
        i = bisect_right(lsns, after)
        out: list[tuple[str, Record]] = []
        size, cursor = 0, after
        while i < len(lsns) and len(out) < limit:
            n, k = lsns[i], keys[i]
            if current.get(k) == n:  # else stale: k changed again later
                record = part[k]
                size += record_size(k, record)
                if out and size > max_bytes:
                    break
                out.append((k, record))
            cursor = n
            i += 1
        return out, max(cursor, after), i >= len(lsns)

    def drop(self, partition: int) -> None:
        """Forget a partition this node no longer serves (its floor too)."""
        had = self.parts.pop(partition, None) is not None
        had = self.copying.pop(partition, None) is not None or had
        if self.floors.pop(partition, None) is not None or had:
            self._state.pop(partition, None)
            self.unsynced.append(["drop", partition])

    def start_copy(self, partition: int, epoch: int, cluster_epoch: int) -> bool:
        """A copy of ``partition`` starts at placement ``epoch`` (the cluster being at
        ``cluster_epoch``). What this node holds of the partition is dropped first (it is from an
        earlier ownership), unless a copy started at that same placement already (this node
        restarted during it), or the map is older than one a copy was started at before (a
        restarted node whose cluster state hasn't caught up yet). True when dropped."""
        if self.copying.get(partition) == epoch or cluster_epoch < self.seen_epoch:
            return False
        self.drop(partition)
        self.copying[partition] = epoch
        self.seen_epoch = cluster_epoch
        self.unsynced.append(["copy", partition, epoch, cluster_epoch])
        return True

    def continue_copy(self, partition: int, epoch: int, cluster_epoch: int) -> None:
        """The copy of ``partition`` under way goes on at a newer placement ``epoch`` (this node
        stayed incoming): what it copied so far stays, and a restart keeps it from now on."""
        if self.copying.get(partition) != epoch:
            self.copying[partition] = epoch
            self.seen_epoch = max(self.seen_epoch, cluster_epoch)
            self.unsynced.append(["copy", partition, epoch, cluster_epoch])

    def note_epoch(self, cluster_epoch: int) -> None:
        """The server acts on the map at ``cluster_epoch`` (drops, copies): logged, so that after a
        restart it waits for its cluster state to catch up to at least this epoch."""
        if cluster_epoch > self.seen_epoch:
            self.seen_epoch = cluster_epoch
            self.unsynced.append(["seen", cluster_epoch])

    def floor(self, partition: int) -> int:
        return self.floors.get(partition, 0)

    def raise_floor(self, partition: int, floor: int) -> None:
        if floor > self.floors.get(partition, 0):
            self.floors[partition] = floor
            self.unsynced.append(["floor", partition, floor])

    def collect(self, partition: int, key: str, tombstone: Record) -> bool:
        """Remove ``key`` if what this copy holds for it is exactly ``tombstone`` (a newer write
        stays). The caller raises the floor above it first. True when removed."""
        part = self.parts.get(partition)
        held = part.get(key) if part is not None else None
        if held is None or held.value is not None or held.version != tombstone.version:
            return False
        self._remove(partition, key)
        self.unsynced.append(["del", partition, key])
        return True

    def _remove(self, partition: int, key: str) -> None:
        st = self._state[partition]
        del st.records[key]
        bucket = bucket_of(key)
        st.sums[bucket] ^= st.digests.pop(key)
        if st.by_bucket is not None:
            st.by_bucket[bucket].remove(key)
        st.key_lsn.pop(key, None)  # its entries in the change lists are now stale
        st.sorted = None

    def tombstones(self, partition: int) -> dict[str, Record]:
        return {k: r for k, r in self.parts.get(partition, {}).items() if r.value is None}

    def scan(
        self, partition: int, after: str | None, limit: int, max_bytes: int = 4 << 20,
        buckets: set[int] | None = None,
    ) -> tuple[list[tuple[str, Record]], bool]:
        """Records with keys after ``after`` (in ``buckets`` only, when given), in key order: up to
        ``limit`` of them and about ``max_bytes`` of keys and values (always at least one, so a
        batch makes progress); and whether that was the end."""
        st = self._state.get(partition)
        if st is None:
            return [], True
        part = st.records
        if buckets is None:
            keys = st.sorted
            if keys is None:
                keys = st.sorted = sorted(part)
        else:  # only those buckets' keys, sorted: a repair asks for few buckets of a large partition
            if st.by_bucket is None:
                st.by_bucket = [[] for _ in range(BUCKETS)]
                for k in part:
                    st.by_bucket[bucket_of(k)].append(k)
            keys = sorted(k for b in buckets if 0 <= b < BUCKETS for k in st.by_bucket[b])
        out: list[tuple[str, Record]] = []
        size = 0
        for i in range(0 if after is None else bisect_right(keys, after), len(keys)):
            k = keys[i]
            if len(out) >= limit:
                return out, False
            record = part[k]
            size += record_size(k, record)
            if out and size > max_bytes:
                return out, False
            out.append((k, record))
        return out, True

    def sums(self, partition: int) -> list[int]:
        """The partition's bucket digests (all zero when it holds nothing)."""
        st = self._state.get(partition)
        return list(st.sums) if st is not None else [0] * BUCKETS

    def take_unsynced(self) -> list[LogEntry]:
        out, self.unsynced = self.unsynced, []
        return out

    def mark_synced(self, lsn: int) -> None:
        """The driver made every change up to ``lsn`` durable (``lsn``: :attr:`lsn` when it took
        those entries). A driver that never calls this has :meth:`durable` say so only of keys
        never changed in this life of the data (replayed ones are durable)."""
        if lsn > self.synced_lsn:
            self.synced_lsn = lsn

    def durable(self, partition: int, key: str) -> bool:
        """Whether what this copy holds for ``key`` now is on disk (its last change synced), so an
        answer that reports it need not wait for the next sync."""
        st = self._state.get(partition)
        lsn = st.key_lsn.get(key) if st is not None else None
        return lsn is None or lsn <= self.synced_lsn

    def keys(self) -> int:
        return sum(len(p) for p in self.parts.values())

    @classmethod
    def replay(cls, entries: list[LogEntry]) -> KVData:
        """The data as the synced log left it (entries already checked by whoever read them)."""
        data = cls()
        for entry in entries:
            if entry[0] == "put":
                data.put(entry[1], entry[2], Record.from_wire(entry[3]))
            elif entry[0] == "drop":
                data.drop(entry[1])
            elif entry[0] == "floor":
                data.raise_floor(entry[1], entry[2])
            elif entry[0] == "copy":
                data.copying[entry[1]] = entry[2]
                data.seen_epoch = max(data.seen_epoch, entry[3])
            elif entry[0] == "seen":
                data.seen_epoch = max(data.seen_epoch, entry[1])
            elif entry[0] == "del" and entry[2] in data.parts.get(entry[1], {}):
                data._remove(entry[1], entry[2])
        data.unsynced = []
        data.synced_lsn = data.lsn  # replayed from the synced log
        return data

    def compacted(self) -> list[LogEntry]:
        """The shortest log that replays to this data (to rewrite a log that grew long)."""
        return [["seen", self.seen_epoch], *(["copy", p, e, self.seen_epoch] for p, e in self.copying.items()),
                *(["floor", p, f] for p, f in self.floors.items()),
                *(["put", p, k, r.to_wire()] for p, part in self.parts.items() for k, r in part.items())]

    def snapshot(self) -> list[tuple[int, dict[str, Record], int, int | None, int]]:
        """The data as it is now, to write out while it changes: one shallow copy per partition (a
        C-level dict copy: records are immutable) and its floor, read by :func:`snapshot_entries`."""
        return [(p, dict(self.parts.get(p, {})), self.floors.get(p, 0), self.copying.get(p), self.seen_epoch)
                for p in {*self.parts, *self.floors, *self.copying}]


def snapshot_entries(snapshot: list[tuple[int, dict[str, Record], int, int | None, int]]) -> Iterator[tuple[Any, ...]]:
    """The log entries (as tuples: msgpack writes them as arrays) that replay to ``snapshot``, one
    at a time: a rewrite of a large data set builds no list of them, and leaves the cyclic
    collector nothing to find."""
    top = max((seen for *_rest, seen in snapshot), default=0)
    if top:
        yield ("seen", top)
    for p, part, floor, copying, seen in snapshot:
        if copying is not None:
            yield ("copy", p, copying, seen)
        if floor:
            yield ("floor", p, floor)
        for k, r in part.items():
            v = r.version
            yield ("put", p, k, (v.counter, v.writer, r.value))
