"""What a caller holds while its proposal or read makes its way through Raft.

Drivers differ in how they wait (a loop in memnet, a SimPy event, an asyncio
future), so a request is plain state plus callbacks run once, when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class _Request:
    done: bool = False
    ok: bool = False
    error: str | None = None
    # None until a callback is added: a leader makes one Proposal per write, most with one callback.
    _callbacks: list[Callable[[Any], None]] | None = field(default=None, repr=False)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Run ``fn(self)`` when the request ends (at once if it has)."""
        if self.done:
            fn(self)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    def _finish(self, ok: bool, error: str | None = None) -> None:
        if self.done:
            return
        self.done, self.ok, self.error = True, ok, error
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for fn in callbacks:
                fn(self)


@dataclass(eq=False, slots=True)
class Proposal(_Request):
    """An entry this node appended as leader, known by (index, term).

    It succeeds when the entry at ``index`` applies with ``term`` (``result``
    is the state machine's answer); it fails when another entry took that
    index (a new leader overwrote it), and ends with ``error="unknown"`` when
    the node restarted or installed a snapshot past it before seeing it apply:
    it may or may not have happened.
    """

    index: int = 0
    term: int = 0
    result: Any = None


@dataclass(eq=False, slots=True)
class ReadRequest(_Request):
    """A linearizable read: done once the leader confirmed ``index`` and this node applied it;
    the caller then reads its state machine. It fails if the node crashes; a read whose
    leadership round never completes stays pending: the caller times out and retries."""

    context: bytes = b""
    index: int = 0
