"""How a node process keeps CPython's cyclic garbage collector off its long-lived data.

A node holds hundreds of thousands of long-lived objects (the KV store's records and their
versions, the Raft log) and makes them at tens of thousands a second. CPython's collector walks
every tracked object in a generation each time it collects it, and a full collection whenever the
objects promoted since the last one reach a quarter of those it walked then: as the data grows,
full collections keep coming, each longer than the last. In ``bench/kv.py`` (ASYNC, 10 s) one node
spent 1.3 s of CPU in one, and the young and middle collections took another 8% of each node's CPU.

So a node freezes (``gc.freeze``) whatever survives a middle-generation collection: objects that
outlived about a million allocations are the data, and frozen ones are never walked again. The
cost is that a reference cycle frozen while alive and dropped later is not reclaimed until the next
full collection, which runs here at most every ``every`` seconds and only once the frozen set has
grown by ``growth`` since the last one (then it unfreezes, collects and freezes again, and logs how
long that took). Process-wide: installed by the node's process (``clusterkit node``), not by a
library that happens to run a node in someone else's process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger("clusterkit.net")

GC_YOUNG = 50_000  # objects allocated (net) between young collections in a node's process


def tune_gc() -> None:
    """Young collections every GC_YOUNG allocations, older ones at least 20 of those apart. At
    CPython's default, a young collection every 700 net allocations, the cyclic collector ran about
    400 times a second on a Raft leader under load and its full collections walked the whole log:
    2 us of the leader's 9 us per committed write (the in-process bench, 256 in flight); in a KV
    client process pushing tens of thousands of requests a second it took a fifth of the CPU.
    Process-wide, and only ever raised."""
    young, older, oldest = gc.get_threshold()
    if 0 < young < GC_YOUNG:
        gc.set_threshold(GC_YOUNG, max(older, 20), max(oldest, 20))


class LongLivedGC:
    """Freeze what survives a middle-generation collection; collect everything now and then."""

    def __init__(self, every: float = 300.0, growth: float = 1.5, check: float = 10.0) -> None:
        if every <= 0 or growth <= 1 or check <= 0:
            raise ValueError("every and check must be positive and growth above 1")
        self.every, self.growth, self.check = every, growth, check
        self.installed = False
        self._thresholds: tuple[int, ...] = gc.get_threshold()
        self.last_full = time.monotonic()
        self.frozen_after_full = 0
        self.full_collections = 0

    def install(self) -> None:
        if not self.installed:
            self._thresholds = gc.get_threshold()
            tune_gc()
            gc.callbacks.append(self._after_collection)
            self.installed = True

    def uninstall(self) -> None:
        """Undo :meth:`install`: the thresholds as they were, nothing frozen."""
        if self.installed:
            gc.callbacks.remove(self._after_collection)
            gc.set_threshold(*self._thresholds)
            self.installed = False
            gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] >= 1:
            gc.freeze()

    def due(self, now: float) -> bool:
        return (now - self.last_full >= self.every
                and gc.get_freeze_count() >= self.growth * max(self.frozen_after_full, GC_YOUNG))

    def collect(self) -> float:
        """A full collection of everything, frozen or not; how long it took (seconds)."""
        t0 = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        took = time.perf_counter() - t0
        self.last_full, self.frozen_after_full = time.monotonic(), gc.get_freeze_count()
        self.full_collections += 1
        log.info("full garbage collection: %d unreachable, %d objects kept, %.3f s", found,
                 self.frozen_after_full, took)
        return took

    async def run(self) -> None:
        """Check every ``check`` seconds whether a full collection is due (until cancelled)."""
        while True:
            await asyncio.sleep(self.check)
            if self.due(time.monotonic()):
                self.collect()
