"""ALL: W = RF. A write is acknowledged only once every owner holds it; reads stay quorum reads.

The client coordinates, as in SYNC (the smart client runs ABD against the owners; a node asked
directly coordinates in its place), with W = RF. Reads ask R = a majority of RF, not one copy: a
read of one copy, returned as is, could see a write still in progress on that copy and not on
another, and a later read of the other copy would go back in time. ABD's write-back stops that,
but the write-back must reach copies that every later read meets. With R = 1 that is every copy,
so every read would need every owner up, which is worse than asking a majority. With R a
majority, the write-back needs only RF - R + 1 copies (a majority too), and when the copies a
read asked already agree there is none: one round trip, a majority up.

What W = RF buys: an acknowledged write is on every owner, so it survives the loss of all but
one of them for good. What it costs: a write fails while any owner (a node marked failed
included, until its partitions have moved) can't be reached.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from .base import Strategy
from .sync import SYNC

if TYPE_CHECKING:
    from ..quorum import Quorums


class WriteAll(Strategy):
    __slots__ = ()

    def quorums(self, rf: int, w: int = 0, r: int = 0) -> Quorums:
        from ..quorum import Quorums

        if w not in (0, rf):
            raise ValueError(f"the {self.name} strategy writes to every owner: W is RF={rf}, got W={w}")
        majority = rf // 2 + 1
        r = r or majority
        return Quorums(rf, rf, r, echo=max(1, rf - r + 1))


# Routed, served and checked as SYNC is: only the quorums differ.
ALL = WriteAll(**{f.name: getattr(SYNC, f.name) for f in fields(SYNC)} | {"name": "all"})
