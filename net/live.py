"""A timeline of real node processes, recorded by polling their HTTP APIs, drawn like a simulated one.

:class:`LivePoller` asks every node of a cluster (``clusterkit.net.local.LocalCluster``, or any
object with a ``nodes`` mapping of id to a node with ``url`` and ``alive``) for
``/consensus/stats`` and records, into a :class:`clusterkit.sim.trace.Timeline`, each node's
role and term and its commit index, only when they change. Polls are bounded: one request per
node per round, each with a short timeout, rounds ``every`` seconds apart (0.1 s by default),
in a background thread (:meth:`LivePoller.running`) or when called (:meth:`LivePoller.poll`).
The caller notes the faults it causes (:meth:`LivePoller.fault`) and moments worth pointing out
(:meth:`LivePoller.mark`); :meth:`LivePoller.plot` hands it all to
:func:`~clusterkit.plot.timeline.plot_timeline`, in wall-clock seconds.

A node whose process is not running is ``down``; one the cluster marked failed or that left the
Raft group is ``gone``; a running node that doesn't answer keeps its last state (a node still
starting has no row until it answers). A kill lasts until that node's restart, or until the
cluster marks it failed (:func:`~clusterkit.plot.run_data.fault_windows`).

``clusterkit demo --plot DIR`` and ``notebooks/local-cluster.ipynb`` record their runs with it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from clusterkit.sim.faults import window_rules
from clusterkit.sim.trace import Timeline

from clusterkit.plot.timeline import plot_timeline

log = logging.getLogger(__name__)
Fetch = Callable[[str, float], tuple[int, Any]]  # (url, timeout) -> (HTTP status, decoded JSON); 0: no answer
TIME_LABEL = "seconds (wall clock)"


def _http_fetch(url: str, timeout: float) -> tuple[int, Any]:
    from clusterkit.net.local import http_json

    return http_json(url, timeout=timeout)


def role_of(node_id: str, stats: Mapping[str, Any]) -> tuple[str, int] | None:
    """(state, term) from a node's ``/consensus/stats`` answer; None when its Raft isn't running yet."""
    if not stats.get("up", "role" in stats):
        return None
    term = int(stats.get("term", 0))
    if stats.get("removed"):
        return "gone", term
    role = str(stats.get("role", "follower"))
    if role == "follower" and node_id in stats.get("learners", ()):
        role = "learner"
    return role, term


class LivePoller:
    """Polls a cluster's nodes into ``timeline``; times are ``clock()`` seconds (by default since
    the poller was made)."""

    def __init__(self, cluster: Any, *, every: float = 0.1, timeout: float = 0.5,
                 clock: Callable[[], float] | None = None, fetch: Fetch | None = None) -> None:
        if every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        self.cluster = cluster
        self.every = every
        self.timeout = timeout
        start = time.monotonic()
        self.clock = clock if clock is not None else (lambda: time.monotonic() - start)
        self.fetch = fetch if fetch is not None else _http_fetch
        self.timeline = Timeline(every=every, commit_every=every, fault_rules=window_rules())
        self.marks: list[tuple[float, str]] = []
        self.rounds = 0
        self._gone: set[str] = set()
        self._lock = threading.Lock()  # poll rounds and the caller's notes, one at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return round(self.clock(), 4)

    # ------------------------------------------------------------ recording
    def poll(self) -> None:
        """One round: every node once."""
        nodes = list(self.cluster.nodes.items())
        for node_id, node in nodes:
            if node_id in self._gone:
                continue
            if not node.alive:
                with self._lock:
                    if node_id in self.timeline._state and node_id not in self._gone:  # seen running before
                        self.timeline.role(self.now(), node_id, "down", self._term(node_id))
                continue
            status, doc = self.fetch(node.url + "/consensus/stats", self.timeout)
            found = role_of(node_id, doc) if status == 200 and isinstance(doc, dict) else None
            if found is None:
                continue  # starting, or too busy to answer: its last state stands
            with self._lock:
                if node_id in self._gone or not node.alive:  # killed while it answered: down stands
                    continue
                t = self.now()
                self.timeline.role(t, node_id, *found)
                if "commit" in doc:
                    self.timeline.commit(t, node_id, int(doc["commit"]))
        self.rounds += 1

    def _term(self, node_id: str) -> int:
        return self.timeline._state.get(node_id, ("", 0))[1]

    def fault(self, kind: str, node: str = "", **extra: Any) -> None:
        """A fault (kill, restart, pause, resume) or membership event (join, leave, fail) now; the
        first one also marks where the faults begin. Note a kill once the process is dead (a node
        is down from then on, not at the next poll)."""
        with self._lock:
            t = self.now()
            self.timeline.faults.append({"t": t, "kind": kind, "node": node, "applied": True, **extra})
            self.timeline.phases.setdefault("faults", t)
            if kind == "kill" and node in self.timeline._state:  # down now, not at the next poll
                self.timeline.role(t, node, "down", self._term(node))

    def gone(self, node: str, kind: str = "fail") -> None:
        """``node`` is out of the cluster for good (the cluster marked it failed, or it left):
        a ``kind`` event now, and its row is ``gone`` from here on. Only the first call counts."""
        if node in self._gone:
            return
        self.fault(kind, node)
        with self._lock:
            self._gone.add(node)
            self.timeline.role(self.now(), node, "gone", self._term(node))

    def mark(self, label: str) -> None:
        """A moment to point out on every panel (a thick line, labelled)."""
        with self._lock:
            self.marks.append((self.now(), label))

    def finish(self) -> None:
        """Note the end of the run (the first call counts)."""
        with self._lock:
            self.timeline.phases.setdefault("end", self.now())

    # ------------------------------------------------------------ the background thread
    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except Exception:  # a poll that broke skips a round, never the run
                log.debug("live poll failed", exc_info=True)
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clusterkit-live-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling (a round under way finishes first) and note the end."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=self.timeout * (len(self.cluster.nodes) + 1) + 1.0)
        self.finish()

    @contextmanager
    def running(self) -> Iterator[LivePoller]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # ------------------------------------------------------------ drawing and saving
    def plot(self, history: Iterable[Mapping[str, Any]] = (), **kw: Any) -> Figure:
        kw.setdefault("time_label", TIME_LABEL)
        return plot_timeline(self.timeline, history, marks=[*self.marks, *kw.pop("marks", ())], **kw)

    def save_json(self, path: str | Path, history: Sequence[Mapping[str, Any]] = (), title: str = "") -> Path:
        """The recorded run (timeline, marks, client history) as JSON, for :func:`load_run`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"title": title, "timeline": self.timeline.to_json(), "marks": [list(m) for m in self.marks],
               "history": [dict(h) for h in history]}
        path.write_text(json.dumps(doc, separators=(",", ":")))
        return path


def load_run(path: str | Path) -> tuple[Timeline, list[dict[str, Any]], list[tuple[float, str]], str]:
    """(timeline, history, marks, title) from :meth:`LivePoller.save_json`; ``plot_timeline(timeline,
    history, marks=marks, title=title, time_label=TIME_LABEL)`` draws it again."""
    doc = json.loads(Path(path).read_text())
    tl = doc["timeline"]
    timeline = Timeline(every=tl["every"], commit_every=tl["commit_every"], fault_rules=window_rules())
    timeline.roles = [tuple(r) for r in tl["roles"]]  # type: ignore[misc]
    timeline.commits = [tuple(c) for c in tl["commits"]]  # type: ignore[misc]
    timeline.faults = tl["faults"]
    timeline.phases = tl["phases"]
    return timeline, doc["history"], [(float(t), str(label)) for t, label in doc["marks"]], doc.get("title", "")


def event_dicts(events: Iterable[Any]) -> list[dict[str, Any]]:
    """A checker history (:class:`clusterkit.check.history.Event` objects) as the mappings the
    plots take."""
    return [{"process": e.process, "type": e.type, "f": e.f, "key": e.key, "value": e.value, "time": e.time}
            for e in events]
