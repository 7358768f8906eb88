"""The migration graph of one event: which node copies which partitions from which.

A copy goes from a partition's best live holder (its old primary while that
one lives, as ``PartitionChange.copy_from`` lists them) to each new owner.
Edges carry the partitions they move; their width says how many.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import DROPPED_COLOR, NEW_COPY_COLOR, axes_figure, sorted_nodes

LOST = "(no live copy)"  # the source of a copy whose every holder is gone


@dataclass(frozen=True, slots=True)
class Copy:
    partition: int
    source: str  # LOST when no live node holds the data
    target: str


def copies_between(before: Sequence[Sequence[str]], after: Sequence[Sequence[str]],
                   gone: Collection[str] = (), holders: Sequence[Sequence[str]] | None = None) -> list[Copy]:
    """The copies that take ``before`` to ``after``: each new owner copies from the first live
    holder (``holders``, by default ``before``'s owners, primary first), skipping nodes in
    ``gone`` (failed: their data is lost with them)."""
    source_of = holders if holders is not None else before
    out = []
    for p, (old, new) in enumerate(zip(before, after, strict=True)):
        live = [h for h in source_of[p] if h not in gone]
        for target in new:
            if target not in old:
                out.append(Copy(p, live[0] if live else LOST, target))
    return out


def copies_from_events(events: Iterable[Any]) -> list[Copy]:
    """Copies from the facade's ``PartitionChange`` events (``on_partition_change``): each one
    with a ``copy_to`` copies from its first ``copy_from``."""
    out = []
    for e in events:
        if getattr(e, "copy_to", None) is None:
            continue
        sources = getattr(e, "copy_from", ())
        out.append(Copy(e.number, sources[0].id if sources else LOST, e.copy_to.id))
    return out


def migration_graph(copies: Iterable[Copy], nodes: Iterable[str] = ()) -> nx.DiGraph:
    """source -> target, with ``weight`` (how many partitions) and ``partitions`` on each edge;
    ``nodes`` adds members that neither send nor receive, so the picture shows them too."""
    g = nx.DiGraph()
    g.add_nodes_from(sorted_nodes(nodes))
    for c in copies:
        if g.has_edge(c.source, c.target):
            g[c.source][c.target]["weight"] += 1
            g[c.source][c.target]["partitions"].append(c.partition)
        else:
            g.add_edge(c.source, c.target, weight=1, partitions=[c.partition])
    return g


def plot_migration_graph(graph: nx.DiGraph, *, ax: Axes | None = None, title: str = "migration",
                         gone: Collection[str] = ()) -> Figure:
    """Nodes on a circle (in natural order, so pictures of one cluster line up); an arrow per
    (source, target) pair, as wide as the partitions it carries, labelled with their count.
    Green nodes receive copies, grey ones only send or stand by, red ones are ``gone``."""
    fig, ax = axes_figure(ax, 6.5, 6.0)
    order = sorted_nodes(graph.nodes)
    pos = nx.circular_layout(order) if len(order) > 1 else {n: (0.0, 0.0) for n in order}
    receiving = {t for _, t in graph.edges}
    colors = [DROPPED_COLOR if n in gone or n == LOST else NEW_COPY_COLOR if n in receiving else "#cccccc"
              for n in order]
    nx.draw_networkx_nodes(graph, pos, nodelist=order, node_color=colors, node_size=900, ax=ax,
                           edgecolors="black", linewidths=0.8)
    nx.draw_networkx_labels(graph, pos, labels={n: n.replace(" ", "\n") for n in order}, font_size=8, ax=ax)
    if graph.number_of_edges():
        most = max(d["weight"] for _, _, d in graph.edges(data=True))
        widths = [1.0 + 5.0 * d["weight"] / most for _, _, d in graph.edges(data=True)]
        nx.draw_networkx_edges(graph, pos, width=widths, arrowsize=16, node_size=900, ax=ax,
                               connectionstyle="arc3,rad=0.12", edge_color="#555555")
        nx.draw_networkx_edge_labels(graph, pos, edge_labels={(s, t): str(d["weight"])
                                                              for s, t, d in graph.edges(data=True)},
                                     font_size=8, ax=ax, connectionstyle="arc3,rad=0.12")
    total = sum(d["weight"] for _, _, d in graph.edges(data=True))
    ax.set_title(f"{title}: {total} partition cop{'y' if total == 1 else 'ies'} "
                 f"over {graph.number_of_edges()} links", fontsize=10)
    ax.legend(handles=[Line2D([], [], marker="o", linestyle="none", markersize=10, markerfacecolor=c,
                              markeredgecolor="black", label=label)
                       for c, label in ((NEW_COPY_COLOR, "receives copies"), ("#cccccc", "sends only / idle"),
                                        (DROPPED_COLOR, "gone"))],
              loc="lower left", fontsize=8, frameon=False)
    ax.set_axis_off()
    ax.margins(0.15)
    return fig
