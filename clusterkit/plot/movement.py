"""Movement per membership event: our assigner beside the Go ClusterKit's rendezvous hashing.

:func:`replay_membership` applies a sequence of joins, leaves and failures to
both algorithms from the same start and records, per event, the copies each
moved (new (partition, node) ownerships), the primaries each changed, the
fewest copy moves any balanced map needs after that algorithm's previous map,
and how far each is from balance. :func:`plot_movement` draws the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..partitioning.assigner import PartitionMap, assign, fewest_copy_moves, movement
from ..partitioning.rendezvous import rendezvous
from .style import new_figure

KINDS = ("join", "leave", "fail")
OURS_COLOR = "#1f77b4"
GO_COLOR = "#ff7f0e"


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    kind: str  # join | leave | fail
    node: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"event kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def label(self) -> str:
        return f"{self.kind} {self.node}"


@dataclass(frozen=True, slots=True)
class Step:
    """One algorithm's map after one event, and what it cost."""

    owners: PartitionMap
    copies_moved: int
    primaries_changed: int
    fewest: int  # the fewest copy moves a balanced map needs after this algorithm's previous map
    copy_balance: float  # the busiest node's copies over ceil(fair share): 1.0 is exact balance
    primary_balance: float


@dataclass(frozen=True, slots=True)
class MovementRow:
    event: MembershipEvent
    nodes: tuple[str, ...]  # members after the event
    ours: Step
    go: Step  # the Go ClusterKit's rendezvous hashing


def balance(owners: PartitionMap, nodes: Sequence[str]) -> tuple[float, float]:
    """(copies, primaries) of the busiest node over ceil of its fair share; 1.0 is the best possible."""
    if not owners or not nodes:
        return 1.0, 1.0
    r = len(owners[0])
    copies = Counter(o for row in owners for o in row)
    primaries = Counter(row[0] for row in owners if row)
    fair_copies = -(-len(owners) * r // len(nodes))
    fair_primaries = -(-len(owners) // len(nodes))
    return (max(copies[n] for n in nodes) / fair_copies, max(primaries[n] for n in nodes) / fair_primaries)


def _step(previous: PartitionMap, owners: PartitionMap, nodes: Sequence[str], count: int, rf: int) -> Step:
    moved = movement(previous, owners)
    copy_bal, primary_bal = balance(owners, nodes)
    return Step(owners, moved.copies_moved, moved.primaries_changed,
                fewest_copy_moves(previous, nodes, count, rf), copy_bal, primary_bal)


def apply_event(nodes: Sequence[str], event: MembershipEvent) -> list[str]:
    """The member list after ``event``: a join appends, a leave or a failure removes."""
    if event.kind == "join":
        if event.node in nodes:
            raise ValueError(f"{event.node} joins but is already a member")
        return [*nodes, event.node]
    if event.node not in nodes:
        raise ValueError(f"{event.node} {'leaves' if event.kind == 'leave' else 'fails'} but is not a member")
    return [n for n in nodes if n != event.node]


def replay_membership(initial: Sequence[str], events: Iterable[MembershipEvent], partition_count: int,
                      replication_factor: int) -> tuple[PartitionMap, PartitionMap, list[MovementRow]]:
    """Both algorithms through ``events``: (our first map, Go's first map, a row per event).

    Our assigner gets each previous map (it is a function of it); after a failure the failed
    node holds nothing, so a lost primary goes to a surviving holder. Rendezvous is a function
    of the node set alone.
    """
    nodes = list(initial)
    ours = assign(nodes, partition_count, replication_factor)
    go = rendezvous(nodes, partition_count, replication_factor)
    first = (ours, go)
    rows = []
    for event in events:
        nodes = apply_event(nodes, event)
        holders = None
        if event.kind == "fail":
            holders = [tuple(o for o in row if o != event.node) for row in ours]
        new_ours = assign(nodes, partition_count, replication_factor, ours, holders=holders)
        new_go = rendezvous(nodes, partition_count, replication_factor)
        rows.append(MovementRow(
            event, tuple(nodes),
            _step(ours, new_ours, nodes, partition_count, replication_factor),
            _step(go, new_go, nodes, partition_count, replication_factor),
        ))
        ours, go = new_ours, new_go
    return first[0], first[1], rows


def plot_movement(rows: Sequence[MovementRow], *, title: str = "") -> Figure:
    """Per event: copies moved (bars) against the fewest possible (black ticks), primaries
    changed, and balance (busiest node over its fair share), ours beside Go's rendezvous."""
    if not rows:
        raise ValueError("no events to plot")
    n = len(rows)
    fig, (copies_ax, primaries_ax, balance_ax) = new_figure(max(9.0, 0.7 * n + 6), 8.0, 3,
                                                            height_ratios=[3, 2, 2])
    x = np.arange(n)
    w = 0.38
    for ax, attr, label in ((copies_ax, "copies_moved", "copies moved"),
                            (primaries_ax, "primaries_changed", "primaries changed")):
        ours = [getattr(r.ours, attr) for r in rows]
        go = [getattr(r.go, attr) for r in rows]
        ax.bar(x - w / 2, ours, w, color=OURS_COLOR, label="ClusterKit (Python): balancing assigner")
        ax.bar(x + w / 2, go, w, color=GO_COLOR, label="Go ClusterKit: rendezvous hashing")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    for offset, attr in ((-w / 2, "ours"), (w / 2, "go")):
        fewest = [getattr(r, attr).fewest for r in rows]
        copies_ax.hlines(fewest, x + offset - w / 2, x + offset + w / 2, colors="black", linewidth=2)
    handles, _ = copies_ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", linewidth=2, label="fewest moves a balanced map needs"))
    copies_ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    for attr, style in (("copy_balance", "-"), ("primary_balance", "--")):
        what = "copies" if attr == "copy_balance" else "primaries"
        balance_ax.plot(x, [getattr(r.ours, attr) for r in rows], style, marker="o", color=OURS_COLOR,
                        label=f"ours, {what}")
        balance_ax.plot(x, [getattr(r.go, attr) for r in rows], style, marker="s", color=GO_COLOR,
                        label=f"Go, {what}")
    balance_ax.axhline(1.0, color="black", linewidth=0.8)
    balance_ax.set_ylabel("busiest node /\nfair share")
    balance_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    balance_ax.grid(axis="y", alpha=0.3)
    balance_ax.set_xticks(x, [f"{r.event.label}\n({len(r.nodes)} nodes)" for r in rows], fontsize=8,
                          rotation=30 if n > 8 else 0)
    totals = (f"total copies moved: ours {sum(r.ours.copies_moved for r in rows)}, "
              f"Go {sum(r.go.copies_moved for r in rows)}")
    fig.suptitle(f"{title}\n{totals}" if title else totals, fontsize=11)
    return fig
