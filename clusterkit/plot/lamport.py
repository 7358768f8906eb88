"""A Lamport (message sequence) diagram of a window of a run, in the manner of Maelstrom's.

A lane per node, time to the right; an arrow per message from its send to
its arrival, coloured by kind; a lost message ends in a red x halfway. On
the default logical axis every distinct event time gets its own slot, so a
message's few milliseconds of flight show as a slant and idle stretches take
no room (the tick labels give the virtual times); ``logical=False`` draws to
scale. Lanes are tinted by the node's role when a timeline is given.

Messages are :class:`clusterkit.sim.trace.MessageRecord` s (a run's
``report.timeline.messages``, recorded in its ``message_window``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .run_data import RoleSpan, TimelineLike, end_time
from .style import DROPPED_COLOR, ROLE_COLORS, new_figure, sorted_nodes

VOTE_KINDS = ("PreVote", "PreVoteResponse", "RequestVote", "VoteResponse")
# A fixed colour per kind, so every diagram reads the same.
KIND_COLORS = {
    "AppendEntries": "#1f77b4", "AppendResponse": "#aec7e8",
    "Heartbeat": "#7f7f7f", "HeartbeatResponse": "#c7c7c7",
    "PreVote": "#ff7f0e", "PreVoteResponse": "#ffbb78",
    "RequestVote": "#d62728", "VoteResponse": "#ff9896",
    "Propose": "#2ca02c", "TimeoutNow": "#9467bd",
    "InstallSnapshot": "#8c564b", "SnapshotResponse": "#c49c94",
    "ReadIndex": "#e377c2", "ReadIndexResponse": "#f7b6d2",
}
_ELECTION_GAP = 0.2  # vote messages further apart than this belong to different elections
# What sending a message proves about the sender's role at that instant (only a leader appends,
# sends heartbeats and snapshots, or hands over leadership).
_SENDER_ROLE = {"PreVote": "pre-candidate", "RequestVote": "candidate", "AppendEntries": "leader",
                "Heartbeat": "leader", "InstallSnapshot": "leader", "TimeoutNow": "leader"}


class MessageLike(Protocol):
    t: float
    src: str
    dst: str
    kind: str
    term: int
    delays: tuple[float, ...]


def election_window(messages: Sequence[MessageLike], after: float = float("-inf"), *, before: float = 0.01,
                    margin: float = 0.03) -> tuple[float, float] | None:
    """The first election at or after ``after``: from ``before`` seconds ahead of its first vote
    request to ``margin`` seconds past its last vote answer's arrival. None if there is none."""
    votes = sorted((m for m in messages if m.kind in VOTE_KINDS and m.t >= after), key=lambda m: m.t)
    if not votes:
        return None
    last = votes[0]
    for m in votes[1:]:
        if m.t - last.t > _ELECTION_GAP:
            break
        last = m
    return votes[0].t - before, last.t + max(last.delays, default=0.0) + margin


def cuts_at(timeline: TimelineLike, t: float) -> set[tuple[str, str]]:
    """The one-way links cut at time ``t`` by the applied partitions (healed by a heal, the next
    partition or the end of the fault phase)."""
    heal = timeline.phases.get("heal", float("inf"))
    cut: set[tuple[str, str]] = set()
    if t >= heal:
        return cut
    for f in sorted((f for f in timeline.faults if f.get("applied", True)), key=lambda f: f["t"]):
        if f["t"] > t:
            break
        if f["kind"] == "heal":
            cut = set()
        elif f["kind"] == "partition":
            cut = {(a, b) for a, b in f.get("cuts", ())}
    return cut


def exact_roles(timeline: TimelineLike, messages: Iterable[MessageLike]) -> dict[str, list[RoleSpan]]:
    """Each node's role spans, sharpened by its own messages. Roles are sampled (every 10 ms in
    the simulator), which misses the few milliseconds of a pre-vote; a PreVote, a RequestVote or
    an append sent says exactly when the sender was campaigning or leading. Samples and these
    sightings are merged in time order."""
    changes: dict[str, list[tuple[float, int, str, int]]] = {}
    for t, node, state, term in timeline.roles:
        changes.setdefault(node, []).append((t, 1, state, term))
    for m in messages:
        if m.kind in _SENDER_ROLE:
            changes.setdefault(m.src, []).append((m.t, 0, _SENDER_ROLE[m.kind], m.term))
    end = end_time(timeline)
    out: dict[str, list[RoleSpan]] = {}
    for node, rows in changes.items():
        rows.sort()
        merged: list[tuple[float, str, int]] = []
        for t, _, state, term in rows:
            if not merged or merged[-1][1] != state:
                merged.append((t, state, term))
        out[node] = [RoleSpan(node, state, term, t, merged[i + 1][0] if i + 1 < len(merged) else end)
                     for i, (t, state, term) in enumerate(merged)]
    return out


def _state_at(spans: Sequence[Any], t: float) -> str:
    starts = [s.start for s in spans]
    i = bisect.bisect_right(starts, t) - 1
    return spans[i].state if i >= 0 else "follower"


def plot_messages(messages: Sequence[MessageLike], *, window: tuple[float, float] | None = None,
                  timeline: TimelineLike | None = None, nodes: Sequence[str] | None = None,
                  hide: Sequence[str] = (), logical: bool = True, max_messages: int = 400,
                  title: str = "") -> Figure:
    """The messages sent in ``window`` (all given, by default) between ``nodes``."""
    chosen = sorted((m for m in messages if m.kind not in hide
                     and (window is None or window[0] <= m.t < window[1])), key=lambda m: m.t)
    total = len(chosen)
    chosen = chosen[:max_messages]
    spans = exact_roles(timeline, messages) if timeline is not None else {}
    lanes = list(nodes) if nodes is not None else sorted_nodes(
        [m.src for m in chosen] + [m.dst for m in chosen] + list(spans))
    row = {n: i for i, n in enumerate(lanes)}
    chosen = [m for m in chosen if m.src in row and m.dst in row]
    # Every send and every arrival is an event; events at the same instant share a slot (a
    # leader's broadcast is one event).
    times = sorted({m.t for m in chosen} | {m.t + d for m in chosen for d in m.delays})
    if window is not None:
        times = sorted(set(times) | {window[0]})
    slot = {t: i for i, t in enumerate(times)}

    def x(t: float) -> float:
        if not logical:
            return t
        if t in slot:
            return float(slot[t])
        return bisect.bisect_left(times, t) - 0.5  # between the events around it

    width = max(8.0, min(30.0, 0.045 * len(times) + 4)) if logical else 12.0
    fig, (ax,) = new_figure(width, 1.2 + 0.75 * len(lanes))
    lo = window[0] if window is not None else (times[0] if times else 0.0)
    hi = window[1] if window is not None else (times[-1] if times else 1.0)
    for n in lanes:  # the lane, tinted by the node's role
        ax.axhline(row[n], color="#dddddd", linewidth=1, zorder=0)
        for s in spans.get(n, []):
            a, b = max(s.start, lo), min(s.end, hi)
            if b > a and s.state != "follower":
                ax.plot([x(a), x(b)], [row[n], row[n]], color=ROLE_COLORS.get(s.state, "#dddddd"),
                        linewidth=7, alpha=0.45, solid_capstyle="butt", zorder=1)
    dropped = 0
    for m in chosen:
        color = KIND_COLORS.get(m.kind, "#333333")
        x0, y0, y1 = x(m.t), row[m.src], row[m.dst]
        ax.plot([x0], [y0], "o", color=color, markersize=3, zorder=3)
        arrivals = list(m.delays)
        if not arrivals:
            dropped += 1
            xm = x0 + 0.5 if logical else m.t + 0.001
            ax.plot([x0, xm], [y0, (y0 + y1) / 2], color=color, linewidth=1, zorder=2)
            ax.plot([xm], [(y0 + y1) / 2], "x", color=DROPPED_COLOR, markersize=7, markeredgewidth=2, zorder=4,
                    gid="lost")
            continue
        for d in arrivals:
            arrive = m.t + d
            lost = timeline is not None and (_state_at(spans.get(m.dst, []), arrive) in ("down", "gone")
                                             or (m.src, m.dst) in cuts_at(timeline, arrive))
            ax.annotate("", xy=(x(arrive), y1), xytext=(x0, y0), zorder=2, gid="message",
                        arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1, "shrinkA": 0, "shrinkB": 2,
                                    "linestyle": "--" if lost else "-"})
            if lost:
                dropped += 1
                ax.plot([x(arrive)], [y1], "x", color=DROPPED_COLOR, markersize=7, markeredgewidth=2, zorder=4,
                        gid="lost")
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    if logical and times:
        step = max(1, len(times) // 12)
        ticks = list(range(0, len(times), step))
        ax.set_xticks(ticks, [f"{times[i]:.3f}" for i in ticks], fontsize=7, rotation=30)
        ax.set_xlabel("virtual seconds (one slot per event, not to scale)")
        ax.set_xlim(-1, len(times))
    else:
        ax.set_xlabel("virtual seconds")
        ax.set_xlim(lo, hi)
    kinds = list(dict.fromkeys(m.kind for m in chosen))
    handles = [Line2D([], [], color=KIND_COLORS.get(k, "#333333"), marker=">", label=k) for k in kinds]
    handles.append(Line2D([], [], color=DROPPED_COLOR, marker="x", linestyle="none", label="lost"))
    handles += [Line2D([], [], color=ROLE_COLORS[s], linewidth=6, alpha=0.45, label=s)
                for s in ("leader", "candidate", "pre-candidate", "down") if any(
                    sp.state == s for ss in spans.values() for sp in ss)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    shown = f"{len(chosen)} of {total} messages" if total > len(chosen) else f"{len(chosen)} messages"
    where = f" sent in [{lo:.3f}, {hi:.3f}] s" if window is not None else ""
    summary = f"{shown}{where}, {dropped} lost" + (f"; hidden: {', '.join(hide)}" if hide else "")
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=10)
    return fig
