"""Histories of client operations, and readers for the formats they come in.

An :class:`Event` is one line of a history: a process invoking a function,
or that call completing. Completions are ``ok`` (it happened, with this
result), ``fail`` (it did not happen) or ``info`` (unknown: it may have
happened at any time after its call). :func:`pair_events` matches calls with
completions into :class:`Operation` s; a call that never completes becomes an
``info`` operation whose return is at the end of time.

Formats: Jepsen log lines (``jepsen-log``), Jepsen EDN op maps (``edn``) and
our own JSON lines (``jsonl``), which the simulator and real runs write.
Every reader raises :class:`HistoryError` naming the source and line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import edn

EVENT_TYPES = ("invoke", "ok", "fail", "info")
FORMATS = ("jepsen-log", "edn", "jsonl")


class HistoryError(ValueError):
    """A history that cannot be read: names the source and the line."""

    def __init__(self, source: str, line: int, message: str) -> None:
        self.source = source
        self.line = line
        super().__init__(f"{source}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class Event:
    process: Any
    type: str  # invoke | ok | fail | info
    f: str
    value: Any = None
    key: Any = None
    time: float = 0.0
    line: int = 0

    def to_json(self) -> str:
        out: dict[str, Any] = {"process": self.process, "type": self.type, "f": self.f, "value": self.value}
        if self.key is not None:
            out["key"] = self.key
        out["time"] = self.time
        return json.dumps(out, separators=(",", ":"))


@dataclass(slots=True)
class Operation:
    id: int
    process: Any
    f: str
    key: Any
    input: Any  # the value given at the call
    output: Any  # the value returned (None unless ok)
    status: str  # ok | fail | info
    call: float
    ret: float  # math.inf when the outcome is unknown
    call_line: int
    ret_line: int | None

    def describe(self) -> str:
        key = f" {self.key!r}" if self.key is not None else ""
        arg = "" if self.input is None else f" {self.input!r}"
        if self.status == "ok":
            res = "ok" if self.output is None else f"-> {self.output!r}"
        else:
            res = self.status
        where = f"line {self.call_line}" + (f"-{self.ret_line}" if self.ret_line else "")
        return f"process {self.process}: {self.f}{key}{arg} {res}  ({where})"


def pair_events(events: Iterable[Event], source: str = "<history>") -> list[Operation]:
    """Match every call with its completion. Raises HistoryError on a completion without a call."""
    pending: dict[Any, Event] = {}
    ops: list[Operation] = []

    def make(inv: Event, done: Event | None) -> Operation:
        status = done.type if done is not None else "info"
        known = status in ("ok", "fail")
        return Operation(
            id=0,
            process=inv.process,
            f=inv.f,
            key=inv.key,
            input=inv.value,
            output=done.value if status == "ok" and done is not None else None,
            status=status,
            call=inv.time,
            ret=done.time if known and done is not None else math.inf,
            call_line=inv.line,
            ret_line=done.line if done is not None else None,
        )

    for ev in events:
        if ev.type == "invoke":
            prev = pending.get(ev.process)
            if prev is not None:
                raise HistoryError(
                    source,
                    ev.line,
                    f"process {ev.process} calls {ev.f} while its {prev.f} from line {prev.line} has not returned",
                )
            pending[ev.process] = ev
            continue
        inv = pending.pop(ev.process, None)
        if inv is None:
            raise HistoryError(source, ev.line, f"{ev.type} {ev.f} for process {ev.process} without a call")
        if inv.f != ev.f or (ev.key is not None and inv.key != ev.key):
            raise HistoryError(
                source, ev.line, f"process {ev.process} completes {ev.f} but called {inv.f} at line {inv.line}"
            )
        if ev.time < inv.time:
            raise HistoryError(source, ev.line, "completion is earlier than its call")
        ops.append(make(inv, ev))
    for inv in pending.values():
        ops.append(make(inv, None))
    ops.sort(key=lambda o: (o.call, o.call_line))
    for i, op in enumerate(ops):
        op.id = i
    return ops


# ---------------------------------------------------------------- readers
_JEPSEN_LINE = re.compile(r"jepsen\.util\s+-\s+(\S+)\s+:(invoke|ok|fail|info)\s+:(\S+)\s*(.*?)\s*$")


def read_jepsen_log(lines: Iterable[str], source: str = "<jepsen-log>") -> list[Event]:
    """Jepsen log lines (``INFO jepsen.util - 3 :ok :read 4``); other lines are noise and skipped."""
    out: list[Event] = []
    for n, line in enumerate(lines, 1):
        m = _JEPSEN_LINE.search(line)
        if not m:
            continue
        proc_text, etype, f, value_text = m.groups()
        try:
            process = int(proc_text)
        except ValueError:
            continue  # the nemesis and other non-client processes
        try:
            value = edn.loads(value_text) if value_text else None
        except edn.EdnError as exc:
            raise HistoryError(source, n, f"cannot read value {value_text!r}: {exc}") from None
        if isinstance(value, list):
            value = tuple(value)
        out.append(Event(process, etype, f, value, None, float(n), n))
    return out


def _event_from_map(m: Any, source: str, n: int, keyword_keys: bool) -> Event | None:
    if not isinstance(m, dict):
        raise HistoryError(source, n, f"expected a map, got {type(m).__name__}")
    get = (lambda k: m.get(edn.Keyword(k))) if keyword_keys else m.get
    process, etype, f = get("process"), get("type"), get("f")
    if process is None or etype is None or f is None:
        raise HistoryError(source, n, "an operation needs process, type and f")
    if isinstance(process, edn.Keyword) or (isinstance(process, str) and process == "nemesis"):
        return None
    if isinstance(process, bool) or not isinstance(process, (int, str)):
        raise HistoryError(source, n, f"process must be an integer or a name, got {process!r}")
    if str(etype) not in EVENT_TYPES:
        raise HistoryError(source, n, f"unknown type {etype!r} (expected one of {', '.join(EVENT_TYPES)})")
    if not isinstance(f, str):
        raise HistoryError(source, n, f"f must be a name, got {f!r}")
    time = get("time")
    if time is None:
        time = n
    elif isinstance(time, bool) or not isinstance(time, (int, float)):
        raise HistoryError(source, n, f"time must be a number, got {time!r}")
    value = get("value")
    if isinstance(value, list):
        value = tuple(value)
    return Event(process, str(etype), str(f), value, get("key"), float(time), n)


# Jepsen's usual flat op map, read without the general EDN reader (ten times faster).
_FLAT_EDN = re.compile(
    r'\{:process (\d+), :type :(invoke|ok|fail|info), :f :([\w-]+), :key "([^"\\]*)", :value (nil|-?\d+|"[^"\\]*")\}$'
)


def read_edn(lines: Iterable[str], source: str = "<edn>") -> list[Event]:
    """One Jepsen op map per line: ``{:process 0, :type :invoke, :f :get, :key "4", :value nil}``."""
    out: list[Event] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fast = _FLAT_EDN.match(line.strip())
        if fast:
            proc, etype, f, key, raw = fast.groups()
            value: Any = None if raw == "nil" else raw[1:-1] if raw[0] == '"' else int(raw)
            out.append(Event(int(proc), etype, f, value, key, float(n), n))
            continue
        try:
            m = edn.loads(line.strip())
        except edn.EdnError as exc:
            raise HistoryError(source, n, f"unparsable EDN: {exc}") from None
        ev = _event_from_map(m, source, n, keyword_keys=True)
        if ev is not None:
            out.append(ev)
    return out


def read_jsonl(lines: Iterable[str], source: str = "<jsonl>") -> list[Event]:
    """Our own format: ``{"process": 0, "type": "invoke", "f": "put", "key": "k", "value": "v", "time": 1.5}``."""
    out: list[Event] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            m = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(source, n, f"unparsable JSON: {exc.msg} at column {exc.colno}") from None
        ev = _event_from_map(m, source, n, keyword_keys=False)
        if ev is not None:
            out.append(ev)
    return out


def sniff_format(lines: Sequence[str], name: str = "") -> str:
    """Guess the format from the file name and its first meaningful line."""
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".edn"):
        return "edn"
    for line in lines[:200]:
        s = line.strip()
        if "jepsen.util" in s:
            return "jepsen-log"
        if s.startswith('{"'):
            return "jsonl"
        if s.startswith("{:"):
            return "edn"
    if name.endswith(".log"):
        return "jepsen-log"
    raise HistoryError(name or "<history>", 1, "cannot tell the format; pass --format jepsen-log|edn|jsonl")


def read_history(text: str, fmt: str | None = None, source: str = "<history>") -> list[Operation]:
    """Read a whole history in ``fmt`` (sniffed when None) and pair its events into operations."""
    lines = text.splitlines()
    fmt = fmt or sniff_format(lines, source)
    if fmt == "jepsen-log":
        events = read_jepsen_log(lines, source)
    elif fmt == "edn":
        events = read_edn(lines, source)
    elif fmt == "jsonl":
        events = read_jsonl(lines, source)
    else:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return pair_events(events, source)
