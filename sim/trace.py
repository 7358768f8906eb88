"""A run's trace: messages, role changes, faults and client operations, with a digest.

Every record goes into a running BLAKE2b digest, so two runs can be compared
by one hex string; the event lines (not the messages, unless asked) are
kept for the trace file. Times are printed to the microsecond: the same
scenario and seed give the same bytes, in any process.
"""

from __future__ import annotations

import hashlib
from typing import Any


class Trace:
    def __init__(self, keep_messages: bool = False) -> None:
        self.keep_messages = keep_messages
        self.lines: list[str] = []
        self.messages = 0
        self._digest = hashlib.blake2b(digest_size=16)

    def _add(self, line: str, keep: bool) -> None:
        self._digest.update(line.encode())
        self._digest.update(b"\n")
        if keep:
            self.lines.append(line)

    def event(self, t: float, text: str) -> None:
        self._add(f"{t:.6f} {text}", True)

    def message(self, t: float, m: Any, copies: int) -> None:
        self.messages += 1
        # Into the digest as compact bytes (this runs per message); the readable line only when kept.
        self._digest.update(b"%r %s>%s %s %d %d\n" % (t, m.src.encode(), m.dst.encode(),
                                                       type(m).__name__.encode(), m.term, copies))
        if self.keep_messages:
            fate = "lost" if copies == 0 else ("dup" if copies > 1 else "")
            self.lines.append(f"{t:.6f} msg {m.src}>{m.dst} {type(m).__name__} t{m.term} {fate}".rstrip())

    def digest(self) -> str:
        return self._digest.hexdigest()

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
