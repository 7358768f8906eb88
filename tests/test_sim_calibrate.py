"""`clusterkit sim calibrate` measures this machine and writes a profile; a scenario that names it
gets its network and disk latencies (its own, where it sets them, win)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clusterkit.sim.network import ScenarioError
from clusterkit.sim.runner import run_scenario
from clusterkit.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]


def test_calibrate_writes_a_profile_a_scenario_can_name(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "clusterkit", "sim", "calibrate", "--samples", "100", "--out",
                          str(tmp_path / "profiles" / "box.toml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'profile = "box"' in out.stdout
    profile = tomllib.loads((tmp_path / "profiles" / "box.toml").read_text())
    latency, fsync = profile["network"]["latency"], profile["disk"]["fsync"]
    assert latency["dist"] == fsync["dist"] == "lognormal"
    assert 0 < latency["low"] <= latency["mean"] <= latency["cap"] and 0 < fsync["low"] <= fsync["mean"]
    (tmp_path / "scenarios").mkdir()
    scenario_file = tmp_path / "scenarios" / "calibrated.toml"
    scenario_file.write_text('profile = "box"\nnodes = 3\nduration = 3.0\nquiet = 3.0\n'
                             '[disk]\nfsync = {dist = "constant", mean = 0.002, low = 0.002}\n')
    scenario = Scenario.load(scenario_file)
    assert scenario.profile == "box" and scenario.latency.mean == latency["mean"]  # from the profile
    assert scenario.fsync.dist == "constant"  # the scenario's own wins
    assert run_scenario(scenario, 1).ok
    assert Scenario.load(_written(tmp_path, scenario)) == scenario  # to_toml keeps the name and the values


def _written(tmp_path: Path, scenario: Scenario) -> Path:
    path = tmp_path / "scenarios" / "again.toml"
    path.write_text(scenario.to_toml())
    return path


def test_the_profile_measured_here_loads() -> None:
    scenario = Scenario.from_dict({"name": "t", "profile": "dev-vm-2cpu"})
    assert scenario.latency.dist == "lognormal" and scenario.fsync.dist == "lognormal"


@pytest.mark.parametrize(("profile", "message"), [
    ("../etc/passwd", "profile must be a name"),
    ("no-such-profile", "cannot read"),
    (3, "profile must be a profile's name"),
])
def test_a_bad_profile_is_one_line(profile: object, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict({"name": "t", "profile": profile})
