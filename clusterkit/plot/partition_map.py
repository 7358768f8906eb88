"""A partition map as a heatmap: partitions by nodes, primary and replica marked; before and after.

A map is what :func:`clusterkit.partitioning.assigner.assign` returns: per
partition number, the owners with the primary first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .style import DROPPED_COLOR, NEW_COPY_COLOR, PRIMARY_COLOR, REPLICA_COLOR, axes_figure, new_figure, sorted_nodes

PartitionMap = Sequence[Sequence[str]]
NONE, REPLICA, PRIMARY = 0, 1, 2
_CMAP = ListedColormap(["#ffffff", REPLICA_COLOR, PRIMARY_COLOR])
_LABELLED_CELLS = 600  # up to this many cells, primaries get a "P"; beyond, the colours say it
_MAX_TICKS = 40  # partition labels at most, so a 4,096-partition map stays legible


def map_matrix(owners: PartitionMap, nodes: Sequence[str]) -> np.ndarray:
    """partitions x nodes: 2 where the node is primary, 1 a replica, 0 neither."""
    col = {n: j for j, n in enumerate(nodes)}
    out = np.zeros((len(owners), len(nodes)), dtype=np.int8)
    for p, row in enumerate(owners):
        for i, node in enumerate(row):
            if node in col:
                out[p, col[node]] = PRIMARY if i == 0 else REPLICA
    return out


def map_nodes(*maps: PartitionMap, extra: Iterable[str] = ()) -> list[str]:
    """Every node owning something in any of ``maps`` (plus ``extra``), in natural order."""
    return sorted_nodes([n for m in maps for row in m for n in row] + list(extra))


def _partition_ticks(ax: Axes, count: int) -> None:
    step = max(1, -(-count // _MAX_TICKS))
    ticks = list(range(0, count, step))
    ax.set_yticks(ticks, [str(p) for p in ticks], fontsize=7 if count > 20 else 8)


def plot_partition_map(owners: PartitionMap, nodes: Sequence[str] | None = None, *, ax: Axes | None = None,
                       title: str = "partition map") -> Figure:
    """One map: a row per partition, a column per node; dark cells primaries, light cells replicas."""
    nodes = list(nodes) if nodes is not None else map_nodes(owners)
    fig, ax = axes_figure(ax, max(4.0, 0.55 * len(nodes) + 2), max(3.0, min(12.0, 0.18 * len(owners) + 1.5)))
    matrix = map_matrix(owners, nodes)
    ax.imshow(matrix, cmap=_CMAP, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
    if matrix.size <= _LABELLED_CELLS:
        for p, j in zip(*np.nonzero(matrix == PRIMARY), strict=True):
            ax.text(j, p, "P", ha="center", va="center", color="white", fontsize=7, fontweight="bold")
    if matrix.size <= _LABELLED_CELLS * 4:  # cell borders, while cells are big enough to need them
        ax.set_xticks(np.arange(-0.5, len(nodes)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(owners)), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    ax.set_xticks(range(len(nodes)), nodes, rotation=45 if len(nodes) > 8 else 0, fontsize=8)
    _partition_ticks(ax, len(owners))
    ax.set_xlabel("node")
    ax.set_ylabel("partition")
    ax.set_title(title, fontsize=10)
    if ax.get_legend() is None and len(fig.axes) == 1:
        ax.legend(handles=_legend(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def _legend(changes: bool = False) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [Patch(color=PRIMARY_COLOR, label="primary"),
                                     Patch(color=REPLICA_COLOR, label="replica")]
    if changes:
        handles += [Patch(facecolor="none", edgecolor=NEW_COPY_COLOR, linewidth=2, label="new copy (copy to)"),
                    Line2D([], [], marker="x", color=DROPPED_COLOR, linestyle="none", label="copy dropped"),
                    Line2D([], [], marker="o", color="white", markeredgecolor="#ff7f0e", linestyle="none",
                           label="primary moved")]
    return handles


def plot_map_change(before: PartitionMap, after: PartitionMap, nodes: Sequence[str] | None = None, *,
                    title: str = "", before_title: str = "before", after_title: str = "after") -> Figure:
    """Two maps side by side. Before: a red x on each copy that goes away. After: a green frame
    on each new copy (a node that must copy the partition) and an orange ring on each primary
    that moved."""
    if len(before) != len(after):
        raise ValueError(f"the maps differ in partition count: {len(before)} and {len(after)}")
    nodes = list(nodes) if nodes is not None else map_nodes(before, after)
    width = max(7.0, 1.1 * len(nodes) + 3)
    height = max(3.5, min(12.0, 0.18 * len(before) + 2))
    fig, (left, right) = new_figure(width, height, 1, 2, sharex=False, sharey=True)
    plot_partition_map(before, nodes, ax=left, title=before_title)
    plot_partition_map(after, nodes, ax=right, title=after_title)
    right.set_ylabel("")
    old, new = map_matrix(before, nodes), map_matrix(after, nodes)
    gained = np.nonzero((old == NONE) & (new != NONE))
    dropped = np.nonzero((old != NONE) & (new == NONE))
    for p, j in zip(*gained, strict=True):
        right.add_patch(Rectangle((j - 0.5, p - 0.5), 1, 1, fill=False, edgecolor=NEW_COPY_COLOR, linewidth=2,
                                  gid="new-copy"))
    left.plot(dropped[1], dropped[0], "x", color=DROPPED_COLOR, markersize=6, markeredgewidth=1.5, linestyle="none",
              gid="dropped")
    moved = [p for p in range(len(after)) if before[p] and after[p] and before[p][0] != after[p][0]]
    cols = [nodes.index(after[p][0]) for p in moved if after[p][0] in nodes]
    right.plot(cols, [p for p in moved if after[p][0] in nodes], "o", markerfacecolor="none",
               markeredgecolor="#ff7f0e", markersize=9, markeredgewidth=1.5)
    summary = f"{len(gained[0])} copies to make, {len(dropped[0])} dropped, {len(moved)} primaries moved"
    fig.suptitle(f"{title}: {summary}" if title else summary, fontsize=11)
    right.legend(handles=_legend(changes=True), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                 frameon=False)
    return fig

