"""A non-linearizable history's failure, drawn as Porcupine draws one: operations per client.

The checker (:mod:`clusterkit.check.linearizability`) reports, for the first
key that fails, the operation that can't be placed, the operations
concurrent with it and the last few it could linearize. Here each client
process is a row and each operation a bar from its call to its return (an
operation with an unknown outcome runs off to the right, hatched), coloured
by that role; other operations on the key in the same stretch of time are
drawn faintly for context.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..check.history import Operation, read_history
from ..check.linearizability import CheckResult, check_operations
from ..check.models import model_for
from .style import new_figure

BLOCKED_COLOR = "#d62728"
CONCURRENT_COLOR = "#ff7f0e"
LINEARIZED_COLOR = "#2ca02c"
CONTEXT_COLOR = "#dddddd"


def find_violation(history: Iterable[Mapping[str, Any]], model: str = "kv", *, max_steps: int = 50_000_000,
                   budget_seconds: float | None = None,
                   clock: Callable[[], float] | None = None) -> tuple[CheckResult, list[Operation]]:
    """Check a JSON-lines history (``report.history``) as ``clusterkit check linearizability``
    does; returns the result and the paired operations it was given. The search is bounded by
    ``max_steps`` (deterministic), and by ``budget_seconds`` when a ``clock`` is given
    (``time.monotonic``)."""
    text = "".join(json.dumps(dict(op)) + "\n" for op in history)
    ops = read_history(text, "jsonl", source="history")
    result = check_operations(ops, model_for(model), max_steps=max_steps, budget_seconds=budget_seconds,
                              clock=clock)
    return result, ops


def _describe(op: Operation) -> str:
    arg = "" if op.input is None else f" {op.input}"
    if op.status == "ok" and op.output is not None and op.output != op.input:
        return f"{op.f}{arg} -> {op.output!r}"
    return f"{op.f}{arg}" + ("" if op.status == "ok" else f" ({op.status})")


def plot_violation(result: CheckResult, operations: Sequence[Operation] = (), *, title: str = "") -> Figure:
    """The failure window of a NOT_LINEARIZABLE result, one row per client process."""
    failure = result.failure
    if failure is None:
        raise ValueError(f"nothing to draw: the history is {result.verdict.value}")
    window = failure.window()
    role = {op.id: CONCURRENT_COLOR for op in failure.concurrent}
    role.update({op.id: LINEARIZED_COLOR for op in failure.linearized_before})
    role[failure.blocked.id] = BLOCKED_COLOR
    finite = [t for op in window for t in (op.call, op.ret) if math.isfinite(t)]
    lo, hi = min(finite), max(finite)
    pad = max((hi - lo) * 0.08, 1e-3)
    lo, hi = lo - pad, hi + pad
    ids = {op.id for op in window}
    context = [op for op in operations if op.key == failure.key and op.id not in ids
               and op.call < hi and (op.ret if math.isfinite(op.ret) else hi) > lo]
    drawn = window + context
    processes = sorted({op.process for op in drawn}, key=lambda p: (str(type(p)), p))
    row = {p: i for i, p in enumerate(processes)}
    fig, (ax,) = new_figure(11.0, 1.6 + 0.55 * len(processes))
    for op in sorted(drawn, key=lambda o: o.id in ids):  # context first, underneath
        end = op.ret if math.isfinite(op.ret) else hi
        color = role.get(op.id, CONTEXT_COLOR)
        ax.barh(row[op.process], end - op.call, left=op.call, height=0.6, color=color,
                edgecolor="black" if op.id in ids else "#bbbbbb", linewidth=1.5 if op.id == failure.blocked.id else 0.6,
                hatch="//" if not math.isfinite(op.ret) else None, alpha=1.0 if op.id in ids else 0.7)
        ax.text(op.call, row[op.process], " " + _describe(op), va="center", fontsize=7, clip_on=True,
                color="black" if op.id in ids else "#888888")
    ax.set_yticks(range(len(processes)), [f"client {p}" for p in processes], fontsize=8)
    ax.set_ylim(len(processes) - 0.5, -0.5)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("time")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=BLOCKED_COLOR, label="cannot be placed"),
                       Patch(color=CONCURRENT_COLOR, label="concurrent with it"),
                       Patch(color=LINEARIZED_COLOR, label="last linearized"),
                       Patch(facecolor="white", edgecolor="black", hatch="//", label="outcome unknown"),
                       Patch(color=CONTEXT_COLOR, label="other ops on the key")],
              loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    head = f"not linearizable: key {failure.key!r}" if failure.key is not None else "not linearizable"
    ax.set_title(f"{title}\n{head}" if title else head, fontsize=10)
    return fig

