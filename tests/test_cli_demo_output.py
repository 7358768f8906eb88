"""What the demo and the plan print says what happened: singular and plural, what healing did,
how often each invariant was checked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from clusterkit.check.raft_safety import InvariantViolation
from clusterkit.cli import main
from clusterkit.cli.demo import LOG_CHECK_EVERY, MIN_NODES, _healing_line, run_demo
from clusterkit.cli.text import plural
from clusterkit.mem.network import MemNetwork


def test_plural() -> None:
    assert plural(1, "node") == "1 node"
    assert plural(0, "node") == "0 nodes"
    assert plural(2, "copy", "copies") == "2 copies"
    assert plural(1, "snapshot was", "snapshots were") == "1 snapshot was"


def test_demo_text_is_singular_for_one_and_states_how_often_each_invariant_was_checked() -> None:
    buf = io.StringIO()
    result = run_demo(nodes=3, steps=1, seed=1, out=buf)
    text = buf.getvalue()
    assert result.converged
    assert "3 nodes, 1 random step, seed 1" in text
    assert "(s)" not in text
    assert "1 crashes" not in text and "1 snapshots" not in text and "1 entries" not in text
    # log matching is checked every LOG_CHECK_EVERY steps, not "at every step"
    assert "held at every step" not in text
    assert f"log matching every {LOG_CHECK_EVERY} steps and after healing" in text
    assert "After healing, all nodes agree." in text


def test_demo_prints_to_the_stdout_of_the_moment(capsys) -> None:
    # `out` used to default to the sys.stdout of import time, which a caller's redirect never reached.
    run_demo(nodes=3, steps=1, seed=1, verbose=False)
    assert "ClusterKit Raft core demo" in capsys.readouterr().out


def test_healing_says_what_it_heals_and_nothing_more() -> None:
    ids = ["node-1", "node-2", "node-3"]
    net = MemNetwork(ids, seed=1)
    assert _healing_line(net) == "faults off: no more drops or duplicates"
    net.partition(["node-1"])
    assert _healing_line(net) == "faults off: partition healed; no more drops or duplicates"
    net.heal()
    net.crash("node-2")
    assert _healing_line(net) == "faults off: restarting node-2; no more drops or duplicates"


def test_healing_is_not_counted_as_a_fault() -> None:
    buf = io.StringIO()
    result = run_demo(nodes=3, steps=1, seed=1, out=buf)
    assert result.faults == 0  # the first step injected nothing; healing used to count as one


def test_demo_needs_three_nodes() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_NODES} nodes"):
        run_demo(nodes=1, steps=10, out=io.StringIO())


def test_an_invariant_violation_is_one_line_and_exit_1(monkeypatch, capsys) -> None:
    from clusterkit.cli import demo

    def broken(**kwargs: object) -> None:
        raise InvariantViolation("election safety: node-1 and node-2 both lead term 3")

    monkeypatch.setattr(demo, "run_demo", broken)
    assert main(["demo", "--in-memory"]) == 1
    err = capsys.readouterr().err
    assert err == "clusterkit demo: error: safety invariant broken: election safety: node-1 and node-2 both lead term 3\n"


def test_plan_text_is_singular_for_one(tmp_path: Path, capsys) -> None:
    assert main(["partitions", "plan", "--nodes", "a", "--count", "1", "--rf", "1"]) == 0
    assert "per node: a 1 copy/1 primary" in capsys.readouterr().out
    previous = tmp_path / "map.json"
    previous.write_text(json.dumps({"partition-0": ["a"]}))
    assert main(["partitions", "plan", "--nodes", "b", "--count", "1", "--rf", "1", "--from", str(previous)]) == 0
    out = capsys.readouterr().out
    assert "moves: 1 copy (fewest possible 1), 1 primary changed" in out
    assert main(["partitions", "plan", "--nodes", "a,b", "--count", "4", "--rf", "2"]) == 0
    assert "a 4 copies/2 primaries" in capsys.readouterr().out
