"""Every plot of one simulated run, written as PNG files (``clusterkit sim run --plot DIR``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from .history import find_violation, plot_violation
from .lamport import election_window, plot_messages
from .migration import copies_between, migration_graph, plot_migration_graph
from .movement import MembershipEvent, plot_movement, replay_membership
from .partition_map import map_nodes, plot_map_change, plot_partition_map
from .style import save
from .timeline import plot_timeline

log = logging.getLogger(__name__)
MESSAGE_SPAN = 0.1  # seconds of messages drawn when a run recorded some but held no election


def lamport_window(timeline: Any) -> tuple[float, float] | None:
    """The window a run's message diagram shows: the first election after the first applied
    fault, else the first ``MESSAGE_SPAN`` seconds recorded."""
    messages = timeline.messages
    if not messages:
        return None
    applied = [f["t"] for f in timeline.faults if f.get("applied", True)]
    after = min(applied) if applied else timeline.phases.get("faults", float("-inf"))
    found = election_window(messages, after)
    if found is not None:
        return found
    start = min(m.t for m in messages)
    return start, start + MESSAGE_SPAN


def problem_marks(problems: Sequence[str], most: int = 3) -> list[tuple[float, str]]:
    """(time, label) of the first problems that say when they happened ("4.807s partition map ...")."""
    marks = []
    for problem in problems:
        head, _, text = problem.partition("s ")
        try:
            t = float(head)
        except ValueError:
            continue
        marks.append((t, text.split(":")[0]))
        if len(marks) == most:
            break
    return marks


def biggest_change(maps: Sequence[Any], since: float) -> tuple[Any, Any] | None:
    """(before, after) map records around the change at or after ``since`` that gave the most
    partitions a new owner (the first such on ties)."""
    best, best_moves = None, 0
    for prev, cur in pairwise(maps):
        if cur.t < since or len(prev.owners) != len(cur.owners):
            continue
        moves = sum(len(set(n) - set(o)) for o, n in zip(prev.owners, cur.owners, strict=True))
        if moves > best_moves:
            best, best_moves = (prev, cur), moves
    return best


def membership_events(maps: Sequence[Any], faults: Sequence[dict[str, Any]], since: float) -> list[MembershipEvent]:
    """The joins, leaves and failures the run's maps went through after ``since`` (a removal is
    a failure when the nemesis failed that node, else a leave)."""
    failed = {f.get("node") for f in faults if f["kind"] == "fail" and f.get("applied", True)}
    events: list[MembershipEvent] = []
    before = [m for m in maps if m.t < since]
    active = list(before[-1].active) if before else (list(maps[0].active) if maps else [])
    for m in maps:
        if m.t < since:
            continue
        for node in m.active:
            if node not in active:
                events.append(MembershipEvent("join", node))
                active.append(node)
        for node in list(active):
            if node not in m.active:
                events.append(MembershipEvent("fail" if node in failed else "leave", node))
                active.remove(node)
    return events


def write_run_plots(report: Any, out_dir: str | Path, *, window: tuple[float, float] | None = None) -> list[Path]:
    """The run's timeline, its message diagram (``window``, or the first election after a fault),
    the partition map around its biggest change with that change's migration graph, movement
    per membership event against the Go ClusterKit's, and the failure window of a history that
    isn't linearizable: each where the run has something to show. Returns the files written."""
    out = Path(out_dir)
    stem = f"{report.scenario}-seed{report.seed}"
    name = f"{report.scenario} seed {report.seed}"
    tl = report.timeline
    written = [save(plot_timeline(tl, report.history, title=name, marks=problem_marks(report.problems)),
                    out / f"{stem}-timeline.png")]
    shown = window or lamport_window(tl)
    if tl.messages and shown is not None:
        written.append(save(plot_messages(tl.messages, window=shown, timeline=tl, title=name),
                            out / f"{stem}-messages.png"))
    since = tl.phases.get("faults", 0.0)
    change = biggest_change(tl.maps, since)
    if change is not None:
        before, after = change
        nodes = map_nodes(before.owners, after.owners)
        written.append(save(plot_map_change(before.owners, after.owners, nodes,
                                            title=f"{name}, epoch {before.epoch} -> {after.epoch}"),
                            out / f"{stem}-partitions.png"))
        gone = [n for n in nodes if n not in after.active]
        copies = copies_between(before.owners, after.owners, gone=gone, holders=after.holders)
        written.append(save(plot_migration_graph(migration_graph(copies, nodes), gone=gone,
                                                 title=f"{name}, epoch {after.epoch} at {after.t:.2f} s"),
                            out / f"{stem}-migration.png"))
    elif tl.maps:
        last = tl.maps[-1]
        written.append(save(plot_partition_map(last.owners, title=f"{name}: the map at epoch {last.epoch}"),
                            out / f"{stem}-partitions.png"))
    events = membership_events(tl.maps, tl.faults, since)
    if events and tl.maps:
        start = [m for m in tl.maps if m.t < since] or tl.maps[:1]
        first = start[-1]
        rf = max(len(o) for o in first.owners)
        try:
            _, _, rows = replay_membership(list(first.active), events, len(first.owners), rf)
            written.append(save(plot_movement(rows, title=f"{name}: the run's membership changes, replayed"),
                                out / f"{stem}-movement.png"))
        except ValueError as exc:  # a sequence the replay can't follow (a node back after failing)
            log.warning("movement plot skipped: %s", exc)
    if report.linearizability.startswith("not linearizable") or any(
            p.startswith("linearizability:") for p in report.problems):
        result, ops = find_violation(report.history)
        if result.failure is not None:
            written.append(save(plot_violation(result, ops, title=name), out / f"{stem}-history.png"))
    return written
