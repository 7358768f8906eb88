"""A run's timeline, in the manner of Jepsen's: what each node was, what committed, how clients fared.

Panels, sharing the time axis: each node's role over time; commit indexes;
client operation latencies (ok, failed, timed out); operations per second by
outcome. Fault windows are shaded behind every panel and named on top;
joins, leaves and failures are dashed lines. A long run stays readable: past
``scatter_limit`` operations latencies are drawn as per-bin percentiles,
counts are always binned, and commit lines are thinned to ``max_points``, so
a 10-minute run draws in a couple of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .run_data import (
    ClientOp,
    FaultWindow,
    TimelineLike,
    client_ops,
    commit_series,
    end_time,
    fault_windows,
    role_spans,
    timeline_nodes,
)
from .style import OUTCOME_COLORS, ROLE_COLORS, new_figure

_MAX_FAULT_LABELS = 30  # more windows than this: the legend names the kinds, the labels would overlap


def plot_timeline(timeline: TimelineLike, history: Iterable[Mapping[str, Any]] = (), *, title: str = "",
                  scatter_limit: int = 4000, bins: int = 150, max_points: int = 2000,
                  window: tuple[float, float] | None = None, time_label: str = "virtual seconds",
                  marks: Sequence[tuple[float, str]] = ()) -> Figure:
    """The whole run (or ``window``, in the timeline's seconds) as four stacked panels; ``marks``
    are (time, label) moments to point out, such as the violations a run reports."""
    ops = client_ops(history)
    t0, t1 = window if window is not None else (0.0, max(end_time(timeline), max((o.call for o in ops), default=0.0)))
    if t1 <= t0:
        raise ValueError(f"empty time window [{t0}, {t1}]")
    nodes = timeline_nodes(timeline)
    fig, (roles_ax, commit_ax, latency_ax, rate_ax) = new_figure(
        13.0, 2.0 + 0.32 * len(nodes) + 6.0, 4, height_ratios=[max(1.4, 0.32 * len(nodes)), 1.6, 2.0, 1.3])
    windows = fault_windows(timeline)
    for ax in (roles_ax, commit_ax, latency_ax, rate_ax):
        _shade(ax, windows, timeline.phases)
    _roles(roles_ax, timeline, nodes)
    _fault_labels(roles_ax, windows)
    for t, label in marks:
        for ax in (roles_ax, commit_ax, latency_ax, rate_ax):
            ax.axvline(t, color="black", linewidth=1.5, gid="mark")
        roles_ax.annotate(label, xy=(t, 0.0), xycoords=("data", "axes fraction"), xytext=(3, 3),
                          textcoords="offset points", fontsize=8, fontweight="bold", annotation_clip=False)
    _commits(commit_ax, timeline, max_points)
    in_window = [o for o in ops if t0 <= o.call <= t1]
    _latencies(latency_ax, in_window, scatter_limit, bins, (t0, t1))
    _rates(rate_ax, in_window, bins, (t0, t1))
    rate_ax.set_xlim(t0, t1)
    rate_ax.set_xlabel(time_label)
    _legend(fig, roles_ax, timeline, windows)
    counts = {s: sum(1 for o in in_window if o.status == s) for s in ("ok", "fail", "info")}
    summary = (f"{len(nodes)} nodes, {len(windows)} faults, {len(in_window)} client operations "
               f"({counts['ok']} ok, {counts['fail']} failed, {counts['info']} unknown)")
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=11)
    return fig


def _shade(ax: Axes, windows: Sequence[FaultWindow], phases: Mapping[str, float]) -> None:
    for w in windows:
        color = w.color
        # Tagged (gid "fault:KIND"), so tests and tools can find the windows a figure shows.
        if w.end > w.start:
            ax.axvspan(w.start, w.end, color=color, alpha=0.12, linewidth=0, zorder=0, gid=f"fault:{w.kind}")
        else:
            ax.axvline(w.start, color=color, linestyle="--", linewidth=1, alpha=0.8, zorder=0, gid=f"fault:{w.kind}")
    for name, style in (("faults", ":"), ("heal", ":")):
        if name in phases:
            ax.axvline(phases[name], color="black", linestyle=style, linewidth=1, zorder=0)


def _fault_labels(ax: Axes, windows: Sequence[FaultWindow]) -> None:
    if len(windows) > _MAX_FAULT_LABELS:
        return
    # Staggered on three levels above the panel, so neighbouring labels don't overprint.
    for i, w in enumerate(sorted(windows, key=lambda w: w.start)):
        ax.annotate(w.label, xy=(w.start, 1.0), xycoords=("data", "axes fraction"), xytext=(2, 3 + 11 * (i % 3)),
                    textcoords="offset points", fontsize=7, color=w.color,
                    annotation_clip=False)


def _roles(ax: Axes, timeline: TimelineLike, nodes: Sequence[str]) -> None:
    spans = role_spans(timeline)
    for row, node in enumerate(nodes):
        by_state: dict[str, list[tuple[float, float]]] = {}
        for s in spans[node]:
            by_state.setdefault(s.state, []).append((s.start, s.end - s.start))
        for state, bars in by_state.items():
            ax.broken_barh(bars, (row - 0.38, 0.76), facecolors=ROLE_COLORS.get(state, "#dddddd"), linewidth=0)
        terms = [s for s in spans[node] if s.state == "leader"]
        for s in terms:  # the term each leadership began in, where there is room for it
            ax.text(s.start, row, f" t{s.term}", va="center", fontsize=6, color="white", clip_on=True)
    ax.set_yticks(range(len(nodes)), nodes, fontsize=8)
    ax.set_ylim(len(nodes) - 0.5, -0.5)
    ax.set_ylabel("role")


def _thin(xs: np.ndarray, ys: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    if len(xs) <= max_points:
        return xs, ys
    keep = np.unique(np.linspace(0, len(xs) - 1, max_points).astype(int))
    return xs[keep], ys[keep]


def _commits(ax: Axes, timeline: TimelineLike, max_points: int) -> None:
    for node, (xs, ys) in commit_series(timeline).items():
        xs, ys = _thin(xs, ys, max_points)
        ax.step(xs, ys, where="post", linewidth=1, label=node)
    ax.set_ylabel("commit index")
    ax.grid(alpha=0.3)
    if len(ax.get_lines()) <= 12:
        ax.legend(fontsize=7, ncol=6, loc="upper left", frameon=False)


def _bin_edges(span: tuple[float, float], bins: int) -> np.ndarray:
    return np.linspace(span[0], span[1], max(2, bins) + 1)


def _latencies(ax: Axes, ops: Sequence[ClientOp], scatter_limit: int, bins: int, span: tuple[float, float]) -> None:
    finite = [o for o in ops if math.isfinite(o.done)]
    if len(finite) <= scatter_limit:
        for status, marker in (("ok", "."), ("fail", "x"), ("info", "^")):
            chosen = [o for o in finite if o.status == status]
            if chosen:
                ax.scatter([o.call for o in chosen], [max(o.latency, 1e-5) * 1000 for o in chosen], s=10 if
                           status == "ok" else 18, marker=marker, color=OUTCOME_COLORS[status], linewidths=1,
                           label={"ok": "ok", "fail": "failed", "info": "timed out / unknown"}[status])
    else:
        # Too many to scatter: per bin, the median, the 99th percentile and the slowest of the ok
        # operations, and the slowest failed or unknown one.
        edges = _bin_edges(span, bins)
        mids = (edges[:-1] + edges[1:]) / 2
        for label, chosen, stats in (("ok", [o for o in finite if o.status == "ok"], (50, 99, 100)),
                                     ("failed / unknown", [o for o in finite if o.status != "ok"], (100,))):
            if not chosen:
                continue
            calls = np.array([o.call for o in chosen])
            lat = np.array([max(o.latency, 1e-5) * 1000 for o in chosen])
            which = np.clip(np.digitize(calls, edges) - 1, 0, len(mids) - 1)
            order = np.argsort(which, kind="stable")
            groups = np.split(lat[order], np.flatnonzero(np.diff(which[order])) + 1)
            present = np.unique(which[order])
            for q in stats:
                values = [np.percentile(g, q) for g in groups]
                color = OUTCOME_COLORS["ok" if label == "ok" else "info"]
                name = f"{label} {'max' if q == 100 else f'p{q}'}"
                ax.plot(mids[present], values, linewidth={50: 1.5, 99: 1.0, 100: 0.6}[q], color=color,
                        alpha={50: 1.0, 99: 0.7, 100: 0.4}[q], label=name)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3, which="both", axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", ncol=4, frameon=False)


def _rates(ax: Axes, ops: Sequence[ClientOp], bins: int, span: tuple[float, float]) -> None:
    edges = _bin_edges(span, bins)
    width = edges[1] - edges[0]
    bottom = np.zeros(len(edges) - 1)
    for status in ("ok", "fail", "info"):
        counts, _ = np.histogram([o.call for o in ops if o.status == status], bins=edges)
        if counts.any():
            ax.bar(edges[:-1], counts / width, width=width, bottom=bottom, align="edge", linewidth=0,
                   color=OUTCOME_COLORS[status], label={"ok": "ok", "fail": "failed", "info": "unknown"}[status])
            bottom += counts / width
    ax.set_ylabel("ops / s")
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", ncol=3, frameon=False)


def _legend(fig: Figure, ax: Axes, timeline: TimelineLike, windows: Sequence[FaultWindow]) -> None:
    states = {r[2] for r in timeline.roles}
    handles: list[Patch | Line2D] = [Patch(color=c, label=s) for s, c in ROLE_COLORS.items() if s in states]
    for kind, color in dict.fromkeys((w.kind, w.color) for w in windows):
        handles.append(Patch(color=color, alpha=0.35, label=f"{kind} (fault)"))
    handles.append(Line2D([], [], color="black", linestyle=":", label="faults begin / healed"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
