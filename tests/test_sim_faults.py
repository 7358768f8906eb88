"""Fault kinds: one module each, in one registry that loading, the random mix, the nemesis,
`clusterkit sim list` and the plots all read; each kind checks its own fields and targets."""

from __future__ import annotations

import importlib
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit.sim.faults import DEFAULT_RANDOM, KINDS, load_fault, random_kinds
from clusterkit.sim.network import ScenarioError
from clusterkit.sim.runner import run_scenario
from clusterkit.sim.scenario import Fault, RandomFaults, Scenario

ROOT = Path(__file__).resolve().parents[1]


def _scenario(*faults: dict, nodes: int = 5) -> Scenario:
    return Scenario.from_dict({"name": "t", "nodes": nodes, "faults": list(faults)})


# ------------------------------------------------------------------ the registry
def test_every_kind_is_one_module_named_for_it() -> None:
    for name, kind in KINDS.items():
        module = importlib.import_module(f"clusterkit.sim.faults.{name}")
        assert type(kind).__module__ == module.__name__
        assert kind.name == name and kind.summary and kind.counter


def test_the_random_mix_draws_only_kinds_that_validate() -> None:
    """Each drawn kind's draw makes faults its own check accepts, in a scenario of 5 nodes."""
    rng = random.Random(7)
    for name in random_kinds():
        for _ in range(20):
            faults = KINDS[name].draw(rng, 1.0)
            assert faults and faults[0].kind == name
            for f in faults:
                load_fault(f.to_dict())
            Scenario.from_dict({"name": "t"}).with_faults(faults)  # and the schedule's ids


def test_default_mix_is_the_one_every_existing_seed_was_drawn_from() -> None:
    assert DEFAULT_RANDOM == ("kill", "pause", "partition", "join", "leave", "fail", "skew", "stall")
    assert set(DEFAULT_RANDOM) < set(random_kinds())
    assert {"wipe", "slow"} <= set(random_kinds()) - set(DEFAULT_RANDOM)


def test_sim_list_shows_every_kind() -> None:
    out = subprocess.run([sys.executable, "-m", "clusterkit", "sim", "list"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split("fault kinds", 1)[1]
    for name, kind in KINDS.items():
        assert f"  {name}" in listed and kind.summary in listed


# ------------------------------------------------------------------ each kind checks its own
@pytest.mark.parametrize(("fault", "message"), [
    ({"at": 1.0, "kind": "join"}, "node must be 'new' or a node id"),  # was loaded, then silently skipped
    ({"at": 1.0, "kind": "kill", "node": "new"}, "'new' is not a target of a kill"),  # was a KeyError mid-run
    ({"at": 1.0, "kind": "kill"}, "node must be"),
    ({"at": 1.0, "kind": "kill", "node": "leader", "shape": "halves"}, "a kill takes no shape"),
    ({"at": 1.0, "kind": "partition", "node": "n1", "shape": "halves"}, "a partition takes no node"),
    ({"at": 1.0, "kind": "partition"}, "needs a shape, groups or cuts"),
    ({"at": 1.0, "kind": "partition", "shape": "triangle"}, "shape must be one of"),
    ({"at": 1.0, "kind": "heal", "node": "leader"}, "a heal takes no node"),
    ({"at": 1.0, "kind": "restart", "node": "leader"}, "'leader' is not a target of a restart"),
    ({"at": 1.0, "kind": "resume", "node": "killed"}, "'killed' is not a target of a resume"),
    ({"at": 1.0, "kind": "stall", "node": "random"}, "a stall needs seconds > 0"),
    ({"at": 1.0, "kind": "skew", "node": "random", "seconds": 2.0}, "a skew takes no seconds"),
    ({"at": 1.0, "kind": "slow", "node": "leader", "rate": 2.0, "seconds": 1.0}, "rate below 1"),
    ({"at": 1.0, "kind": "slow", "node": "leader", "rate": 0.5}, "needs seconds > 0"),
    ({"at": 1.0, "kind": "wipe", "node": "leader", "torn": True}, "a wipe takes no torn"),
    ({"at": 1.0, "kind": "explode", "node": "leader"}, "fault kind must be one of kill, restart"),
    ({"at": 1.0, "kind": "kill", "node": "n9"}, "no node 'n9' by then"),
    ({"at": 1.0, "kind": "join", "node": "n2"}, "n2 is already a node"),
    ({"at": 1.0, "kind": "partition", "groups": [["n1", "n7"]]}, "no node 'n7'"),
])
def test_a_kind_refuses_what_it_cant_run_when_the_scenario_loads(fault: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(")):
        _scenario(fault)


def test_ids_a_join_brings_can_be_named_after_it() -> None:
    s = _scenario({"at": 1.0, "kind": "join", "node": "new"}, {"at": 2.0, "kind": "kill", "node": "n6"},
                  {"at": 3.0, "kind": "join", "node": "n9"}, {"at": 4.0, "kind": "pause", "node": "n9"})
    assert [f.node for f in s.faults] == ["new", "n6", "n9", "n9"]
    with pytest.raises(ScenarioError, match="no node 'n6'"):  # not before the join
        _scenario({"at": 2.0, "kind": "kill", "node": "n6"}, {"at": 3.0, "kind": "join", "node": "new"})


def test_random_kinds_are_checked_against_the_registry() -> None:
    with pytest.raises(ScenarioError, match="random kinds must be among kill"):
        RandomFaults.from_dict({"kinds": ["kill", "restart"]})  # a restart is drawn with its kill
    assert RandomFaults.from_dict({"kinds": ["slow", "wipe"]}).kinds == ("slow", "wipe")


def test_every_scenario_file_still_loads() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        Scenario.load(path)


# ------------------------------------------------------------------ the slow node
def _write_latencies(report, start: float, end: float) -> list[float]:
    calls: dict = {}
    out = []
    for ev in report.history:
        if ev["type"] == "invoke":
            calls[ev["process"]] = ev
        elif ev["type"] == "ok" and ev["f"] == "put":
            call = calls.pop(ev["process"], None)
            if call is not None and start <= call["time"] < end:
                out.append(ev["time"] - call["time"])
    return out


def test_a_slow_leader_slows_commits_and_loses_nothing() -> None:
    scenario = Scenario.load(ROOT / "scenarios" / "slow-node.toml")
    report = run_scenario(scenario, seed=3)
    assert report.ok, report.summary()
    assert report.counters["slows"] == 2
    start = report.timeline.phases["faults"]
    slow = [f for f in report.timeline.faults if f["kind"] == "slow"][0]
    during = _write_latencies(report, slow["t"] + 0.5, slow["t"] + slow["seconds"])
    before = _write_latencies(report, start, slow["t"])
    assert during and before
    # Its messages and syncs take 20 times as long (or it lost the lead, and the writes waited).
    assert statistics.median(during) > 5 * statistics.median(before)


def test_a_slow_node_is_back_to_speed_after_its_seconds() -> None:
    scenario = Scenario.from_dict({"name": "t", "duration": 6.0, "quiet": 2.0, "workload": {"clients": 0},
                                   "faults": [{"at": 1.0, "kind": "slow", "node": "n2", "rate": 0.1,
                                               "seconds": 1.5}]})
    report = run_scenario(scenario, seed=1)
    assert report.ok and report.counters["slows"] == 1
    fault = report.timeline.faults[0]
    assert fault["node"] == "n2" and fault["seconds"] == 1.5


def test_slow_shows_as_a_window_of_its_seconds() -> None:
    from clusterkit.plot import fault_windows

    scenario = Scenario.from_dict({"name": "t", "duration": 6.0, "quiet": 1.0, "workload": {"clients": 0},
                                   "faults": [{"at": 1.0, "kind": "slow", "node": "n2", "rate": 0.1,
                                               "seconds": 1.5},
                                              {"at": 2.0, "kind": "join", "node": "new"}]})
    report = run_scenario(scenario, seed=1)
    windows = {w.kind: w for w in fault_windows(report.timeline)}
    assert windows["slow"].end - windows["slow"].start == pytest.approx(1.5)
    assert windows["slow"].label == "slow n2 x0.1" and windows["slow"].color == KINDS["slow"].window.color
    assert windows["join"].start == windows["join"].end  # a moment


def test_a_fault_built_in_code_of_an_unknown_kind_is_refused_by_the_nemesis() -> None:
    from clusterkit.sim.nemesis import Nemesis
    from clusterkit.sim.runner import build_cluster
    from clusterkit.sim.trace import Trace

    c = build_cluster(Scenario.from_dict({"name": "t"}), 1, Trace())
    with pytest.raises(ScenarioError, match="fault kind must be one of"):
        Nemesis(c).apply(Fault(0.0, "explode", "n1"))


def test_cut_links_read_as_groups_when_they_split_the_cluster() -> None:
    from clusterkit.sim import shapes

    nodes = ["n1", "n2", "n3", "n4", "n5"]
    assert shapes.describe_cuts(sorted(shapes.isolate(nodes, "n3"))) == "{n3} | {n1,n2,n4,n5}"
    assert shapes.describe_cuts(sorted(shapes.groups_cuts([["n1", "n2"], ["n3"]], nodes))) == \
        "{n3} | {n1,n2} | {n4,n5}"
    assert shapes.describe_cuts([("n2", "n1"), ("n2", "n3")]) == "n2>n1 n2>n3"  # one way: no groups
    fault = Fault(1.5, "partition", cuts=tuple(sorted(shapes.isolate(nodes, "n1"))))
    assert fault.summary() == "   1.500s partition {n1} | {n2,n3,n4,n5}"
    assert "cuts=" in fault.describe()  # (the trace keeps its exact form)


def test_a_run_stopped_by_a_violation_is_not_also_blamed_for_missing_faults() -> None:
    faults = [f.to_dict() for f in Scenario.load(ROOT / "scenarios" / "leader-kill.toml").faults]
    wants_more = {"name": "t", "nodes": 5, "duration": 10.0, "faults": faults, "expect": {"kills": 5}}
    healthy = run_scenario(Scenario.from_dict(wants_more), seed=1)
    assert "expect: kills happened 2 times, the scenario needs at least 5" in healthy.problems
    stopped = run_scenario(Scenario.from_dict({**wants_more, "quiet": 0.0}), seed=1)  # liveness fails
    assert stopped.problems and not [p for p in stopped.problems if p.startswith("expect:")]
