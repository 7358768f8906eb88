"""clusterkit.plot on small, hand-made inputs: what each figure shows (axes, labels, shaded fault
windows, counts), plus one small simulated run and the command line's --plot."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("matplotlib")

from clusterkit.sim.runner import run_scenario
from clusterkit.sim.scenario import Fault, Scenario, Workload
from clusterkit.sim.trace import MapRecord, MessageRecord, Timeline
from matplotlib.collections import PathCollection

from clusterkit.check.linearizability import Verdict
from clusterkit.partitioning.assigner import assign, fewest_copy_moves, movement
from clusterkit.partitioning.rendezvous import rendezvous
from clusterkit.plot import (
    Copy,
    MembershipEvent,
    client_ops,
    copies_between,
    copies_from_events,
    election_window,
    fault_windows,
    find_violation,
    migration_graph,
    plot_map_change,
    plot_messages,
    plot_migration_graph,
    plot_movement,
    plot_partition_map,
    plot_timeline,
    plot_violation,
    replay_membership,
    role_spans,
    save,
    write_run_plots,
)
from clusterkit.plot.lamport import cuts_at, exact_roles
from clusterkit.plot.migration import LOST
from clusterkit.plot.partition_map import PRIMARY, REPLICA, map_matrix
from clusterkit.plot.run_data import commit_series, partition_label
from clusterkit.plot.run_plots import biggest_change, membership_events, problem_marks

ROOT = Path(__file__).resolve().parents[1]


def _gids(fig, prefix: str) -> list:
    return [a for a in fig.findobj() if (a.get_gid() or "").startswith(prefix)]


# ------------------------------------------------------------------ partition maps
def test_partition_map_marks_primaries_and_replicas():
    owners = (("n1", "n2"), ("n2", "n3"), ("n3", "n1"))
    m = map_matrix(owners, ["n1", "n2", "n3"])
    assert m.tolist() == [[PRIMARY, REPLICA, 0], [0, PRIMARY, REPLICA], [REPLICA, 0, PRIMARY]]
    fig = plot_partition_map(owners, title="three")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["n1", "n2", "n3"]
    assert ax.get_xlabel() == "node" and ax.get_ylabel() == "partition" and ax.get_title() == "three"
    assert sorted(t.get_text() for t in ax.texts) == ["P", "P", "P"]  # one primary per partition


def test_map_change_frames_new_copies_and_crosses_dropped_ones():
    before = assign(["n1", "n2", "n3"], 12, 2)
    after = assign(["n1", "n2", "n3", "n4"], 12, 2, before)
    gained = movement(before, after).copies_moved
    fig = plot_map_change(before, after, title="join n4")
    assert len(_gids(fig, "new-copy")) == gained == 6  # n4's share: 12*2/4
    (dropped,) = _gids(fig, "dropped")
    assert len(dropped.get_xdata()) == gained  # a join only hands copies over
    assert f"{gained} copies to make" in fig._suptitle.get_text()
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]
    with pytest.raises(ValueError, match="partition count"):
        plot_map_change(before, after[:5])


# ------------------------------------------------------------------ movement against rendezvous
def test_replay_membership_matches_both_algorithms_and_the_lower_bound():
    events = [MembershipEvent("join", "n4"), MembershipEvent("join", "n5"), MembershipEvent("fail", "n2"),
              MembershipEvent("leave", "n1")]
    ours0, go0, rows = replay_membership(["n1", "n2", "n3"], events, 32, 3)
    assert ours0 == assign(["n1", "n2", "n3"], 32, 3) and go0 == rendezvous(["n1", "n2", "n3"], 32, 3)
    assert [r.nodes for r in rows][-1] == ("n3", "n4", "n5")
    prev = go0
    for r in rows:
        assert r.go.owners == rendezvous(list(r.nodes), 32, 3)  # a function of the node set alone
        assert r.go.copies_moved == movement(prev, r.go.owners).copies_moved
        assert r.go.fewest == fewest_copy_moves(prev, r.nodes, 32, 3)
        assert r.ours.copies_moved == r.ours.fewest  # ours is minimal, by construction
        assert r.ours.copy_balance == 1.0 and r.ours.primary_balance == 1.0
        prev = r.go.owners
    with pytest.raises(ValueError, match="not a member"):
        replay_membership(["n1"], [MembershipEvent("leave", "n9")], 4, 1)
    with pytest.raises(ValueError, match="event kind"):
        MembershipEvent("explode", "n1")


def test_movement_plot_has_a_bar_per_algorithm_and_event():
    events = [MembershipEvent("join", f"n{i}") for i in range(4, 7)]
    _, _, rows = replay_membership(["n1", "n2", "n3"], events, 16, 2)
    fig = plot_movement(rows, title="grow")
    copies_ax, primaries_ax, balance_ax = fig.axes
    assert len(copies_ax.patches) == len(primaries_ax.patches) == 2 * len(rows)
    assert [p.get_height() for p in copies_ax.patches[:3]] == [r.ours.copies_moved for r in rows]
    assert [t.get_text().split("\n")[0] for t in balance_ax.get_xticklabels()] == ["join n4", "join n5", "join n6"]
    assert copies_ax.get_ylabel() == "copies moved" and "total copies moved" in fig._suptitle.get_text()
    with pytest.raises(ValueError):
        plot_movement([])


# ------------------------------------------------------------------ migration graph
def test_migration_copies_come_from_the_first_live_holder():
    before = (("a", "b"), ("b", "c"), ("c", "a"))
    after = (("a", "d"), ("b", "d"), ("d", "a"))
    assert copies_between(before, after) == [Copy(0, "a", "d"), Copy(1, "b", "d"), Copy(2, "c", "d")]
    # c failed: its partition's copy comes from a; one with no live holder left is marked lost.
    assert copies_between(before, after, gone=["c"])[2] == Copy(2, "a", "d")
    assert copies_between(((("x",),)[0],), (("d",),), gone=["x"]) == [Copy(0, LOST, "d")]
    g = migration_graph(copies_between(before, after), nodes=["a", "b", "c", "d", "e"])
    assert g["a"]["d"]["weight"] == 1 and g.number_of_edges() == 3 and "e" in g
    fig = plot_migration_graph(g, gone=["c"], title="join d")
    assert fig.axes[0].get_title().startswith("join d: 3 partition copies over 3 links")


def test_migration_copies_from_facade_events():
    node = lambda i: SimpleNamespace(id=i)
    events = [SimpleNamespace(number=3, copy_from=(node("a"), node("b")), copy_to=node("c")),
              SimpleNamespace(number=4, copy_from=(), copy_to=node("c")),
              SimpleNamespace(number=5, copy_from=(node("a"),), copy_to=None)]  # a primary move only
    assert copies_from_events(events) == [Copy(3, "a", "c"), Copy(4, LOST, "c")]


# ------------------------------------------------------------------ run data and the timeline
def _timeline() -> Timeline:
    tl = Timeline(every=0.01, commit_every=0.1)
    for t, node, state, term in [(0.0, "n1", "follower", 0), (0.0, "n2", "follower", 0), (0.0, "n3", "follower", 0),
                                 (1.0, "n1", "leader", 1), (3.0, "n1", "down", 0), (4.5, "n2", "leader", 2),
                                 (6.0, "n1", "follower", 2)]:
        tl.role(t, node, state, term)
    for t in range(10):
        for node in ("n1", "n2", "n3"):
            if not (node == "n1" and 3 <= t < 6):
                tl.commit(float(t), node, t * 10)
    tl.faults = [
        {"t": 3.0, "kind": "kill", "node": "n1", "applied": True},
        {"t": 3.5, "kind": "partition", "cuts": [["n1", "n2"], ["n2", "n1"], ["n2", "n3"], ["n3", "n2"]],
         "applied": True},
        {"t": 4.0, "kind": "kill", "node": "n1", "applied": False},  # skipped: not a window
        {"t": 5.0, "kind": "heal", "applied": True},
        {"t": 5.5, "kind": "stall", "node": "n3", "seconds": 0.25, "applied": True},
        {"t": 6.0, "kind": "restart", "node": "n1", "applied": True},
        {"t": 7.0, "kind": "join", "node": "n4", "applied": True},
        {"t": 7.5, "kind": "pause", "node": "n2", "applied": True},
    ]
    tl.phases = {"faults": 2.0, "heal": 8.0, "end": 10.0}
    return tl


def _history() -> list[dict]:
    return [
        {"process": 0, "type": "invoke", "f": "put", "key": "k", "value": "0.1", "time": 1.0},
        {"process": 0, "type": "ok", "f": "put", "key": "k", "value": "0.1", "time": 1.01},
        {"process": 1, "type": "invoke", "f": "get", "key": "k", "value": None, "time": 2.0},
        {"process": 1, "type": "ok", "f": "get", "key": "k", "value": "0.1", "time": 2.005},
        {"process": 0, "type": "invoke", "f": "put", "key": "k", "value": "0.2", "time": 3.0},
        {"process": 0, "type": "info", "f": "put", "key": "k", "value": "0.2", "time": 4.0},
        {"process": 1, "type": "invoke", "f": "get", "key": "k", "value": None, "time": 3.2},
        {"process": 1, "type": "fail", "f": "get", "key": "k", "value": None, "time": 3.2004},
        {"process": 2, "type": "invoke", "f": "put", "key": "k", "value": "2.1", "time": 9.0},
    ]


def test_fault_windows_pair_each_fault_with_what_ends_it():
    windows = {(w.kind, w.label): (w.start, w.end) for w in fault_windows(_timeline())}
    assert windows == {
        ("kill", "kill n1"): (3.0, 6.0),  # until its restart; the skipped kill adds nothing
        ("partition", "n2 | n1 n3"): (3.5, 5.0),  # until the heal
        ("stall", "stall n3"): (5.5, 5.75),
        ("join", "join n4"): (7.0, 7.0),  # a moment
        ("pause", "pause n2"): (7.5, 8.0),  # cut short by healing everything
    }
    assert partition_label([("n1", "n2")], ["n1", "n2", "n3"]) == "1 one-way link cut"
    assert partition_label([("n2", "n3"), ("n3", "n2")], ["n1", "n2", "n3"]) == "2 one-way links cut"  # n1 bridges


def test_role_spans_commits_and_client_ops():
    tl = _timeline()
    spans = role_spans(tl)
    assert [(s.state, s.start, s.end) for s in spans["n1"]] == [
        ("follower", 0.0, 1.0), ("leader", 1.0, 3.0), ("down", 3.0, 6.0), ("follower", 6.0, 10.0)]
    xs, ys = commit_series(tl)["n2"]
    assert xs[-1] == 10.0 and ys[-1] == 90  # carried on to the end
    ops = client_ops(_history())
    assert [(o.process, o.f, o.status) for o in ops] == [
        (0, "put", "ok"), (1, "get", "ok"), (0, "put", "info"), (1, "get", "fail"), (2, "put", "info")]
    assert ops[1].value == "0.1" and math.isclose(ops[1].latency, 0.005)
    assert ops[2].latency == 1.0 and ops[-1].done == math.inf


def test_timeline_plot_shades_every_fault_window_on_every_panel():
    tl = _timeline()
    fig = plot_timeline(tl, _history(), title="hand-made")
    roles_ax, commit_ax, latency_ax, rate_ax = fig.axes[:4]
    assert [ax.get_ylabel() for ax in (roles_ax, commit_ax, latency_ax, rate_ax)] == [
        "role", "commit index", "latency (ms)", "ops / s"]
    assert [t.get_text() for t in roles_ax.get_yticklabels()] == ["n1", "n2", "n3"]
    assert rate_ax.get_xlabel() == "virtual seconds"
    for ax in (roles_ax, commit_ax, latency_ax, rate_ax):
        kinds = sorted(a.get_gid() for a in ax.get_children() if (a.get_gid() or "").startswith("fault:"))
        assert kinds == ["fault:join", "fault:kill", "fault:partition", "fault:pause", "fault:stall"]
    labels = [t.get_text() for t in roles_ax.texts]
    assert "kill n1" in labels and "n2 | n1 n3" in labels and " t1" in labels and " t2" in labels
    scatters = [c for c in latency_ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in scatters) == 4  # the op that never completed has no latency
    assert "3 faults" not in fig._suptitle.get_text() and "5 client operations" in fig._suptitle.get_text()
    marked = plot_timeline(tl, marks=[(4.2, "violation")])
    assert len(_gids(marked, "mark")) == 4 and "violation" in [t.get_text() for t in marked.axes[0].texts]
    assert problem_marks(["4.807s partition map at epoch 3: partition-1: ...", "liveness: no leader"]) == [
        (4.807, "partition map at epoch 3")]
    with pytest.raises(ValueError, match="empty time window"):
        plot_timeline(tl, window=(5.0, 5.0))


def test_a_long_run_is_aggregated_not_scattered():
    tl = _timeline()
    history = []
    for i in range(6000):  # more than scatter_limit: per-bin percentiles instead of points
        t = i * 0.001
        history += [{"process": i % 4, "type": "invoke", "f": "get", "key": "k", "value": None, "time": t},
                    {"process": i % 4, "type": "ok" if i % 50 else "fail", "f": "get", "key": "k", "value": None,
                     "time": t + 0.002 + (i % 7) * 0.001}]
    fig = plot_timeline(tl, history, scatter_limit=1000, bins=50)
    latency_ax = fig.axes[2]
    assert not [c for c in latency_ax.collections if isinstance(c, PathCollection)]
    assert {line.get_label() for line in latency_ax.get_lines()} >= {"ok p50", "ok p99", "ok max"}
    assert all(len(line.get_xdata()) <= 50 for line in latency_ax.get_lines() if line.get_label().startswith("ok"))


# ------------------------------------------------------------------ message diagrams
def _messages() -> list[MessageRecord]:
    return [
        MessageRecord(1.000, "n1", "n2", "Heartbeat", 1, (0.002,)),
        MessageRecord(1.000, "n1", "n3", "Heartbeat", 1, ()),  # lost on the way
        MessageRecord(2.000, "n2", "n1", "PreVote", 2, (0.001,)),
        MessageRecord(2.000, "n2", "n3", "PreVote", 2, (0.001, 0.003)),  # duplicated
        MessageRecord(2.002, "n3", "n2", "PreVoteResponse", 2, (0.001,)),
        MessageRecord(2.004, "n2", "n3", "RequestVote", 2, (0.001,)),
        MessageRecord(2.006, "n3", "n2", "VoteResponse", 2, (0.001,)),
        MessageRecord(2.008, "n2", "n3", "AppendEntries", 2, (0.001,)),
        MessageRecord(3.500, "n2", "n1", "Heartbeat", 2, (0.001,)),
    ]


def test_election_window_and_exact_roles():
    msgs = _messages()
    start, end = election_window(msgs)
    assert math.isclose(start, 1.99) and math.isclose(end, 2.007 + 0.03)
    assert election_window(msgs, after=2.5) is None
    tl = Timeline()
    for t, node, state, term in [(0.0, "n2", "follower", 1), (2.01, "n2", "leader", 2)]:
        tl.role(t, node, state, term)
    tl.phases = {"end": 4.0}
    spans = [(s.state, s.start) for s in exact_roles(tl, msgs)["n2"]]
    # The samples missed the campaign; the messages n2 sent pin it down, and its leading too.
    assert spans == [("follower", 0.0), ("pre-candidate", 2.0), ("candidate", 2.004), ("leader", 2.008)]


def test_message_diagram_draws_an_arrow_per_delivered_copy_and_marks_losses():
    msgs = _messages()
    fig = plot_messages(msgs, window=(0.5, 3.0), title="election")
    ax = fig.axes[0]
    assert len(_gids(fig, "message")) == 8  # 7 delivered in the window, one of them twice
    assert len(_gids(fig, "lost")) == 1
    assert [t.get_text() for t in ax.get_yticklabels()] == ["n1", "n2", "n3"]
    assert "8 messages sent in [0.500, 3.000] s, 1 lost" in ax.get_title()
    hidden = plot_messages(msgs, hide=("Heartbeat",), logical=False)
    assert len(_gids(hidden, "message")) == 7 and "hidden: Heartbeat" in hidden.axes[0].get_title()
    # With a timeline, a copy arriving at a node that is down or cut off is drawn lost.
    tl = _timeline()
    assert ("n2", "n3") in cuts_at(tl, 4.0) and len(cuts_at(tl, 4.0)) == 4 and cuts_at(tl, 5.1) == set()
    late = [MessageRecord(3.6, "n2", "n3", "Heartbeat", 2, (0.001,)),
            MessageRecord(3.6, "n2", "n1", "Heartbeat", 2, (0.001,))]
    fig = plot_messages(late, timeline=tl)
    assert len(_gids(fig, "lost")) == 2
    assert len(_gids(plot_messages(late, max_messages=1), "message")) == 1


# ------------------------------------------------------------------ linearizability failures
def test_violation_window_per_client():
    history = [
        {"process": 0, "type": "invoke", "f": "put", "key": "x", "value": "1", "time": 0.0},
        {"process": 0, "type": "ok", "f": "put", "key": "x", "value": "1", "time": 1.0},
        {"process": 1, "type": "invoke", "f": "get", "key": "x", "value": None, "time": 2.0},
        {"process": 1, "type": "ok", "f": "get", "key": "x", "value": "", "time": 3.0},  # stale: can't be
        {"process": 2, "type": "invoke", "f": "put", "key": "x", "value": "2", "time": 2.5},
        {"process": 2, "type": "info", "f": "put", "key": "x", "value": "2", "time": 4.0},
        {"process": 3, "type": "invoke", "f": "get", "key": "y", "value": None, "time": 2.0},
        {"process": 3, "type": "ok", "f": "get", "key": "y", "value": "", "time": 2.1},
    ]
    result, ops = find_violation(history)
    assert result.verdict is Verdict.NOT_LINEARIZABLE and result.failure.key == "x"
    fig = plot_violation(result, ops, title="stale read")
    ax = fig.axes[0]
    window = result.failure.window()
    assert len(ax.patches) == len(window)  # key y is another key: not drawn
    assert {t.get_text() for t in ax.get_yticklabels()} == {f"client {op.process}" for op in window}
    assert "not linearizable: key 'x'" in ax.get_title()
    blocked = [p for p in ax.patches if p.get_linewidth() == 1.5]
    assert len(blocked) == 1
    ok, _ = find_violation(history[:2])
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_violation(ok)


# ------------------------------------------------------------------ a simulated run, end to end
def _small_run(**kw):
    scenario = Scenario("kill-and-join", nodes=3, duration=5.0, quiet=3.0, partition_count=8,
                        workload=Workload(clients=2, rate=20.0),
                        faults=(Fault(1.0, "kill", "leader"), Fault(3.0, "restart", "killed"),
                                Fault(3.5, "join", "new")))
    return run_scenario(scenario, seed=1, **kw)


def test_recording_a_run_changes_nothing_and_feeds_every_plot(tmp_path):
    plain = _small_run()
    report = _small_run(message_window="first-fault")
    assert report.ok, report.problems
    assert (report.digest, report.history) == (plain.digest, plain.history)  # recording is read-only
    tl = report.timeline
    assert set(tl.phases) == {"faults", "heal", "end"} and tl.messages and plain.timeline.messages == []
    assert [f["kind"] for f in tl.faults] == ["kill", "restart", "join"] and all(f["applied"] for f in tl.faults)
    assert {r[2] for r in tl.roles} >= {"leader", "follower", "down", "learner"}
    assert tl.maps and all(isinstance(m, MapRecord) for m in tl.maps)
    assert [e.label for e in membership_events(tl.maps, tl.faults, tl.phases["faults"])] == ["join n4"]
    before, after = biggest_change(tl.maps, tl.phases["faults"])
    assert "n4" in {n for owners in after.owners for n in owners} - {n for o in before.owners for n in o}
    paths = write_run_plots(report, tmp_path)
    assert [p.name for p in paths] == [f"kill-and-join-seed1-{k}.png" for k in
                                       ("timeline", "messages", "partitions", "migration", "movement")]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_save_writes_png(tmp_path):
    path = save(plot_partition_map((("a",),)), tmp_path / "sub" / "map.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_sim_run_plot_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clusterkit", "sim", "run", "leader-kill", "--seed", "1",
                          "--plot", str(tmp_path)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "plotted" in out.stdout
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["leader-kill-seed1-messages.png", "leader-kill-seed1-partitions.png",
                     "leader-kill-seed1-timeline.png"]
    bad = subprocess.run([sys.executable, "-m", "clusterkit", "sim", "run", "leader-kill", "--plot", str(tmp_path),
                          "--window", "2:1"], check=False, capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert bad.returncode == 2 and "START < END" in bad.stderr
