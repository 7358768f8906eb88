"""What a run's plots are drawn from, taken out of a simulator timeline and a client history.

A timeline is :class:`clusterkit.sim.trace.Timeline` (``report.timeline``),
or any object with the same fields (``roles``, ``commits``, ``faults``,
``phases``; ``maps`` and ``messages`` where used), so a run of real nodes,
polled from outside, is drawn the same way. Histories are the JSON-lines
operations of ``report.history`` (``invoke`` then ``ok``/``fail``/``info``
per process, with virtual or wall-clock ``time``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .style import sorted_nodes

class TimelineLike(Protocol):
    roles: list[tuple[float, str, str, int]]
    commits: list[tuple[float, str, int]]
    faults: list[dict[str, Any]]
    phases: dict[str, float]
    # Optional: ``fault_rules``, kind -> :class:`WindowRule` (the kinds' own, from clusterkit.sim.faults).


class WindowRule(Protocol):
    """How a fault kind shows (``clusterkit.sim.faults.window.WindowRule``): a window from the fault
    until a later fault of a ``closed_by`` kind (of the same node when ``same_node``), or for the
    fault's ``seconds`` when ``timed``, and at the latest until everything is healed; a ``moment``
    is a line."""

    color: str
    closed_by: tuple[str, ...]
    same_node: bool
    timed: bool
    moment: bool


@dataclass(frozen=True, slots=True)
class RoleSpan:
    node: str
    state: str
    term: int
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class FaultWindow:
    kind: str
    start: float
    end: float  # == start for a moment's event (join, leave, fail)
    label: str
    nodes: tuple[str, ...] = ()
    color: str = "#999999"


@dataclass(frozen=True, slots=True)
class ClientOp:
    process: Any
    f: str
    key: Any
    value: Any  # written, or read (None while unknown)
    call: float
    done: float  # when it completed, or when the client gave up (info); inf if it never did
    status: str  # ok | fail | info

    @property
    def latency(self) -> float:
        return self.done - self.call


def end_time(timeline: TimelineLike) -> float:
    """The last moment the timeline knows of."""
    times = [timeline.phases.get("end", 0.0)]
    times += [r[0] for r in timeline.roles[-1:]] + [c[0] for c in timeline.commits[-1:]]
    return max(times)


def timeline_nodes(timeline: TimelineLike) -> list[str]:
    return sorted_nodes(r[1] for r in timeline.roles)


def role_spans(timeline: TimelineLike) -> dict[str, list[RoleSpan]]:
    """Each node's states as (start, end) spans, in natural node order."""
    end = end_time(timeline)
    changes: dict[str, list[tuple[float, str, int]]] = {n: [] for n in timeline_nodes(timeline)}
    for t, node, state, term in timeline.roles:
        changes[node].append((t, state, term))
    out: dict[str, list[RoleSpan]] = {}
    for node, rows in changes.items():
        rows.sort(key=lambda r: r[0])
        out[node] = [RoleSpan(node, state, term, t, rows[i + 1][0] if i + 1 < len(rows) else end)
                     for i, (t, state, term) in enumerate(rows)]
    return out


def leader_changes(timeline: TimelineLike) -> list[tuple[float, str, int]]:
    """(time, node, term) each time a node became leader."""
    out = []
    for spans in role_spans(timeline).values():
        out += [(s.start, s.node, s.term) for s in spans if s.state == "leader"]
    return sorted(out)


def commit_series(timeline: TimelineLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per node: (times, commit indexes), in time order. Only changes are recorded, so each
    series is carried on to the end of the timeline (or to when the node went down for good)."""
    by_node: dict[str, list[tuple[float, int]]] = {}
    for t, node, index in timeline.commits:
        by_node.setdefault(node, []).append((t, index))
    end = end_time(timeline)
    spans = role_spans(timeline)
    out = {}
    for node in sorted_nodes(by_node):
        rows = sorted(by_node[node])
        last = spans[node][-1] if spans.get(node) else None
        stop = last.start if last is not None and last.state == "gone" else end
        if stop > rows[-1][0]:
            rows.append((stop, rows[-1][1]))
        out[node] = (np.array([r[0] for r in rows], dtype=float), np.array([r[1] for r in rows], dtype=float))
    return out


def partition_label(cuts: Iterable[Sequence[str]], nodes: Sequence[str]) -> str:
    """A partition in words: its sides (n1 | n2 n3) when the cuts split the nodes into clean
    groups, otherwise how many one-way links are cut."""
    cut = {(a, b) for a, b in cuts}
    members = sorted_nodes(list(nodes) + [n for pair in cut for n in pair])
    side: dict[str, int] = {}
    groups: list[list[str]] = []
    for node in members:  # a group: nodes linked both ways to each other
        for i, g in enumerate(groups):
            if all((node, o) not in cut and (o, node) not in cut for o in g):
                g.append(node)
                side[node] = i
                break
        else:
            side[node] = len(groups)
            groups.append([node])
    clean = all(((a, b) in cut) == (side[a] != side[b]) for a in members for b in members if a != b)
    if clean and len(groups) > 1:
        return " | ".join(" ".join(g) for g in sorted(groups, key=len))
    return f"{len(cut)} one-way link{'s' if len(cut) != 1 else ''} cut"


def fault_windows(timeline: TimelineLike) -> list[FaultWindow]:
    """The applied faults as windows, each by its kind's :class:`WindowRule` (``timeline.fault_rules``):
    a kill lasts until that node's restart (or until the cluster marks it failed), a partition until
    a heal or the next partition, a stall for its seconds; everything ends when the run heals
    everything. Joins, leaves and failures are moments. A kind with no rule draws nothing."""
    rules: Mapping[str, WindowRule] = getattr(timeline, "fault_rules", None) or {}
    heal = timeline.phases.get("heal", end_time(timeline))
    nodes = timeline_nodes(timeline)
    faults = sorted((f for f in timeline.faults if f.get("applied", True)), key=lambda f: f["t"])
    out: list[FaultWindow] = []
    for i, f in enumerate(faults):
        kind, node, t = f["kind"], f.get("node", ""), f["t"]
        rule = rules.get(kind)
        if rule is None:
            continue
        end = t
        if not rule.moment:
            end = t + f.get("seconds", 0.0) if rule.timed else heal
            for g in faults[i + 1:]:
                if g["t"] >= end:
                    break
                if g["kind"] in rule.closed_by and (not rule.same_node or g.get("node") == node):
                    end = g["t"]
                    break
            end = min(end, heal)
        out.append(FaultWindow(kind, t, end, _label(f, nodes), (node,) if node else (), rule.color))
    return out


def _label(fault: Mapping[str, Any], nodes: Sequence[str]) -> str:
    if fault.get("cuts"):
        return partition_label(fault["cuts"], nodes)
    label = f"{fault['kind']} {fault.get('node', '')}".rstrip()
    if "rate" in fault:
        label += f" x{fault['rate']:g}"
    return label + (" (torn)" if fault.get("torn") else "")


def client_ops(history: Iterable[Mapping[str, Any]]) -> list[ClientOp]:
    """Calls paired with their completions, per process, in call order. A call with no
    completion (the run ended first) is ``info`` with ``done`` at infinity."""
    pending: dict[Any, Mapping[str, Any]] = {}
    out = []
    for ev in history:
        proc = ev["process"]
        if ev["type"] == "invoke":
            pending[proc] = ev
            continue
        call = pending.pop(proc, None)
        if call is None:
            continue  # a completion without its call: nothing to draw
        value = ev.get("value") if ev["type"] == "ok" or call.get("value") is None else call.get("value")
        out.append(ClientOp(proc, call["f"], call.get("key"), value, float(call["time"]), float(ev["time"]),
                            ev["type"]))
    out += [ClientOp(p, c["f"], c.get("key"), c.get("value"), float(c["time"]), math.inf, "info")
            for p, c in pending.items()]
    out.sort(key=lambda o: (o.call, str(o.process)))
    return out
