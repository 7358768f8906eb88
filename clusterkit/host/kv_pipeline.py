"""The KV store's data layer loop: log, sync, send, written once for every driver.

A :class:`~clusterkit.kv.server.KVServer` changes its data and queues answers
as it handles messages and ticks. Its answers may only leave once the changes
they report are durable, so the loop is: take the new log entries and the
answers queued with them, have the disk write them as one record (one
fdatasync for the whole batch: group commit, the server goes on handling
requests meanwhile, their entries wait for the next record), then mark the
data synced and send those answers; then the next batch. Answers that report
only durable data leave at once (``take_early``). When the log has grown
enough the disk rewrites it from the live data, with no record beside it.

Sans-IO: the driver supplies the disk, the routing of answers and the
:class:`~.syncs.SyncRunner` (the TCP node's sync thread, the simulator's
fsync delay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ..kv.data import LogEntry, snapshot_entries
from .pipeline import reraise
from .syncs import SyncRunner

log = logging.getLogger("clusterkit.host.kv")

Outbound = tuple[str, Any]  # (destination, message)


class KVDisk(Protocol):
    def encode_record(self, entries: list[LogEntry]) -> Any:
        """The record that holds ``entries`` (encoded on the driver's loop)."""
        ...

    def write_record(self, record: Any) -> None:
        """Append the record and sync it: durable when this returns (the runner's work)."""
        ...

    def wants_rewrite(self) -> bool: ...

    def rewrite(self, entries: Iterable[Any]) -> int:
        """Replace the log with ``entries`` (the live data); how many there were."""
        ...


class KVServerSteps(Protocol):
    """What the loop drives: clusterkit.kv.server.KVServer, with ``answer_early`` on (its ``data``
    has ``lsn``, ``take_unsynced()``, ``mark_synced(lsn)`` and ``snapshot()``)."""

    data: Any

    def take_outbox(self) -> list[Outbound]: ...

    def take_early(self) -> list[Outbound]: ...


@dataclass(eq=False)
class _Write:
    """A record (or a rewrite) the disk is writing."""

    lsn: int  # the data's lsn when its entries were taken (-1: a rewrite)
    out: list[Outbound] = field(default_factory=list)  # the answers that wait for it
    done: bool = False
    error: BaseException | None = None
    rewritten: int = 0


@dataclass
class KVPipelineStats:
    records: int = 0
    rewrites: int = 0
    early_sent: int = 0


class KVPipeline:
    """One KV server's log-sync-send loop. ``route``: send answers. ``failed``: a write or sync
    raised (the loop stops, never answering what may not be durable; by default it propagates)."""

    def __init__(
        self,
        server: KVServerSteps,
        disk: KVDisk,
        route: Callable[[list[Outbound]], None],
        syncs: SyncRunner,
        *,
        failed: Callable[[BaseException], None] = reraise,
        name: str = "",
    ) -> None:
        self.name = name  # the node's id, for the log lines
        self.server = server
        self.disk = disk
        self.route = route
        self.syncs = syncs
        self.failed = failed
        self.stats = KVPipelineStats()
        self._write: _Write | None = None
        self._running = False
        self._stopped = False

    @property
    def writing(self) -> bool:
        return self._write is not None

    def kick(self) -> None:
        """After the server handled input: early answers now, then log, sync, send."""
        if self._stopped:
            return
        early = self.server.take_early()
        if early:
            self.stats.early_sent += len(early)
            self.route(early)
        if not self._running and self._write is None:
            self._run(None)

    def _run(self, written: _Write | None) -> None:
        self._running = True
        try:
            if written is not None and not self._complete(written):
                return
            server = self.server
            data = server.data
            while True:
                lsn = data.lsn
                entries = data.take_unsynced()
                out = server.take_outbox()
                if not entries:
                    if not out:
                        return
                    self.route(out)
                    continue
                write = self._start(_Write(lsn, out), partial(self.disk.write_record, self.disk.encode_record(entries)))
                if not write.done or not self._complete(write):
                    return  # _done goes on
        except Exception as exc:  # noqa: BLE001 - the driver decides (the TCP node halts)
            self._stopped = True
            self._write = None
            self.failed(exc)
        finally:
            self._running = False

    def _start(self, write: _Write, work: Callable[[], None]) -> _Write:
        self._write = write
        self.syncs.start(work, partial(self._done, write))
        return write

    def _done(self, write: _Write, error: BaseException | None) -> None:
        write.done, write.error = True, error
        if not self._running and write is self._write:
            self._run(write)

    def _complete(self, write: _Write) -> bool:
        """Note a finished write; False when a rewrite started after it is still under way."""
        self._write = None
        if write.error is not None:
            raise write.error
        if write.lsn < 0:
            self.stats.rewrites += 1
            log.info("%s: KV log rewritten: %d live records", self.name, write.rewritten)
            return True
        self.stats.records += 1
        self.server.data.mark_synced(write.lsn)
        if write.out:
            self.route(write.out)
        if not self.disk.wants_rewrite():
            return True
        # The live data copied here, encoded and written by the runner; no record until it's done.
        rewrite = _Write(-1)
        entries = snapshot_entries(self.server.data.snapshot())
        self._start(rewrite, partial(self._rewrite, rewrite, entries))
        return rewrite.done and self._complete(rewrite)

    def _rewrite(self, write: _Write, entries: Iterable[Any]) -> None:
        write.rewritten = self.disk.rewrite(entries)
