"""Issue 20, item 2: a node that lost its disk, on real processes.

Restarted on an empty data directory with its old id and JOIN_ADDR, it is not a voter until the
leader has replaced it (failed and forgotten in the cluster state, removed from the Raft voters,
added back as a learner that catches up); it then is a member again, and its join is not a loop.
Restarted on an empty directory with BOOTSTRAP (the seed's command for node-1) while the cluster
still counts on it, it refuses to start a second cluster. A node of another cluster of the same
name is refused at the handshake.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clusterkit.net.local import LocalCluster, http_json

WAIT = 60.0


def _put(c: LocalCluster, node: str, key: str, value: str) -> int:
    status, _ = http_json(c.nodes[node].url + f"/registers/{key}", "PUT", {"value": value}, timeout=6.0,
                          token=c.token)
    return status


def _raft(c: LocalCluster, node: str) -> dict:
    status, doc = c.get(node, "/consensus/stats")
    return doc if status == 200 else {}


@pytest.fixture
def cluster(tmp_path: Path):
    with LocalCluster(tmp_path / "cluster", size=3) as c:
        c.start_all()
        yield c


def test_a_wiped_follower_is_replaced_and_rejoins(cluster: LocalCluster) -> None:
    c = cluster
    lead = c.leader()
    assert lead is not None
    assert _put(c, lead, "before", "kept") == 200
    victim = next(n for n in c.nodes if n != lead)
    c.kill(victim)
    shutil.rmtree(c.nodes[victim].data_dir)
    c.start(victim, join=c.nodes[lead].http)
    c.wait(lambda: "replaced" in c.logs(lead), WAIT, f"the leader to replace {victim}")
    c.wait(lambda: victim in _raft(c, lead).get("voters", []) and c.active_members() == set(c.nodes), WAIT,
           f"{victim} to be a voter and an active member again")
    status, doc = http_json(c.nodes[victim].url + "/registers/before", timeout=6.0, token=c.token)
    assert status == 200 and doc["value"] == "kept"
    logs = c.logs(victim)
    logs = logs[logs.rindex(f"{victim} started"):]  # this life's lines (the file has its first life's too)
    assert logs.count("joined through") == 1, logs  # one join, not one every 250 ms
    assert "taken in by the cluster" in logs
    assert (c.nodes[victim].data_dir / "UNADMITTED").exists() is False
    assert _put(c, victim, "after", "written") == 200


def test_a_wiped_node_with_bootstrap_refuses_to_start_a_second_cluster(cluster: LocalCluster) -> None:
    c = cluster
    first = next(iter(c.nodes))
    c.kill(first)
    c.wait(lambda: c.leader() not in (None, first), WAIT, "a new leader")
    shutil.rmtree(c.nodes[first].data_dir)
    c.start(first)  # as before: no JOIN_ADDR, so it would bootstrap
    proc = c.nodes[first].process
    assert proc is not None
    code = proc.wait(timeout=WAIT)
    logs = c.logs(first)
    assert code == 78, logs
    assert "will not start a second cluster" in logs
    assert not (c.nodes[first].data_dir / "log").exists()  # nothing of a second cluster on its disk


def test_a_node_of_another_cluster_of_the_same_name_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    c = cluster
    lead = c.leader()
    assert lead is not None
    with LocalCluster(tmp_path / "other", size=0) as other:
        other._new_node("node-9")  # a one-node cluster of the same name, bootstrapped on its own
        other.start_all()
        # The other cluster's node-1 is given this cluster's node-2 raft address as a peer by asking
        # to join it: the leader dials it, and the handshake names two different cluster ids.
        status, doc = http_json(c.nodes[lead].url + "/join", "POST", {
            "node": {"id": "node-9", "raft_addr": f"127.0.0.1:{other.nodes['node-9'].raft_port}",
                     "api_addr": other.nodes["node-9"].http},
            "config": {"cluster_name": c.cluster_name, "partition_count": 16, "replication_factor": 3,
                       "hash_algorithm": "md5"},
        }, timeout=10.0, token=c.token)
        assert status == 403 and "another cluster of the same name" in doc["error"], doc
        assert "another cluster of the same name" in c.logs(lead)
        raft = _raft(c, lead)
        assert "node-9" not in raft.get("voters", []) + raft.get("learners", [])
