"""The SimPy simulator: determinism, the network and disk models, scenarios, sweeps and shrinking."""

from __future__ import annotations

import inspect
import os
import random
import textwrap
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit.raft import ConfState, Entry, HardState, MemoryStorage
from clusterkit.raft.node import RaftNode
from clusterkit.sim import shapes
from clusterkit.sim.network import Latency, ScenarioError, SimNetwork
from clusterkit.sim.runner import run_scenario
from clusterkit.sim.scenario import Scenario
from clusterkit.sim.sweep import resolved_scenario, shrink, sweep

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
# A smoke of every scenario for each change; the long sweeps are `make sweep` (1,000 seeds each).
SEEDS_PER_SCENARIO = 20


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clusterkit", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **(env or {})}, timeout=300,
    )


# ------------------------------------------------------------------ determinism
def test_same_scenario_and_seed_give_the_same_trace_in_any_process():
    digests = set()
    for hashseed in ("0", "1", "4242"):
        out = _cli("sim", "run", "leader-kill", "--seed", "1", env={"PYTHONHASHSEED": hashseed})
        assert out.returncode == 0, out.stderr
        digests.add(next(line.split()[-1] for line in out.stdout.splitlines() if "trace digest" in line))
    assert len(digests) == 1
    scenario = Scenario.load(ROOT / "scenarios" / "random-mix.toml")
    a, b, c = run_scenario(scenario, 3), run_scenario(scenario, 3), run_scenario(scenario, 4)
    assert a.digest == b.digest and a.trace == b.trace and a.history == b.history
    assert a.digest != c.digest


# ------------------------------------------------------------------ every scenario, many seeds
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_holds_over_many_seeds(path):
    scenario = Scenario.load(path)
    results = sweep(scenario, range(1, SEEDS_PER_SCENARIO + 1), jobs=2)
    failing = [(r.seed, r.problems[:2]) for r in results if not r.ok]
    assert failing == []
    # The faults really happened (the expectations are checked per run; here, in total too).
    for name, least in scenario.expect.items():
        assert sum(r.counters[name] for r in results) >= least * SEEDS_PER_SCENARIO * 0.9, name
    assert all(r.counters["elections"] >= 1 for r in results)
    if scenario.faults or scenario.random is not None:
        assert sum(r.faults for r in results) > 0


# ------------------------------------------------------------------ network and shapes
def test_latency_distributions_stay_in_their_bounds():
    rng = random.Random(1)
    for dist in ("constant", "uniform", "exponential", "lognormal"):
        lat = Latency(dist, mean=0.01, low=0.001, high=0.02, cap=0.05)
        draws = [lat.sample(rng) for _ in range(2000)]
        assert all(0.001 <= d <= 0.05 for d in draws), dist
        assert len(set(draws)) == (1 if dist == "constant" else len(set(draws)))
    with pytest.raises(ScenarioError, match="dist"):
        Latency("pareto")
    with pytest.raises(ScenarioError, match="below low"):
        Latency("uniform", low=0.5, high=0.1)


def test_network_loses_duplicates_and_cuts_one_way():
    rng = random.Random(2)
    net = SimNetwork(Latency("constant", 0.001, 0.001, 0.001), loss=0.3, duplicate=0.2)
    fates = [len(net.fate("a", "b", rng)) for _ in range(5000)]
    assert 0.25 < fates.count(0) / 5000 < 0.35 and fates.count(2) > 0
    net = SimNetwork()
    net.cut("a", "b")
    assert net.fate("a", "b", rng) == [] and net.fate("b", "a", rng)
    net.partition([["a"], ["b", "c"]], ["a", "b", "c", "d"])
    assert not net.reachable("b", "d") and net.reachable("b", "c") and not net.reachable("a", "b")
    with pytest.raises(ScenarioError, match="loss"):
        SimNetwork(loss=1.5)


def _reach(cuts: set[tuple[str, str]], nodes: list[str]) -> dict[str, set[str]]:
    return {a: {b for b in nodes if b != a and (a, b) not in cuts} for a in nodes}


def test_jepsen_shapes():
    nodes = [f"n{i}" for i in range(1, 6)]
    rng = random.Random(3)
    assert _reach(shapes.isolate(nodes, "n2"), nodes)["n2"] == set()
    halves = _reach(shapes.halves(nodes, rng), nodes)
    assert sorted(len(v) for v in halves.values()) == [1, 1, 2, 2, 2]
    ring = _reach(shapes.majorities_ring(nodes, rng), nodes)
    assert all(len(v) + 1 == 3 for v in ring.values())  # each sees a majority (with itself)...
    assert len({frozenset(v | {a}) for a, v in ring.items()}) == 5  # ...and no two the same one
    bridge = _reach(shapes.bridge(nodes, rng), nodes)
    middle = next(a for a, v in bridge.items() if len(v) == 4)
    assert all(middle in v for a, v in bridge.items() if a != middle)
    one = shapes.one_way(nodes, "n1")
    assert ("n1", "n2") in one and ("n2", "n1") not in one


# ------------------------------------------------------------------ disk
def test_a_torn_write_keeps_a_prefix_and_the_node_restarts_from_it():
    disk = MemoryStorage(ConfState(voters=("a",)))
    disk.append([Entry(1, 1, b"one")])
    disk.set_hard_state(HardState(1, "a", 1))
    disk.sync()
    disk.append([Entry(1, 2, b"two"), Entry(1, 3, b"three"), Entry(1, 4, b"four")])
    disk.set_hard_state(HardState(2, "a", 1))
    disk.crash(keep_writes=0, keep_entries=2)  # the append was torn after two entries
    assert disk.last_index() == 3 and disk.initial_state()[0].term == 1  # the later write never landed
    node = RaftNode("a", disk)
    assert node.log.last_index() == 3 and node.term == 1


# ------------------------------------------------------------------ scenario files
def test_scenarios_round_trip_through_toml(tmp_path):
    for path in SCENARIOS:
        scenario = Scenario.load(path)
        again = tmp_path / path.name
        again.write_text(scenario.to_toml())
        assert Scenario.load(again) == scenario


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes = 0", "nodes must be"),
        ("nodes = 'five'", "nodes must be"),
        ("surprise = 1", "unknown field"),
        ("[[faults]]\nat = 1.0\nkind = 'explode'", "fault kind"),
        ("[[faults]]\nat = 1.0\nkind = 'partition'", "needs a shape, groups or cuts"),
        ("[[faults]]\nat = 1.0\nkind = 'partition'\nshape = 'triangle'", "shape must be"),
        ("[network]\nloss = 2", "loss must be"),
        ("[network]\nlatency = {dist = 'uniform', low = -1}", "latency low"),
        ("duration = nan", "duration must be"),
        ("[random]\nkinds = ['meteor']", "random kinds"),
        ("election_ticks = 3\nheartbeat_ticks = 3", "greater than heartbeat"),
        ("this is not toml", "not valid TOML"),
        ("[[faults]]\nat = 1.0\nkind = 'partition'\ncuts = [['n1']]", "cuts must be"),
        ("[[faults]]\nat = 1.0\nkind = 'kill'\nnode = 'n1'\nkeep = [1, -2]", "keep must be"),
    ],
)
def test_bad_scenarios_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ScenarioError, match=message):
        Scenario.load(path)


# ------------------------------------------------------------------ finding and shrinking a bug
def _mutant(module, cls, name: str, old: str, new: str):
    """``cls.name`` with one piece of its source replaced: a bug injected for the test."""
    source = textwrap.dedent(inspect.getsource(getattr(cls, name)))
    assert source.count(old) == 1, f"{name} changed: the mutant no longer applies"
    namespace = dict(vars(module))
    exec(compile(source.replace(old, new), f"<mutant of {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def test_a_broken_migration_is_caught_and_its_faults_shrunk(monkeypatch):
    """Release old owners' copies as soon as the map changes, before the new owners confirm (what
    the Go version does): the partition-map check catches it on a join, and shrinking keeps just
    the join that matters."""
    from clusterkit import cluster_state

    broken = _mutant(
        cluster_state, cluster_state.ClusterState, "_reassign",
        "self.holders[p] = hold[p] + failed[p]\n",
        "self.holders[p] = tuple(h for h in hold[p] if h in new[p]) or hold[p]\n",
    )
    monkeypatch.setattr(cluster_state.ClusterState, "_reassign", broken)
    scenario = Scenario.load(ROOT / "scenarios" / "join-under-load.toml")
    report = run_scenario(scenario, 1)
    assert not report.ok and any("released too early" in p for p in report.problems)
    shrunk, failing, runs = shrink(scenario, 1, max_runs=30)
    assert not failing.ok and 1 <= len(shrunk.faults) < len(report.faults)
    assert all(f.kind == "join" for f in shrunk.faults)
    monkeypatch.undo()
    assert run_scenario(shrunk, 1).ok  # with the core fixed, the shrunk scenario passes


def test_shrinking_a_passing_seed_says_so():
    with pytest.raises(ValueError, match="nothing to shrink"):
        shrink(Scenario.load(ROOT / "scenarios" / "leader-kill.toml"), 1, max_runs=3)


def test_shrink_reduces_a_random_schedule_to_the_faults_that_matter(monkeypatch):
    """A random mixture (kills, partitions, joins, leaves, failures, skew, stalls) against a core
    that loses a committed log entry's data on a restart: the sweep finds a seed, and shrinking
    leaves a handful of faults that still break it."""
    from clusterkit.host import node as host_node

    broken = _mutant(
        host_node, host_node.NodeHost, "start",
        "self.machine.restore(image)\n", "self.machine.restore(b'')\n",  # forget the snapshot's state
    )
    monkeypatch.setattr(host_node.NodeHost, "start", broken)
    scenario = Scenario.load(ROOT / "scenarios" / "random-mix.toml")
    failing = [r.seed for r in sweep(scenario, range(1, 41), jobs=1) if not r.ok]
    assert failing, "the sweep must find the bug within 40 seeds"
    shrunk, report, runs = shrink(scenario, failing[0], max_runs=150)
    assert not report.ok and 1 <= len(shrunk.faults) <= 10
    assert not run_scenario(shrunk, failing[0]).ok  # the written scenario replays the failure


# ------------------------------------------------------------------ the command line
def test_sim_cli_lists_runs_and_reports(tmp_path):
    out = _cli("sim", "list")
    assert out.returncode == 0 and "leader-kill" in out.stdout and "random-mix" in out.stdout
    out = _cli("sim", "run", "minority-partition", "--seed", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS minority-partition seed 2" in out.stdout
    history = tmp_path / "minority-partition-seed2.history.jsonl"
    check = _cli("check", "linearizability", str(history))
    assert check.returncode == 0 and "linearizable" in check.stdout
    assert (tmp_path / "minority-partition-seed2.report.json").read_text().count('"ok": true') == 1


def test_sim_cli_sweep_prints_failing_seeds_with_replay_commands(tmp_path):
    # Liveness needs a quiet phase: with none, every seed fails, and the sweep must say how to replay.
    text = (ROOT / "scenarios" / "leader-kill.toml").read_text().replace("quiet = 5.0", "quiet = 0.0")
    path = tmp_path / "no-quiet.toml"
    path.write_text(text)
    out = _cli("sim", "sweep", str(path), "--seeds", "3", "--jobs", "1")
    assert out.returncode == 1
    assert out.stdout.count("replay: clusterkit sim run") == 3 and "liveness:" in out.stdout
    assert "3/3 seeds" in out.stderr  # the progress bar


def test_sim_cli_bad_input_is_one_line(tmp_path):
    out = _cli("sim", "run", "no-such-scenario")
    assert out.returncode == 3 and "no scenario named" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("nodes = -1\n")
    out = _cli("sim", "run", str(bad))
    assert out.returncode == 3 and "nodes must be" in out.stderr and len(out.stderr.splitlines()) == 1
    out = _cli("sim", "sweep", "leader-kill", "--seeds", "0")
    assert out.returncode == 2 and "--seeds" in out.stderr


def test_sweep_runs_on_a_dask_cluster():
    import distributed  # a test extra: the --dask sweep is part of the feature set
    scenario = Scenario.load(ROOT / "scenarios" / "leader-kill.toml")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = sweep(scenario, range(1, 4), executor=client.get_executor())
    local = sweep(scenario, range(1, 4), jobs=1)
    assert [r.digest for r in remote] == [r.digest for r in local]


def test_a_runs_resolved_faults_replay_it_exactly():
    """The report's faults (targets resolved, partitions as the links cut, torn writes as what was
    kept, skipped faults as skipped) replay as a script to the very same run: what shrinking needs."""
    scenario = Scenario.load(ROOT / "scenarios" / "random-mix.toml")
    for seed in (1, 2, 5):
        first = run_scenario(scenario, seed)
        again = run_scenario(resolved_scenario(scenario, first), seed)
        assert again.digest == first.digest and again.history == first.history
