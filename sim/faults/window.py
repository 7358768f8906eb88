"""How a fault kind shows on a run's timeline plot (read by ``clusterkit.plot.run_data.fault_windows``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowRule:
    """A window from the fault until a later fault of a ``closed_by`` kind (of the same node when
    ``same_node``), or for the fault's ``seconds`` when ``timed``, and at the latest until
    everything is healed; a ``moment`` is a line. Kinds with no rule (restart, resume, heal: they
    end windows) draw nothing themselves."""

    color: str
    closed_by: tuple[str, ...] = ()
    same_node: bool = True
    timed: bool = False
    moment: bool = False
