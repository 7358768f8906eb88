"""A run's trace: messages, role changes, faults and client operations, with a digest.

Every record goes into a running BLAKE2b digest, so two runs can be compared
by one hex string; the event lines (not the messages, unless asked) are
kept for the trace file. Times are printed to the microsecond: the same
scenario and seed give the same bytes, in any process.

Beside it, for plots, a :class:`Timeline`: each node's role sampled over
time, commit indexes, the run's phases and, in a chosen window, the messages
with their delivery delays. It stays out of the digest and only reads the
cluster, so recording it never changes a run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .faults import window_rules
from .faults.window import WindowRule



@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message sent: when, between whom, what, and after which delays its copies arrive
    (none: lost on the way; two: duplicated)."""

    t: float
    src: str
    dst: str
    kind: str  # the message class; PreVote and PreVoteResponse for pre-vote rounds
    term: int
    delays: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class MapRecord:
    """The partition map at one cluster-state epoch, as the first node to apply it saw it."""

    t: float
    epoch: int
    owners: tuple[tuple[str, ...], ...]  # per partition, primary first
    holders: tuple[tuple[str, ...], ...]  # per partition, live nodes holding a complete copy
    active: tuple[str, ...]  # active members


@dataclass
class Timeline:
    """What a run's nodes did over time, compactly: a row per change, not per sample.

    ``roles`` holds (time, node, state, term) whenever a node's state or term
    changes; the state is a Raft role (leader, candidate, pre-candidate,
    follower), learner, or down, paused, gone (left or failed for good).
    ``commits`` holds (time, node, commit index) when the index moved, looked
    at every ``commit_every`` seconds. ``maps`` holds the partition map at
    each new cluster-state epoch. ``faults`` lists every fault the nemesis
    fired (``Fault.to_dict()`` plus ``t``, the virtual time, and ``applied``:
    False when it was skipped). ``phases`` gives when the fault phase began
    (``faults``), when everything was healed (``heal``) and the end
    (``end``). ``messages`` are the ones sent inside ``message_window``.
    """

    every: float = 0.01
    commit_every: float = 0.1
    roles: list[tuple[float, str, str, int]] = field(default_factory=list)
    commits: list[tuple[float, str, int]] = field(default_factory=list)
    maps: list[MapRecord] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    messages: list[MessageRecord] = field(default_factory=list)
    message_window: tuple[float, float] | None = None
    # How each fault kind shows on a plot (clusterkit.plot.run_data.fault_windows): the kinds' own.
    fault_rules: dict[str, WindowRule] = field(default_factory=window_rules, repr=False, compare=False)
    _state: dict[str, tuple[str, int]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _commit: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def role(self, t: float, node: str, state: str, term: int) -> None:
        if self._state.get(node) != (state, term):
            self._state[node] = (state, term)
            self.roles.append((round(t, 6), node, state, term))

    def commit(self, t: float, node: str, index: int) -> None:
        if self._commit.get(node) != index:
            self._commit[node] = index
            self.commits.append((round(t, 6), node, index))

    def partition_map(self, t: float, epoch: int, owners: tuple[tuple[str, ...], ...],
                      holders: tuple[tuple[str, ...], ...], active: tuple[str, ...]) -> None:
        if not self.maps or epoch > self.maps[-1].epoch:
            self.maps.append(MapRecord(round(t, 6), epoch, owners, holders, active))

    def to_json(self) -> dict[str, Any]:
        return {
            "every": self.every, "commit_every": self.commit_every, "phases": dict(self.phases),
            "faults": [dict(f) for f in self.faults],
            "roles": [list(r) for r in self.roles], "commits": [list(c) for c in self.commits],
            "maps": [{"t": m.t, "epoch": m.epoch, "owners": [list(o) for o in m.owners],
                      "holders": [list(h) for h in m.holders], "active": list(m.active)} for m in self.maps],
            "message_window": list(self.message_window) if self.message_window else None,
            "messages": [[m.t, m.src, m.dst, m.kind, m.term, list(m.delays)] for m in self.messages],
        }


class Trace:
    def __init__(self, keep_messages: bool = False) -> None:
        self.keep_messages = keep_messages
        self.lines: list[str] = []
        self.messages = 0
        self._digest = hashlib.blake2b(digest_size=16)
        # Message records for plots: kept only inside this window, with the delays the network
        # drew for them (handed over by ``note_delays`` just before ``message``).
        self.record_window: tuple[float, float] | None = None
        self.records: list[MessageRecord] = []
        self._delays: tuple[float, ...] = ()

    def note_delays(self, delays: list[float]) -> None:
        self._delays = tuple(delays)

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
        window = self.record_window
        if window is not None and window[0] <= t < window[1]:
            kind = type(m).__name__
            if getattr(m, "pre_vote", False):
                kind = kind.replace("RequestVote", "PreVote").replace("VoteResponse", "PreVoteResponse")
            self.records.append(MessageRecord(round(t, 6), m.src, m.dst, kind, m.term, self._delays))

    def digest(self) -> str:
        return self._digest.hexdigest()

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
