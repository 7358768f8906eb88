"""One read or write of one key, run as ABD over the partition's copies (sans-IO).

A write asks a read quorum (:meth:`Placement.read_done`) for their newest version
(phase 1) and stores ``(highest counter + 1, its own writer id)`` on every
serving copy, done when :meth:`Placement.write_done` holds (phase 2). A read
asks a read quorum and returns the newest record, first writing it back to a
write quorum unless enough copies already hold it, so that no later read can
return anything older (the step that makes quorum reads linearizable).

Collected tombstones: each copy reports its partition's *floor* with its
answer, a new version's counter goes above every floor seen, and the Store
carries the highest floor seen. A copy that collected tombstones since, and
can't tell whether one of them was newer than this Store, refuses it
``collected``: that copy just doesn't count toward the quorum. The write never
takes a second version: once one version may be visible, a second, higher one
could overtake a later write.

Used by the smart client (SYNC: the client coordinates) and by a node
(SERVER-SIDE, and any node's HTTP routes). The owner sends what
:meth:`start`/:meth:`on_message`/:meth:`retry` return and calls
:meth:`refresh` with a newer placement when a copy answered ``stale``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .messages import Ack, Found, Message, Query, Refused, Store
from .quorum import Placement, Quorums
from .records import Record, Value, Version

Outbound = tuple[str, Message]

QUERY, STORE, DONE = "query", "store", "done"


@dataclass
class Operation:
    key: str
    placement: Placement
    quorums: Quorums
    writer: str  # unique per operation: versions never collide
    next_rid: Callable[[], int]
    write: bool = False
    value: Value | None = None  # for a write: None deletes
    phase: str = QUERY
    rid: int = 0
    answered: dict[str, Record | None] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    behind: set[str] = field(default_factory=set)  # copies whose map is older: asked again on retry
    record: Record | None = None  # being stored (write, or a read's write-back)
    result: Record | None = None
    outcome: str | None = None  # ok | fail | info
    detail: str = ""
    stored_any: bool = False  # a Store went out: a failure now may still have written
    stale: bool = False  # a copy has a newer placement: refresh before going on
    floor: int = 0  # the highest partition floor seen: new versions go above it, Stores carry it
    refreshed: bool = False  # storing at a newer placement than the one its version was chosen at

    # ------------------------------------------------------------ driving
    def start(self) -> list[Outbound]:
        if not self.placement.holders:
            self._finish("fail", "no complete copy of this partition is left")
            return []
        return self._phase(QUERY)

    def _phase(self, phase: str) -> list[Outbound]:
        self.phase, self.rid = phase, self.next_rid()
        self.answered, self.acked, self.behind = {}, set(), set()
        return self._send_all()

    def _targets(self) -> tuple[str, ...]:
        return self.placement.asked  # incoming owners answer queries too (see Placement.read_done)

    def _request(self) -> Message:
        p = self.placement
        if self.phase == QUERY:
            return Query(self.rid, p.number, p.epoch, self.key)
        assert self.record is not None
        self.stored_any = True
        return Store(self.rid, p.number, p.epoch, self.key, self.record, self.floor, self.refreshed)

    def _send_all(self) -> list[Outbound]:
        msg = self._request()
        return [(n, msg) for n in self._targets()]

    def retry(self) -> list[Outbound]:
        """Ask again every copy that hasn't answered (requests are idempotent)."""
        if self.outcome is not None or self.stale:
            return []
        done = self.answered.keys() if self.phase == QUERY else self.acked
        msg = self._request()
        return [(n, msg) for n in self._targets() if n not in done]

    def refresh(self, placement: Placement) -> list[Outbound]:
        """Go on at a newer placement: a query asks again there. A write already storing keeps
        its version (a second one could overtake a later write), marked ``refreshed``: a new owner
        still copying can't tell it from a version older than a delete collected since its query,
        and refuses it for a key it doesn't hold yet (the other owners can complete it). A read's
        write-back asks again (its answer is whatever the new placement holds)."""
        if self.outcome is not None or placement.epoch <= self.placement.epoch:
            return []
        self.placement, self.stale = placement, False
        if not placement.holders:
            self._finish("info" if self.stored_any else "fail", "no complete copy of this partition is left")
            return []
        if self.write and self.phase == STORE:
            self.refreshed = True
            return self._phase(STORE)
        return self._phase(QUERY)

    def expire(self) -> None:
        if self.outcome is None:
            self._finish("info" if self.stored_any else "fail", "timed out")

    # ------------------------------------------------------------ answers
    def on_message(self, src: str, msg: Message) -> list[Outbound]:
        if self.outcome is not None or getattr(msg, "rid", None) != self.rid:
            return []  # late: an earlier phase's answer
        if isinstance(msg, Refused):
            if msg.reason == "stale":
                self.stale = True
            elif msg.reason == "behind":
                self.behind.add(src)
            return []
        if self.phase == QUERY and isinstance(msg, Found) and src in self.placement.asked:
            self.answered[src] = msg.record
            if msg.floor > self.floor:
                self.floor = msg.floor
            if self.placement.read_done(self.answered, self.quorums):
                return self._queried()
        elif self.phase == STORE and isinstance(msg, Ack) and src in self.placement.asked:
            self.acked.add(src)
            if self.placement.write_done(self.acked, self.quorums):
                self._finish("ok")
        return []

    def _queried(self) -> list[Outbound]:
        newest: Record | None = None
        for record in self.answered.values():
            if record is not None and (newest is None or record.version > newest.version):
                newest = record
        if self.write:
            top = newest.version.counter if newest is not None else 0
            self.record = Record(Version(max(top, self.floor) + 1, self.writer), self.value)
            return self._phase(STORE)
        self.result = newest
        if newest is None:
            self._finish("ok")  # never written (or only by writes that haven't reached a quorum)
            return []
        holding = {n for n, r in self.answered.items() if r is not None and r.version == newest.version}
        self.quorums = self.quorums.writeback()  # (from here on this read only writes back)
        if self.placement.write_done(holding, self.quorums):
            self._finish("ok")  # enough copies hold it already: no write-back needed
            return []
        self.record = newest
        return self._phase(STORE)

    def _finish(self, outcome: str, detail: str = "") -> None:
        self.outcome, self.detail, self.phase = outcome, detail, DONE
        if self.write and outcome == "ok":
            self.result = self.record
