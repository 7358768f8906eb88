"""Client requests by sender and request id: those in progress, then the answers sent.

A duplicated request (the network may deliver one twice) is answered, never run twice: a second
run could write after the first had answered "fail". An answer is kept for at least one
``age()`` period after it was sent: two generations, the older dropped whole at each ``age()``.
(Nested by sender, no tuple per request and no per-entry tick: one object per request, its answer,
for the garbage collector to walk.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import Message, Refused, Result


@dataclass
class RequestLog:
    in_progress: dict[str, dict[int, None]] = field(default_factory=dict)
    answers: dict[str, dict[int, Message]] = field(default_factory=dict)
    older_answers: dict[str, dict[int, Message]] = field(default_factory=dict)

    def state(self, src: str, rid: int) -> Message | bool:
        """The answer sent (still remembered), True while in progress, False if nothing."""
        for table in (self.answers, self.older_answers):
            answers = table.get(src)
            if answers is not None and rid in answers:
                return answers[rid]
        running = self.in_progress.get(src)
        return running is not None and rid in running

    def begin(self, src: str, rid: int) -> None:
        running = self.in_progress.get(src)
        if running is None:
            self.in_progress[src] = {rid: None}
        else:
            running[rid] = None

    def answered(self, dst: str, msg: Result | Refused) -> None:
        """``msg`` (a Result or Refused) goes to ``dst``: remembered if it answers a request in progress."""
        running = self.in_progress.get(dst)
        if running is not None and msg.rid in running:
            del running[msg.rid]
            if not running:
                del self.in_progress[dst]
            answers = self.answers.get(dst)
            if answers is None:
                self.answers[dst] = {msg.rid: msg}
            else:
                answers[msg.rid] = msg

    def age(self) -> None:
        self.older_answers, self.answers = self.answers, {}
