"""The Ready pipeline: every step of a node's Ready, in the order durability demands, written once.

For each Ready of the node host: persist it (the host writes it to storage),
then if it must be synced: send the messages that may leave before the sync
(a leader's appends, heartbeats, commit notices: ``Ready.take_early_messages``),
start the sync (``prepare_sync`` encodes the record here, the driver's
:class:`~.syncs.SyncRunner` writes it and fdatasyncs, ``finish_sync`` takes
note), and while it runs apply the committed entries an earlier sync already
made durable (``NodeHost.apply_stable``). Once synced: send the rest, restore
a received snapshot, apply, serve reads, advance and compact
(``NodeHost.finish``). Then the next Ready, until there is none.

Sans-IO: the driver supplies the transport (``send``), the sync runner (its
clock or its threads) and, through the host, the disk. memnet, the SimPy
simulator and the TCP node run this same object, so the simulator exercises
the interleaving production runs: proposals and messages arriving while a
sync is under way, entries applied before it ends, a crash in the middle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from ..raft.messages import Message
from ..raft.ready import Ready
from .syncs import INLINE, SyncRunner


class RecordDisk(Protocol):
    """A disk whose sync comes in three steps (net/disk.py's DiskStorage, MemoryStorage): the
    record is made on the driver's loop, written and synced wherever the runner likes, then noted.
    No write may come between :meth:`prepare_sync` and :meth:`finish_sync`."""

    def prepare_sync(self) -> Any:
        """The record that makes every earlier write durable, or None: then :meth:`sync` does it all."""
        ...

    def write_record(self, record: Any) -> None: ...

    def finish_sync(self, record: Any) -> None: ...

    def sync(self) -> None: ...


class Steps(Protocol):
    """What the pipeline drives: the node host's steps of a Ready (clusterkit.host.NodeHost)."""

    storage: Any
    incarnation: int

    @property
    def up(self) -> bool: ...

    def begin(self) -> Ready | None: ...

    def apply_stable(self, rd: Ready) -> int: ...

    def finish(self, rd: Ready) -> list[Message]: ...


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


def reraise(exc: BaseException) -> None:
    """A pipeline's default ``failed``: the error propagates to whoever drove it."""
    raise exc


@dataclass(eq=False)
class _Sync:
    """One Ready whose sync is under way."""

    rd: Ready
    storage: Any
    record: Any  # prepare_sync's (None: a whole sync())
    life: int  # the host's incarnation when it started: a crash makes it someone else's
    done: bool = False
    error: BaseException | None = None


@dataclass
class PipelineStats:
    readies: int = 0
    syncs: int = 0
    early_sent: int = 0  # messages sent while their Ready's sync ran
    applied_while_syncing: int = 0  # committed entries applied while a later Ready's sync ran


class Pipeline:
    """Drains one node host's Readies. ``send``: the driver's transport. ``syncs``: how the disk is
    synced. ``held``: the driver holds the node between Readies (a paused process); a later
    :meth:`kick` goes on. ``idle``: no Ready is left. ``failed``: a write, sync or apply raised
    (the pipeline stops; by default the exception propagates)."""

    def __init__(
        self,
        host: Steps,
        send: Callable[[list[Message]], None],
        syncs: SyncRunner = INLINE,
        *,
        held: Callable[[], bool] = _never,
        idle: Callable[[], None] = _nothing,
        failed: Callable[[BaseException], None] = reraise,
    ) -> None:
        self.host = host
        self.send = send
        self.syncs = syncs
        self.held = held
        self.idle = idle
        self.failed = failed
        self.stats = PipelineStats()
        self._sync: _Sync | None = None
        self._running = False

    @property
    def syncing(self) -> bool:
        """A sync of this life of the node is under way (its callback will go on draining)."""
        sync = self._sync
        return sync is not None and sync.life == self.host.incarnation and self.host.up

    def kick(self) -> None:
        """Drain what is ready: call it after every input (a message, a tick, a proposal)."""
        if self._running or self.syncing:
            return  # the loop under way, or the sync's callback, takes the new work too
        self._sync = None  # (one of an earlier life, if any: it died with that process)
        self._run(None)

    def _run(self, synced: _Sync | None) -> None:
        host = self.host
        self._running = True
        try:
            if synced is not None:
                self._complete(synced)
            while not self.held():
                rd = host.begin()
                if rd is None:
                    self.idle()
                    return
                self.stats.readies += 1
                if not rd.must_sync():
                    out = host.finish(rd)
                    if out:
                        self.send(out)
                    continue
                sync = self._start(rd)
                if not sync.done:
                    return  # _done goes on
                self._complete(sync)
        except Exception as exc:  # noqa: BLE001 - the driver decides (the TCP node halts)
            self._sync = None
            self.failed(exc)
        finally:
            self._running = False

    def _start(self, rd: Ready) -> _Sync:
        host = self.host
        early = rd.take_early_messages()
        if early:
            self.stats.early_sent += len(early)
            self.send(early)
        storage = host.storage
        prepare = getattr(storage, "prepare_sync", None)
        record = prepare() if prepare is not None else None
        sync = _Sync(rd, storage, record, host.incarnation)
        self._sync = sync
        self.stats.syncs += 1
        work = storage.sync if record is None else partial(storage.write_record, record)
        self.syncs.start(partial(self._work, sync, work), partial(self._done, sync))
        if sync.error is None:
            # What an earlier sync made durable needs nothing of this one (an inline sync is done
            # already, and this applies the same entries: the same steps in every driver).
            self.stats.applied_while_syncing += host.apply_stable(rd)
        return sync

    def _work(self, sync: _Sync, work: Callable[[], None]) -> None:
        if sync is self._sync and sync.life == self.host.incarnation:
            work()  # (not for a node that crashed since: its process is gone)

    def _done(self, sync: _Sync, error: BaseException | None) -> None:
        sync.done, sync.error = True, error
        if self._running or sync is not self._sync:
            return  # an inline sync (the loop goes on), or a stale one
        if sync.life != self.host.incarnation or not self.host.up:
            self._sync = None  # crashed or halted while the disk synced: nothing of it leaves
            return
        self._run(sync)

    def _complete(self, sync: _Sync) -> None:
        self._sync = None
        if sync.error is not None:
            raise sync.error
        if sync.record is not None:
            sync.storage.finish_sync(sync.record)
        out = self.host.finish(sync.rd)
        if out:
            self.send(out)
