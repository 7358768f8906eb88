"""Durable Raft storage: an append-only log file (net/disk.py, kept) against sqlite in WAL mode.

Both take the writes of one Ready batch (a batch of entries, then the hard state) and make them
durable with one commit, the way the node host drives storage (group commit: one sync per batch).
For batch sizes 1, 16 and 256 (100-byte entries) each runs for ``--seconds`` and prints entries
appended per second, the latency of the sync (the fsync and what the store does around it), the
CPU time per entry (what is left once the disk is fast or the cores are busy), and the time to
reopen what was written. ``bare file`` appends the batch's bytes and fdatasyncs, nothing else: the
floor both sit on. The stores take turns in short slices (``--slices``), so a drift in the disk's
latency hits all of them alike.

sqlite runs with ``journal_mode=WAL`` and ``synchronous=FULL`` (in WAL mode NORMAL syncs only at
checkpoints, so a commit could be lost), one transaction per batch, replacing a conflicting suffix
with a DELETE as Raft requires.

    .venv/bin/python bench/disk_storage.py [--seconds 0.5] [--slices 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clusterkit.net.disk import DiskStorage  # noqa: E402
from clusterkit.raft import ConfState, Entry, HardState  # noqa: E402

BATCHES = (1, 16, 256)
DATA = b"x" * 100


class SqliteWal:
    """The same writes as DiskStorage's append/set_hard_state/sync, kept in sqlite (WAL mode)."""

    def __init__(self, directory: str) -> None:
        self.db = sqlite3.connect(os.path.join(directory, "raft.db"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, term INTEGER, type INTEGER, data BLOB)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB)")
        self.in_tx = False

    def _begin(self) -> None:
        if not self.in_tx:
            self.db.execute("BEGIN")
            self.in_tx = True

    def append(self, entries: list[Entry]) -> None:
        self._begin()
        self.db.execute("DELETE FROM log WHERE idx >= ?", (entries[0].index,))
        self.db.executemany(
            "INSERT INTO log VALUES (?, ?, ?, ?)", [(e.index, e.term, int(e.type), e.data) for e in entries]
        )

    def set_hard_state(self, hs: HardState) -> None:
        self._begin()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('hs', ?)", (f"{hs.term} {hs.vote} {hs.commit}".encode(),))

    def sync(self) -> None:
        if self.in_tx:
            self.db.execute("COMMIT")
            self.in_tx = False

    def load(self) -> int:
        rows = self.db.execute("SELECT idx, term, type, data FROM log ORDER BY idx").fetchall()
        entries = [Entry(t, i, d, ty) for i, t, ty, d in rows]  # what DiskStorage's reopen builds too
        return len(entries)

    def close(self) -> None:
        self.db.close()


class BareFile:
    """The floor: the batch's bytes appended to a file and fdatasync'd, nothing else."""

    def __init__(self, directory: str) -> None:
        self.fd = os.open(os.path.join(directory, "bare"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.buf: list[bytes] = []

    def append(self, entries: list[Entry]) -> None:
        self.buf.extend(e.data for e in entries)

    def set_hard_state(self, hs: HardState) -> None:
        self.buf.append(b"%d" % hs.commit)

    def sync(self) -> None:
        os.write(self.fd, b"".join(self.buf))
        self.buf.clear()
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Run:
    """One store at one batch size, fed in slices alternating with the other stores: the disk's
    latency drifts (a shared virtual disk), and alternating lets every store see the same drift."""

    name: str
    directory: str
    make: Callable[[str], Any]
    batch: int
    store: Any = None
    index: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    syncs: list[float] = field(default_factory=list)
    reopen: float | None = None

    def slice(self, seconds: float) -> None:
        if self.store is None:
            self.store = self.make(self.directory)
        s, batch = self.store, self.batch
        cpu, start = time.process_time(), time.perf_counter()
        while time.perf_counter() - start < seconds:
            ents = [Entry(1, self.index + k + 1, DATA) for k in range(batch)]
            self.index += batch
            s.append(ents)
            s.set_hard_state(HardState(1, "a", self.index))
            t = time.perf_counter()
            s.sync()
            self.syncs.append(time.perf_counter() - t)
        self.seconds += time.perf_counter() - start
        self.cpu += time.process_time() - cpu

    def finish(self) -> None:
        self.store.close()
        if self.make is BareFile:
            return
        t = time.perf_counter()
        again = self.make(self.directory)
        n = again.load() if isinstance(again, SqliteWal) else again.last_index()
        self.reopen = time.perf_counter() - t
        again.close()
        assert n == self.index, (self.name, n, self.index)

    def line(self) -> str:
        lat = sorted(self.syncs)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        reopen = "" if self.reopen is None else f"  reopen {self.index:>9,} entries {self.reopen * 1e3:6.0f} ms"
        return (
            f"{self.name:<10} batch {self.batch:>3}  {self.index / self.seconds:>9,.0f} appends/s"
            f"  {len(lat) / self.seconds:>6,.0f} syncs/s  sync p50 {statistics.median(lat) * 1e3:5.2f} ms"
            f"  p99 {p99 * 1e3:6.2f} ms  cpu {self.cpu / self.index * 1e6:5.1f} us/entry{reopen}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="per store and batch size")
    ap.add_argument("--slices", type=int, default=5, help="alternations between the stores")
    ap.add_argument("--dir", default=None, help="where the temporary stores go (default: the system temp dir)")
    args = ap.parse_args(argv)
    stores: dict[str, Callable[[str], Any]] = {
        "bare file": BareFile,
        "log file": lambda d: DiskStorage(d, ConfState(("a",))),
        "sqlite WAL": SqliteWal,
    }
    for batch in BATCHES:
        with tempfile.TemporaryDirectory(dir=args.dir) as base:
            runs = []
            for name, make in stores.items():
                os.mkdir(os.path.join(base, str(len(runs))))
                runs.append(Run(name, os.path.join(base, str(len(runs))), make, batch))
            for _ in range(args.slices):
                for r in runs:
                    r.slice(args.seconds / args.slices)
            for r in runs:
                r.finish()
                print(r.line(), flush=True)


if __name__ == "__main__":
    main()
