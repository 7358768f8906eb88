"""Scenarios on real processes (`clusterkit sim run --real`): the same file, the same fault kinds
through their real side, the same history and checker; refusals by name before anything starts;
nothing left running on any way out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit.net.real_runner import NotRunnable, refusals, run_real
from clusterkit.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]

MIXED = """
name = "real-mix"
nodes = 3
duration = 9.0
quiet = 5.0
tick = 0.05
partition_count = 8

[workload]
clients = 3
rate = 30.0
keys = 2

[[faults]]
at = 1.0
kind = "partition"
shape = "isolate-leader"

[[faults]]
at = 2.5
kind = "heal"

[[faults]]
at = 3.0
kind = "pause"
node = "follower"

[[faults]]
at = 4.0
kind = "resume"
node = "paused"

[[faults]]
at = 4.5
kind = "skew"
node = "random"
rate = 2.0

[[faults]]
at = 5.0
kind = "stall"
node = "random"
seconds = 0.5

[[faults]]
at = 6.0
kind = "kill"
node = "leader"

[[faults]]
at = 7.0
kind = "restart"
node = "killed"
"""


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clusterkit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, **kw)


@pytest.mark.parametrize(("scenario", "named"), [
    ("kv-sync-chaos", "workload kv = 'sync'"),
    ("wipe-mix", "fault kind wipe: not yet"),
    ("slow-node", "fault kind slow: not yet"),
])
def test_what_the_real_world_cant_run_is_refused_by_name_first(scenario: str, named: str) -> None:
    out = _cli("sim", "run", scenario, "--real")
    assert out.returncode == 3
    assert f"can't run {scenario} on real processes" in out.stderr and named in out.stderr
    assert "running" not in out.stderr  # nothing started


def test_refusals_are_empty_for_a_register_scenario() -> None:
    assert refusals(Scenario.load(ROOT / "scenarios" / "leader-kill.toml"), 1) == []
    with pytest.raises(NotRunnable, match="fault kind slow"):
        run_real(Scenario.load(ROOT / "scenarios" / "slow-node.toml"), 1)


def test_every_real_kind_in_one_run_keeps_the_history_linearizable(tmp_path: Path) -> None:
    scenario = Scenario.from_dict(__import__("tomllib").loads(MIXED))
    report = run_real(scenario, seed=2, workdir=tmp_path)
    assert report.ok, report.summary()
    for counter in ("partitions", "heals", "pauses", "resumes", "skews", "stalls", "kills", "restarts"):
        assert report.counters[counter] == 1, (counter, report.summary())
    assert report.linearizability.startswith("linearizable")
    assert report.operations["ok"] > 20
    partition = next(f for f in report.faults if f["kind"] == "partition")
    assert partition["cuts"] and "shape" not in partition  # resolved: the links it cut
    assert all(len(c) == 2 for c in partition["cuts"])
    assert Scenario.from_dict({"name": "replay", "nodes": 3}).with_faults([])  # (loads: ids are the scenario's)


def test_the_cli_writes_a_history_the_checker_reads(tmp_path: Path) -> None:
    out = _cli("sim", "run", "leader-kill", "--real", "--seed", "3", "--out", str(tmp_path), "--plot",
               str(tmp_path / "plots"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "plots" / "leader-kill-seed3-timeline.png").stat().st_size > 10_000
    assert "PASS leader-kill seed 3" in out.stdout and "fault kill node=n" in out.stderr
    history = tmp_path / "leader-kill-seed3.history.jsonl"
    check = _cli("check", "linearizability", str(history))
    assert check.returncode == 0 and "linearizable" in check.stdout
    report = json.loads((tmp_path / "leader-kill-seed3.report.json").read_text())
    assert [f["kind"] for f in report["faults"]] == ["kill", "restart", "kill", "restart"]


def _real_nodes() -> list[int]:
    """Node processes of real runs: their DATA_DIR is under a clusterkit-real- directory."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"/clusterkit-real-" in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile, or not ours
    return found


def test_sigterm_mid_run_stops_every_node(tmp_path: Path) -> None:
    before = _real_nodes()
    proc = subprocess.Popen([sys.executable, "-m", "clusterkit", "sim", "run", "leader-kill", "--real"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # bounded: the run itself ends within a minute
        if "fault kill" in line:
            break
    assert [p for p in _real_nodes() if p not in before], "the nodes run while faults fire"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert [p for p in _real_nodes() if p not in before] == []
