"""Real node processes on loopback: a cluster forms, fails over, restarts from disk, loses nothing.

Each test starts ``python -m clusterkit node`` processes on free 127.0.0.1
ports (``clusterkit.net.local.LocalCluster``), waits with bounded waits, and
reaps every process it started, even when it fails.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from clusterkit.net.local import LocalCluster, http_json


@pytest.fixture
def cluster(tmp_path: Path):
    with LocalCluster(tmp_path / "cluster", size=3) as c:
        c.start_all()
        yield c


def _put(c: LocalCluster, node: str, key: str, value: str) -> int:
    status, _ = http_json(c.nodes[node].url + f"/registers/{key}", "PUT", {"value": value}, timeout=6.0)
    return status


def _get(c: LocalCluster, node: str, key: str) -> str | None:
    status, doc = http_json(c.nodes[node].url + f"/registers/{key}", timeout=6.0)
    return doc["value"] if status == 200 else None


def test_three_nodes_form_serve_every_route_and_agree(cluster: LocalCluster) -> None:
    c = cluster
    leader = c.leader()
    assert leader == "node-1"
    for nid in c.nodes:
        status, doc = c.get(nid, "/nodes")
        assert status == 200 and [n["id"] for n in doc["nodes"]] == ["node-1", "node-2", "node-3"]
    c.wait(lambda: c.get("node-2", "/partitions/stats")[1]["partitions_per_node"].get("node-3", 0) > 0, 15,
           "partitions to move to the joined nodes (their copies confirmed)")
    status, stats = c.get("node-3", "/partitions/stats")
    assert sum(stats["partitions_per_node"].values()) == 16
    status, doc = c.get("node-2", "/partitions/key?key=user:123")
    assert status == 200 and doc["partition"] == "partition-0"  # md5, as in the Go ClusterKit
    status, doc = c.get("node-3", "/consensus/leader")
    assert doc["leader_id"] == "node-1" and doc["term"] >= 1
    status, doc = c.get("node-1", "/consensus/stats")
    assert doc["role"] == "leader" and doc["commit"] >= 3 and set(doc["peers"]) == {"node-2", "node-3"}
    for path in ("/health", "/ready", "/health/detailed", "/partitions", "/cluster"):
        assert c.get("node-2", path)[0] == 200, path
    # A write through a follower is forwarded to the leader; a read anywhere sees it.
    assert _put(c, "node-3", "greeting", "hello") == 200
    assert {_get(c, nid, "greeting") for nid in c.nodes} == {"hello"}
    # A key with "/" in it (sent quoted) is forwarded quoted: unquoted it named another route (404).
    assert _put(c, "node-3", "a%2Fb", "slash") == 200
    assert _get(c, "node-1", "a%2Fb") == "slash"


def test_leader_killed_then_restarted_from_disk_loses_no_acknowledged_write(cluster: LocalCluster) -> None:
    c = cluster
    acked: dict[str, str] = {}
    for i in range(20):
        if _put(c, "node-2", f"k{i % 5}", f"v{i}") == 200:
            acked[f"k{i % 5}"] = f"v{i}"
    assert len(acked) == 5
    old = c.leader()
    assert old is not None
    c.kill(old)
    c.wait(lambda: c.leader() not in (None, old), 15, "a new leader")
    new = c.leader()
    for key, value in acked.items():
        assert _get(c, new, key) == value
    for i in range(20, 30):  # the cluster keeps taking writes with one node down
        if _put(c, new, f"k{i % 5}", f"v{i}") == 200:
            acked[f"k{i % 5}"] = f"v{i}"
    c.start(old)  # from its data directory
    c.wait(lambda: c.active_members() == set(c.nodes), 20, "the restarted node to be back")
    c.wait(lambda: all(_get(c, old, k) == v for k, v in acked.items()), 15, "the restarted node to catch up")


def test_sigkill_in_a_loop_while_clients_write_loses_nothing_acknowledged(cluster: LocalCluster) -> None:
    c = cluster
    rng = random.Random(7)
    acked: dict[str, str] = {}
    for round_ in range(4):
        victim = rng.choice(sorted(c.nodes))
        c.kill(victim)
        for i in range(8):
            key, value = f"r{rng.randrange(6)}", f"{round_}.{i}"
            target = rng.choice([n for n in c.nodes if c.nodes[n].alive])
            if _put(c, target, key, value) == 200:
                acked[key] = value
        c.start(victim)
        c.wait(lambda: c.leader() is not None and c.active_members() == set(c.nodes), 30,
               "everyone back after a kill")
    assert acked
    for nid in c.nodes:
        c.wait(lambda nid=nid: all(_get(c, nid, k) == v for k, v in acked.items()), 15, f"{nid} to hold every write")


def test_etag_changes_with_every_change_and_304_otherwise(cluster: LocalCluster) -> None:
    import urllib.request

    c = cluster

    def settled() -> bool:  # the joins' partition copies all confirmed: nothing changes until we act
        status, doc = c.get("node-2", "/partitions")
        return status == 200 and bool(doc["partitions"]) and not any(p["incoming"] for p in doc["partitions"].values())

    c.wait(settled, 20, "the joins' migrations to finish")
    url = c.nodes["node-2"].url + "/cluster"
    with urllib.request.urlopen(url, timeout=5) as resp:
        etag = resp.headers["ETag"]
        doc = __import__("json").loads(resp.read())
    assert doc["hash_config"]["algorithm"] == "md5" and doc["hash_config"]["modulo"] == 16
    assert len(doc["cluster"]["nodes"]) == 3
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200 and resp.headers["ETag"] == etag
    req = urllib.request.Request(url, headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(req, timeout=5)
    assert not_modified.value.code == 304
    new = c.add_node()  # a change: a fourth node joins and partitions move
    c.wait(lambda: new.node_id in c.active_members(), 20, "node-4 to join")

    def etag_now() -> str:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.headers["ETag"]

    # node-2 applies the join once it hears it committed: the leader's next append or heartbeat
    c.wait(lambda: etag_now() != etag, 5, "node-2's ETag to change")


def test_a_node_asked_to_leave_moves_its_data_and_leaves_raft_for_good(cluster: LocalCluster) -> None:
    c = cluster
    assert _put(c, "node-1", "kept", "yes") == 200
    status, doc = http_json(c.nodes["node-2"].url + "/leave", "POST", {"node_id": "node-3"})
    assert status == 200 and doc["status"] == "leaving"
    c.wait(lambda: c.get("node-3", "/consensus/stats")[1].get("removed") is True, 20, "node-3 to leave Raft")
    status, doc = c.get("node-1", "/nodes")
    assert [n["id"] for n in doc["nodes"]] == ["node-1", "node-2"]
    status, stats = c.get("node-1", "/consensus/stats")
    assert "node-3" not in stats["voters"] + stats["learners"]
    assert _put(c, "node-2", "after", "leave") == 200 and _get(c, "node-1", "kept") == "yes"


def test_five_nodes_form_and_a_node_stopped_with_leave_on_stop_leaves_cleanly(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "five", size=5, extra_args=["--leave-on-stop"]) as c:
        c.start_all()
        status, stats = c.get("node-1", "/consensus/stats")
        assert len(stats["voters"]) == 5  # all five vote (max_voters is 5)
        assert _put(c, "node-4", "five", "ok") == 200
        assert c.terminate("node-5") == 0  # SIGTERM: it leaves first (data moves, Raft removal), then exits 0
        c.wait(lambda: c.active_members() == {"node-1", "node-2", "node-3", "node-4"}, 20, "node-5 to be gone")
        status, stats = c.get(c.leader(), "/consensus/stats")
        assert "node-5" not in stats["voters"] + stats["learners"]
        assert "left the cluster" in c.logs("node-5")
        assert _get(c, "node-2", "five") == "ok"
