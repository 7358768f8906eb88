"""`clusterkit sim compare`: the numbers both worlds have, measured the same way, side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clusterkit.sim.fidelity import leader_kills, measure, quantile, table
from clusterkit.sim.runner import run_scenario
from clusterkit.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]


def test_a_simulated_leader_kill_is_measured_from_its_timeline_and_history() -> None:
    report = run_scenario(Scenario.load(ROOT / "scenarios" / "leader-kill.toml"), 1)
    numbers = measure(report)
    kills = leader_kills(report.timeline.roles, report.timeline.faults)
    assert len(kills) == 2 and len(numbers.new_leader) == 2  # both kills hit the leader
    # A new leader needs an election timeout (10 to 20 ticks of 0.1 s) after the kill.
    assert all(1.0 <= t <= 2.5 for t in numbers.new_leader)
    assert all(w >= n for w, n in zip(numbers.first_write, numbers.new_leader))  # a write needs a leader
    assert numbers.write_latency and numbers.longest_gap >= min(numbers.new_leader)
    assert numbers.ok and numbers.verdict == "linearizable"


def test_a_kill_of_a_follower_is_not_a_leader_kill() -> None:
    roles = [(0.0, "n1", "leader", 1), (0.0, "n2", "follower", 1), (3.0, "n2", "down", 1)]
    faults = [{"t": 2.0, "kind": "kill", "node": "n2"}, {"t": 2.5, "kind": "kill", "node": "n1"},
              {"t": 2.6, "kind": "kill", "node": "n1", "applied": False}]
    assert leader_kills(roles, faults) == [(2.5, "n1")]


def test_quantiles_and_the_table() -> None:
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0 and quantile([1.0, 2.0], 0.99) == 2.0
    report = run_scenario(Scenario.load(ROOT / "scenarios" / "leader-kill.toml"), 2)
    text = table({"simulator": [measure(report)], "again": [measure(report)]})
    lines = text.splitlines()
    assert "simulator" in lines[0] and "again" in lines[0]
    assert any(line.startswith("new leader after a leader kill") for line in lines)
    assert lines[-2].split()[-2:] == ["1/1", "1/1"]


def test_compare_runs_both_worlds_and_refuses_what_the_real_one_cant() -> None:
    out = subprocess.run([sys.executable, "-m", "clusterkit", "sim", "compare", "leader-kill", "--seeds", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "real processes" in out.stdout and "write latency p99" in out.stdout
    assert "sim  leader-kill seed 1: PASS" in out.stderr and "real leader-kill seed 1: PASS" in out.stderr
    refused = subprocess.run([sys.executable, "-m", "clusterkit", "sim", "compare", "slow-node"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode == 3 and "fault kind slow" in refused.stderr
