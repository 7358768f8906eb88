"""The thread a node's disk syncs run on: one per log, the Raft log's (net/node.py) and the KV
store's (net/kv_service.py); and :class:`ThreadSyncs`, the core pipelines' sync runner on it."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from functools import partial

from clusterkit.host.syncs import Done


class SyncThread:
    """One thread that runs a node's disk syncs, each handed over with a queue put and answered
    through the loop (``call_soon_threadsafe``): an executor's bookkeeping (a work item, a
    concurrent future chained to an asyncio one, their locks) ran per sync too, each piece in the
    thread needing the GIL back from a busy loop. The record is encoded on the loop
    (DiskStorage.prepare_sync), so the thread holds the GIL only between its system calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self._queue: queue.SimpleQueue[tuple[Callable[[], None], asyncio.Future[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        """Done once ``fn()`` returned on the thread (or with the exception it raised)."""
        fut = self.loop.create_future()
        self._queue.put((fn, fut))
        return fut

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, fut = item
            try:
                fn()
                error: BaseException | None = None
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, where the drain fails
                error = exc
            try:
                self.loop.call_soon_threadsafe(_settle, fut, error)
            except RuntimeError:
                return  # the loop is closed: nobody waits any more

    def stop(self, timeout: float = 10.0) -> None:
        """Let the sync under way finish, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class ThreadSyncs:
    """A pipeline's :class:`~clusterkit.host.syncs.SyncRunner` on a :class:`SyncThread`: the work on
    the thread, ``done`` on the loop. ``note``: each sync's duration (metrics). ``pending``: the
    latest sync's future (a clean stop waits for it)."""

    def __init__(self, thread: SyncThread, note: Callable[[float], None] | None = None) -> None:
        self.thread = thread
        self.note = note
        self.pending: asyncio.Future[None] | None = None

    def start(self, work: Callable[[], None], done: Done) -> None:
        fut = self.thread.run(work)
        self.pending = fut
        fut.add_done_callback(partial(self._end, time.perf_counter(), done))

    def _end(self, started: float, done: Done, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            return
        if self.note is not None:
            self.note(time.perf_counter() - started)
        done(fut.exception())
