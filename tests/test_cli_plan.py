"""``clusterkit partitions plan``: maps, moves, and bad input."""

from __future__ import annotations

import json

import pytest

from clusterkit.check.partition_invariants import check_balance, check_owners
from clusterkit.cli import main


def _plan(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["partitions", "plan", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_plan_is_balanced_and_round_trips_through_from(tmp_path, capsys) -> None:
    code, out, _ = _plan(capsys, "--nodes", "node-1,node-2,node-3", "--count", "16", "--rf", "2", "--json")
    assert code == 0
    doc = json.loads(out)
    owners = {pid: [v["primary"], *v["replicas"]] for pid, v in doc["partitions"].items()}
    assert len(owners) == 16
    assert not check_owners(owners, ["node-1", "node-2", "node-3"], 2)
    assert not check_balance(owners, ["node-1", "node-2", "node-3"], 2)

    saved = tmp_path / "map.json"
    saved.write_text(out)
    code, out, _ = _plan(capsys, "--nodes", "node-1,node-2,node-3,node-4", "--count", "16", "--rf", "2",
                         "--from", str(saved), "--json")
    assert code == 0
    grown = json.loads(out)
    assert grown["copies_moved"] == grown["fewest_copy_moves"] == 8  # node-4's share: 16*2/4
    assert all("node-4" in mv["add"] for mv in grown["moves"] if mv["add"])
    # the same nodes again: nothing moves
    code, out, _ = _plan(capsys, "--nodes", "node-1,node-2,node-3", "--count", "16", "--rf", "2", "--from", str(saved), "--json")
    assert json.loads(out)["moves"] == []


def test_text_plan_lists_moves_from_a_plain_map(tmp_path, capsys) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"partition-0": ["node-1", "node-2"], "partition-1": ["node-2", "node-1"]}))
    code, out, _ = _plan(capsys, "--nodes", "node-2,node-3", "--count", "2", "--rf", "2", "--from", str(plain))
    assert code == 0
    assert "partition-0: copy to node-3; drop node-1; primary node-1 -> node-2" in out
    assert "moves: 2 copies (fewest possible 2)" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"partition-0": ["a"]}', "lacks"),
        ('{"partition-0": {"primary": 3}, "partition-1": ["a"]}', "'primary'"),
        ('{"partition-0": "a", "partition-1": ["a"]}', "list of node ids"),
    ],
)
def test_bad_previous_maps_are_clear_errors(tmp_path, capsys, content, message) -> None:
    path = tmp_path / "map.json"
    if content is not None:
        path.write_text(content)
    code, _, err = _plan(capsys, "--nodes", "a,b", "--count", "2", "--from", str(path))
    assert code == 3  # a bad input file, as for `check`; 2 is a bad command line
    assert message in err


def test_bad_node_lists_are_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["partitions", "plan", "--nodes", "a,,b"])
    assert exc.value.code == 2
    assert "comma-separated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["partitions", "plan", "--nodes", "a,a"])
    assert "twice" in capsys.readouterr().err
