"""Fault injection on real nodes (net/faultctl.py): off unless asked for, behind the API token,
bad input refused in one line; a cut link really cuts, and a heal really heals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from clusterkit.net.local import LocalCluster, http_json


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("faults") / "c", size=3, secure=True,
                      extra_args=["--fault-injection", "--log-level", "WARNING"]) as c:
        c.start_all()
        yield c


def _faults(c: LocalCluster, nid: str, body: object = None, token: str | None = "") -> tuple[int, dict]:
    return http_json(c.nodes[nid].url + "/debug/faults", method="POST" if body is not None else "GET", body=body,
                     token=c.token if token == "" else token)


def test_the_control_needs_the_token(cluster: LocalCluster) -> None:
    assert _faults(cluster, "node-2", token=None)[0] == 401
    assert _faults(cluster, "node-2", {"heal": True}, token=None)[0] == 401
    status, doc = _faults(cluster, "node-2")
    assert status == 200 and doc["cut"] == [] and doc["rate"] == 1.0


@pytest.mark.parametrize(("body", "message"), [
    ({}, "expected a JSON object"),
    ([], "expected a JSON object"),
    ({"explode": 1}, "unknown field(s) explode"),
    ({"cut": "node-1"}, "cut must be a list"),
    ({"cut": [1]}, "cut must be a list"),
    ({"rate": 0}, "rate must be a number in [0.01, 100]"),
    ({"rate": 1e308}, "rate must be a number"),
    ({"rate": True}, "rate must be a number"),
    ({"stall": -1}, "stall must be a number in [0, 3600]"),
    ({"heal": "yes"}, "heal must be true or false"),
])
def test_bad_bodies_get_one_line_and_change_nothing(cluster: LocalCluster, body: object, message: str) -> None:
    status, doc = _faults(cluster, "node-3", body)
    assert status == 400 and message in doc["error"] and "\n" not in doc["error"]
    assert _faults(cluster, "node-3")[1]["changes"] == 0


def test_rate_and_stall_are_taken_and_healed(cluster: LocalCluster) -> None:
    status, doc = _faults(cluster, "node-3", {"rate": 1.25, "stall": 0.5})
    assert status == 200 and doc["rate"] == 1.25 and 0 < doc["stall_left"] <= 0.5
    status, doc = _faults(cluster, "node-3", {"heal": True})
    assert doc["rate"] == 1.0 and doc["stall_left"] == 0 and doc["cut"] == []


def test_cutting_the_leader_off_elects_another_and_healing_joins_them_again(cluster: LocalCluster) -> None:
    c = cluster
    c.wait(lambda: c.leader() is not None, 30, "a leader")
    old = c.leader()
    others = [n for n in c.nodes if n != old]
    _faults(c, old, {"cut": others})
    for n in others:
        _faults(c, n, {"cut": [old]})

    def new_leader() -> bool:
        seen = {http_json(c.nodes[n].url + "/consensus/leader", token=c.token)[1].get("leader_id") for n in others}
        return len(seen) == 1 and seen.pop() in others

    c.wait(new_leader, 30, "the two cut-off followers to elect one of them")
    for n in c.nodes:
        _faults(c, n, {"heal": True})
    c.wait(lambda: c.leader() in others, 30, "every node to follow the new leader after the heal")
    status, doc = http_json(c.nodes[old].url + "/registers/after-heal", method="PUT", body={"value": "1"},
                            token=c.token)
    assert status == 200, doc


def test_without_the_flag_there_is_no_control(tmp_path) -> None:
    with LocalCluster(tmp_path / "c", size=1, secure=True, extra_args=["--log-level", "WARNING"]) as c:
        c.start_all()
        assert _faults(c, "node-1")[0] == 404


def test_the_flag_needs_a_token(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "clusterkit", "node", "--node-id", "n1", "--http-addr",
                          "127.0.0.1:1", "--data-dir", str(tmp_path / "d"), "--fault-injection"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].endswith("--fault-injection needs --api-token-file: whoever can "
                                                          "inject faults can take the node down")
