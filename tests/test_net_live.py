"""clusterkit.net.live: a timeline of real nodes polled over HTTP, here against fake nodes (no
processes): the roles and commit indexes it records, the fault windows, the plot drawn from it,
the JSON it saves, and the background thread's bounds."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from clusterkit.plot import fault_windows, role_spans
from clusterkit.net.live import TIME_LABEL, LivePoller, event_dicts, load_run, role_of

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeNode:
    url: str
    alive: bool = True
    stats: dict[str, Any] | None = None  # what /consensus/stats answers; None: no answer


class FakeCluster:
    def __init__(self, *ids: str) -> None:
        self.nodes = {i: FakeNode(f"http://{i}") for i in ids}
        self.requests: list[str] = []

    def fetch(self, url: str, timeout: float) -> tuple[int, Any]:
        self.requests.append(url)
        node = next(n for n in self.nodes.values() if url.startswith(n.url + "/"))
        return (200, node.stats) if node.stats is not None else (0, None)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _stats(role: str, term: int, commit: int, learners: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"up": True, "role": role, "term": term, "commit": commit, "learners": list(learners)}


def _recorded() -> tuple[LivePoller, list[dict[str, Any]]]:
    """A kill-and-join run, as the real demo records one."""
    cluster, clock = FakeCluster("node-1", "node-2", "node-3"), Clock()
    poller = LivePoller(cluster, clock=clock, fetch=cluster.fetch)
    n1, n2, n3 = cluster.nodes.values()
    n1.stats, n2.stats, n3.stats = _stats("leader", 1, 5), _stats("follower", 1, 5), None  # node-3 starting
    poller.poll()
    clock.t = 1.0
    n3.stats = _stats("follower", 1, 4, learners=("node-3",))
    poller.poll()
    clock.t = 2.0
    n3.stats = _stats("follower", 1, 5)
    poller.poll()
    clock.t = 3.0
    n3.alive = False
    poller.fault("kill", "node-3")
    cluster.nodes["node-4"] = FakeNode("http://node-4", stats=None)
    poller.fault("join", "node-4")
    clock.t = 3.5
    poller.poll()  # node-3 down (no request to it), node-4 not answering yet: no row
    clock.t = 4.0
    cluster.nodes["node-4"].stats = _stats("follower", 1, 6, learners=("node-4",))
    n1.stats, n2.stats = _stats("leader", 1, 6), _stats("follower", 1, 6)
    poller.poll()
    clock.t = 5.0
    poller.gone("node-3")  # the cluster marked it failed
    poller.gone("node-3")  # once
    poller.poll()
    clock.t = 6.0
    poller.mark("rebalanced and copied")
    poller.finish()
    history = [
        {"process": 0, "type": "invoke", "f": "put", "key": "k", "value": "1", "time": 2.5},
        {"process": 0, "type": "ok", "f": "put", "key": "k", "value": "1", "time": 2.51},
        {"process": 1, "type": "invoke", "f": "get", "key": "k", "value": None, "time": 3.1},
        {"process": 1, "type": "fail", "f": "get", "key": "k", "value": None, "time": 3.2},
        {"process": 0, "type": "invoke", "f": "put", "key": "k", "value": "2", "time": 3.2},
        {"process": 0, "type": "info", "f": "put", "key": "k", "value": "2", "time": 4.2},
    ]
    assert not any(u.startswith("http://node-3") for u in cluster.requests[-4:])
    return poller, history


def test_role_of_reads_consensus_stats():
    assert role_of("n1", {"up": False, "node_id": "n1"}) is None
    assert role_of("n1", _stats("leader", 3, 9)) == ("leader", 3)
    assert role_of("n2", _stats("follower", 3, 9, learners=("n2",))) == ("learner", 3)
    assert role_of("n2", {**_stats("follower", 3, 9), "removed": True}) == ("gone", 3)


def test_poller_records_roles_commits_and_the_fault_windows():
    poller, _ = _recorded()
    tl = poller.timeline
    spans = {n: [(s.state, s.start, s.end) for s in ss] for n, ss in role_spans(tl).items()}
    assert spans["node-1"] == [("leader", 0.0, 6.0)]
    assert spans["node-3"] == [("learner", 1.0, 2.0), ("follower", 2.0, 3.0), ("down", 3.0, 5.0), ("gone", 5.0, 6.0)]
    assert spans["node-4"] == [("learner", 4.0, 6.0)]
    assert [c for c in tl.commits if c[1] == "node-2"] == [(0.0, "node-2", 5), (4.0, "node-2", 6)]  # changes only
    assert [(f["kind"], f["node"], f["t"]) for f in tl.faults] == [
        ("kill", "node-3", 3.0), ("join", "node-4", 3.0), ("fail", "node-3", 5.0)]
    windows = {(w.kind, w.label): (w.start, w.end) for w in fault_windows(tl)}
    assert windows == {("kill", "kill node-3"): (3.0, 5.0),  # until the cluster marked it failed
                       ("join", "join node-4"): (3.0, 3.0), ("fail", "fail node-3"): (5.0, 5.0)}
    assert tl.phases == {"faults": 3.0, "end": 6.0} and poller.marks == [(6.0, "rebalanced and copied")]


def _check_figure(fig: Any) -> None:
    roles_ax, commit_ax, latency_ax, rate_ax = fig.axes[:4]
    assert [ax.get_ylabel() for ax in (roles_ax, commit_ax, latency_ax, rate_ax)] == [
        "role", "commit index", "latency (ms)", "ops / s"]
    assert rate_ax.get_xlabel() == TIME_LABEL
    assert [t.get_text() for t in roles_ax.get_yticklabels()] == ["node-1", "node-2", "node-3", "node-4"]
    for ax in (roles_ax, commit_ax, latency_ax, rate_ax):
        gids = sorted(a.get_gid() for a in ax.get_children() if (a.get_gid() or "").startswith("fault:"))
        assert gids == ["fault:fail", "fault:join", "fault:kill"]
        assert [a for a in ax.get_children() if a.get_gid() == "mark"]
    labels = [t.get_text() for t in roles_ax.texts]
    assert {"kill node-3", "join node-4", "fail node-3", "rebalanced and copied"} <= set(labels)
    legend = [t.get_text() for t in latency_ax.get_legend().get_texts()]
    assert legend == ["ok", "failed", "timed out / unknown"]
    assert "3 client operations (1 ok, 1 failed, 1 unknown)" in fig._suptitle.get_text()


def test_the_plot_of_a_polled_run(tmp_path):
    poller, history = _recorded()
    fig = poller.plot(history, title="fake demo")
    _check_figure(fig)
    assert fig._suptitle.get_text().startswith("fake demo")
    # saved and loaded again, it draws the same
    path = poller.save_json(tmp_path / "run.json", history, title="fake demo")
    timeline, loaded, marks, title = load_run(path)
    assert (timeline.roles, timeline.commits, timeline.faults) == (
        poller.timeline.roles, poller.timeline.commits, poller.timeline.faults)
    assert loaded == history and marks == poller.marks and title == "fake demo"
    from clusterkit.plot import plot_timeline

    _check_figure(plot_timeline(timeline, loaded, marks=marks, title=title, time_label=TIME_LABEL))
    json.loads(path.read_text())


def test_event_dicts_from_checker_events():
    from clusterkit.check.history import Event

    assert event_dicts([Event(3, "invoke", "put", "v", "k", 1.5)]) == [
        {"process": 3, "type": "invoke", "f": "put", "key": "k", "value": "v", "time": 1.5}]


def test_the_background_thread_polls_every_interval_and_stops():
    cluster = FakeCluster("node-1", "node-2")
    for n in cluster.nodes.values():
        n.stats = _stats("follower", 1, 0)
    poller = LivePoller(cluster, every=0.02, fetch=cluster.fetch)
    with poller.running():
        assert any(t.name == "clusterkit-live-poller" for t in threading.enumerate())
        deadline = time.monotonic() + 30  # a bounded wait for three rounds, not a guess at how long they take
        while poller.rounds < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    rounds = poller.rounds
    assert rounds >= 3 and len(cluster.requests) == 2 * rounds  # one request per node per round
    assert not any(t.name == "clusterkit-live-poller" for t in threading.enumerate())  # stopped and joined
    assert poller.rounds == rounds and "end" in poller.timeline.phases
    with pytest.raises(ValueError):
        LivePoller(cluster, every=0)


def test_the_local_cluster_notebook_polls_with_it():
    text = (ROOT / "notebooks" / "local-cluster.ipynb").read_text()
    assert "LivePoller(cluster" in text and "def poll(" not in text
