"""How a run behaved, in numbers both worlds have: what `clusterkit sim compare` puts side by side.

Everything is read from a run's report: its client history (the same JSON lines in either world)
and its timeline (roles and faults: sampled by the simulator, polled from real nodes), on one
clock per run. A leader kill is a kill of the node that led just before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunNumbers:
    """One run's numbers (seconds)."""

    ok: bool
    verdict: str
    new_leader: list[float] = field(default_factory=list)  # per leader kill: until another node leads
    first_write: list[float] = field(default_factory=list)  # per leader kill: until a write commits
    write_latency: list[float] = field(default_factory=list)  # every acknowledged write
    longest_gap: float = 0.0  # the longest stretch of the fault phase with no operation acknowledged


def measure(report: Any) -> RunNumbers:
    tl = report.timeline
    out = RunNumbers(ok=report.ok, verdict=(report.linearizability or "").split(" (")[0])
    ops = _completed(report.history)
    writes = [(call, done) for f, call, done in ops if f == "put"]
    out.write_latency = [done - call for call, done in writes]
    for t, victim in leader_kills(tl.roles, tl.faults):
        lead = next((r[0] for r in tl.roles if r[0] > t and r[2] == "leader" and r[1] != victim), None)
        if lead is not None:
            out.new_leader.append(lead - t)
        first = min((done for call, done in writes if call >= t), default=None)
        if first is not None:
            out.first_write.append(first - t)
    start = tl.phases.get("faults", 0.0)
    end = tl.phases.get("heal", max((d for _, _, d in ops), default=start))
    acked = sorted(d for _, _, d in ops if start <= d <= end)
    edges = [start, *acked, end]
    out.longest_gap = max((b - a for a, b in zip(edges, edges[1:])), default=0.0)
    return out


def leader_kills(roles: Sequence[tuple[float, str, str, int]],
                 faults: Iterable[Mapping[str, Any]]) -> list[tuple[float, str]]:
    """(time, node) of each applied kill of the node that led just before it."""
    out = []
    for f in faults:
        if f.get("kind") != "kill" or not f.get("applied", True):
            continue
        t, node = f["t"], f.get("node", "")
        last = [r for r in roles if r[1] == node and r[0] < t]  # (a real run notes "down" at t itself)
        if last and last[-1][2] == "leader":
            out.append((t, node))
    return out


def _completed(history: Iterable[Mapping[str, Any]]) -> list[tuple[str, float, float]]:
    """(f, call time, ok time) of every acknowledged operation."""
    calls: dict[Any, Mapping[str, Any]] = {}
    out = []
    for ev in history:
        if ev["type"] == "invoke":
            calls[ev["process"]] = ev
        else:
            call = calls.pop(ev["process"], None)
            if call is not None and ev["type"] == "ok":
                out.append((ev["f"], float(call["time"]), float(ev["time"])))
    return out


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def table(worlds: Mapping[str, Sequence[RunNumbers]]) -> str:
    """The worlds' numbers side by side, one row per measure."""
    rows: list[tuple[str, list[str]]] = []

    def spread(pick: Any, scale: float = 1.0, unit: str = "s") -> list[str]:
        cells = []
        for runs in worlds.values():
            values = [v * scale for run in runs for v in pick(run)]
            cells.append(f"p50 {quantile(values, 0.5):.3g} {unit}, max {max(values):.3g} {unit} ({len(values)})"
                         if values else "none")
        return cells

    rows.append(("new leader after a leader kill", spread(lambda r: r.new_leader)))
    rows.append(("first write after a leader kill", spread(lambda r: r.first_write)))
    rows.append(("write latency p50", [f"{quantile([v for r in runs for v in r.write_latency], 0.5) * 1e3:.3g} ms"
                                       for runs in worlds.values()]))
    rows.append(("write latency p99", [f"{quantile([v for r in runs for v in r.write_latency], 0.99) * 1e3:.3g} ms"
                                       for runs in worlds.values()]))
    rows.append(("longest unavailability", spread(lambda r: [r.longest_gap])))
    rows.append(("passed", [f"{sum(r.ok for r in runs)}/{len(runs)}" for runs in worlds.values()]))
    rows.append(("linearizability", [", ".join(sorted({r.verdict for r in runs})) or "none"
                                     for runs in worlds.values()]))
    width = max(len(name) for name, _ in rows)
    cols = [max(len(world), *(len(cells[i]) for _, cells in rows)) for i, world in enumerate(worlds)]
    lines = [" " * width + "  " + "  ".join(f"{w:<{c}}" for w, c in zip(worlds, cols))]
    lines += [f"{name:<{width}}  " + "  ".join(f"{cell:<{c}}" for cell, c in zip(cells, cols)) for name, cells in rows]
    return "\n".join(line.rstrip() for line in lines)
