"""Figures without pyplot, and the colours every plot shares.

Figures are made with :class:`matplotlib.figure.Figure` on an Agg canvas,
never through pyplot: no global figure registry to leak memory in a loop, no
GUI backend needed on a headless machine, and nothing to close. In a
notebook a returned figure shows as usual (``%matplotlib inline``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# A Raft node's state over time (clusterkit.sim.trace.Timeline): warm for leading, pale for following.
ROLE_COLORS = {
    "leader": "#d62728",
    "candidate": "#ff7f0e",
    "pre-candidate": "#ffbb78",
    "follower": "#c6dbef",
    "learner": "#9edae5",
    "paused": "#9467bd",
    "down": "#444444",
    "gone": "#bbbbbb",
}
OUTCOME_COLORS = {"ok": "#2ca02c", "fail": "#d62728", "info": "#ff7f0e"}
PRIMARY_COLOR = "#08519c"
REPLICA_COLOR = "#9ecae1"
NEW_COPY_COLOR = "#2ca02c"
DROPPED_COLOR = "#d62728"


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, *, sharex: bool = True,
               sharey: bool = False, height_ratios: list[float] | None = None) -> tuple[Figure, list[Axes]]:
    """A figure of rows x cols axes (listed row by row) on an Agg canvas, so it draws and saves
    headless."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, sharex=sharex, sharey=sharey, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, [ax for row in axes for ax in row]


def axes_figure(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    """The figure to draw on: ``ax``'s own when given (to compose plots), else a new one."""
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig, (only,) = new_figure(width, height)
    return fig, only


def save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` (PNG unless the suffix says otherwise); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key putting n2 before n10 and node-9 before node-10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def sorted_nodes(nodes: Iterable[str]) -> list[str]:
    return sorted(set(nodes), key=natural_key)
