"""Faults a test harness injects into a real node: cut links, a skewed clock, a stalled disk.

Off unless the node is started with ``--fault-injection`` (which also needs an API token: a
node whose links anyone could cut is a node anyone could take down). When on, ``POST
/debug/faults`` (authenticated like every other state-changing route) sets them; ``GET
/debug/faults`` reads them. The real-process scenario runner (net/real_runner.py) drives this.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .http_body import BadBody, parse_json
from .sync_thread import SyncThread

log = logging.getLogger(__name__)

ROUTE = "/debug/faults"
MAX_PEERS = 1024
MAX_STALL = 3600.0
MIN_RATE, MAX_RATE = 0.01, 100.0


@dataclass
class FaultControl:
    """What is injected now. ``cut_to``: peers this node's Raft messages don't reach (a one-way
    cut; the runner cuts both ways by telling both ends). ``clock_rate``: its ticks come this many
    times as often. ``stall_until``: (time.monotonic) its disk syncs hang until then."""

    cut_to: frozenset[str] = frozenset()
    clock_rate: float = 1.0
    stall_until: float = 0.0
    changes: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def drops(self, dst: str) -> bool:
        return dst in self.cut_to

    def stall_left(self) -> float:
        return max(0.0, self.stall_until - self.clock())

    def apply(self, doc: Any) -> None:
        """Set what ``doc`` names: ``cut`` (list of node ids: replaces the cut set), ``rate`` (the
        clock's speed), ``stall`` (seconds from now), ``heal`` (true: everything back). ValueError,
        one line, for anything else."""
        if not isinstance(doc, Mapping) or not doc:
            raise ValueError("expected a JSON object with cut, rate, stall or heal")
        unknown = sorted(set(doc) - {"cut", "rate", "stall", "heal"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(str, unknown))}: expected cut, rate, stall or heal")
        cut, rate, stall, heal = self.cut_to, self.clock_rate, self.stall_until, doc.get("heal", False)
        if type(heal) is not bool:
            raise ValueError(f"heal must be true or false, got {heal!r}")
        if heal:
            cut, rate, stall = frozenset(), 1.0, 0.0
        if "cut" in doc:
            peers = doc["cut"]
            if not isinstance(peers, list) or len(peers) > MAX_PEERS or not all(
                    isinstance(p, str) and 0 < len(p) <= 128 for p in peers):
                raise ValueError(f"cut must be a list of at most {MAX_PEERS} node ids")
            cut = frozenset(peers)
        if "rate" in doc:
            rate = _number(doc["rate"], "rate", MIN_RATE, MAX_RATE)
        if "stall" in doc:
            stall = self.clock() + _number(doc["stall"], "stall", 0.0, MAX_STALL)
        self.cut_to, self.clock_rate, self.stall_until = cut, rate, stall
        self.changes += 1
        log.warning("fault injection: cut to %s, clock x%g, disk stalled %.3f s more",
                    sorted(cut) or "nobody", rate, self.stall_left())

    def as_dict(self) -> dict[str, Any]:
        return {"cut": sorted(self.cut_to), "rate": self.clock_rate, "stall_left": round(self.stall_left(), 6),
                "changes": self.changes}

    def sync_thread(self, loop: asyncio.AbstractEventLoop, name: str) -> SyncThread:
        return _StallingSyncThread(self, loop, name)


class _StallingSyncThread(SyncThread):
    """Each sync first waits out a stall (on the sync thread: the loop goes on, as with a slow disk)."""

    def __init__(self, control: FaultControl, loop: asyncio.AbstractEventLoop, name: str) -> None:
        super().__init__(loop, name)
        self.control = control

    def run(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        def stalled() -> None:
            wait = self.control.stall_left()
            if wait > 0:
                time.sleep(wait)
            fn()

        return super().run(stalled)


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def add_routes(app: web.Application, control: FaultControl) -> None:
    async def show(_request: web.Request) -> web.Response:
        return web.json_response(control.as_dict())

    async def change(request: web.Request) -> web.Response:
        try:
            control.apply(parse_json(await request.read()))
        except (BadBody, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(control.as_dict())

    app.router.add_get(ROUTE, show)
    app.router.add_post(ROUTE, change)
