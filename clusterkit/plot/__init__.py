"""Plots of partition maps, rebalancing, simulated runs, messages and histories (matplotlib, networkx).

Every function returns a :class:`matplotlib.figure.Figure` made without
pyplot (see :mod:`.style`), so it works headless and in notebooks alike;
:func:`save` writes one. Needs the ``plot`` extra: ``pip install 'clusterkit[plot]'``.
"""

from __future__ import annotations

from .history import find_violation, plot_violation
from .lamport import election_window, plot_messages
from .migration import Copy, copies_between, copies_from_events, migration_graph, plot_migration_graph
from .movement import MembershipEvent, MovementRow, plot_movement, replay_membership
from .partition_map import plot_map_change, plot_partition_map
from .run_data import client_ops, fault_windows, role_spans
from .run_plots import write_run_plots
from .style import save
from .timeline import plot_timeline

__all__ = [
    "Copy", "MembershipEvent", "MovementRow", "client_ops", "copies_between", "copies_from_events",
    "election_window", "fault_windows", "find_violation", "migration_graph", "plot_map_change",
    "plot_messages", "plot_migration_graph", "plot_movement", "plot_partition_map", "plot_timeline",
    "plot_violation", "replay_membership", "role_spans", "save", "write_run_plots",
]
