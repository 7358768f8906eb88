"""How a pipeline has a disk synced: the one thing a driver's clock or threads decide.

A pipeline never syncs a disk itself. It hands the work (write the record,
fdatasync) to a :class:`SyncRunner` and goes on with what needs no sync (the
early sends, applying what is already durable); the runner calls it back, on
the driver's own loop, once the work has run. The TCP node runs the work on a
thread, the simulator after a simulated fsync's delay, memnet at once
(:class:`InlineSyncs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Done = Callable[[BaseException | None], None]


class SyncRunner(Protocol):
    def start(self, work: Callable[[], None], done: Done) -> None:
        """Run ``work`` (now, later, on any one thread), then call ``done`` on the driver's loop with
        what it raised (None: it returned). A runner may drop both for a node that died meanwhile:
        the pipeline takes a late ``done`` of an earlier life for nothing."""
        ...


class InlineSyncs:
    """Syncs that are done when started: a disk without latency (memnet, a clean stop)."""

    def start(self, work: Callable[[], None], done: Done) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - handed to the pipeline, which reports it
            done(exc)
            return
        done(None)


INLINE = InlineSyncs()
