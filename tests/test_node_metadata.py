"""Node addresses are cluster state, not user data (issue 20, item 7).

A node's KV address used to live in the user-writable registers (``kv/addr/<node>``): ``PUT
/registers/kv%2Faddr%2Fnode-2`` redirected the SDK's and the peers' traffic for node-2. It is now
``NodeInfo.kv_addr`` in the replicated cluster state, written only by the node's own join; every
field of a node entry is checked where it is read.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.parse
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest

from clusterkit.cluster_state import (
    FAILED,
    MAX_NODE_ID,
    ClusterConfig,
    ClusterState,
    CommandError,
    NodeInfo,
    bootstrap_command,
    confirm_command,
    fail_command,
    join_command,
)
from clusterkit.net.client import KVClient
from clusterkit.net.local import LocalCluster, http_json

CFG = ClusterConfig(partition_count=8, replication_factor=2)


def _node(i: int, kv: str = "") -> NodeInfo:
    return NodeInfo(f"node-{i}", f"Server-{i}", f"127.0.0.1:{9000 + i}", f"127.0.0.1:{8079 + i}", kv_addr=kv)


def _two() -> ClusterState:
    s = ClusterState()
    assert s.apply(bootstrap_command(CFG, _node(1))).ok
    assert s.apply(join_command(CFG, _node(2))).ok
    for p in range(CFG.partition_count):
        for o in s.incoming(p):
            assert s.apply(confirm_command(p, o)).ok
    return s


# ----------------------------------------------------------------- the cluster state
def test_a_nodes_own_join_sets_and_moves_its_kv_address_without_a_membership_change() -> None:
    s = _two()
    epoch, owners = s.epoch, list(s.owners)
    res = s.apply(join_command(CFG, _node(2, "127.0.0.1:7002")))
    assert res.ok and res.events == () and s.epoch == epoch + 1  # a new ETag, no hooks
    assert s.nodes["node-2"].kv_addr == "127.0.0.1:7002" and s.owners == owners
    assert s.to_dict()["nodes"][1]["kv_addr"] == "127.0.0.1:7002"
    assert s.apply(join_command(CFG, _node(2, "127.0.0.1:7002"))).ok and s.epoch == epoch + 1  # repeated: no change
    assert s.apply(join_command(CFG, _node(2))).ok and s.nodes["node-2"].kv_addr == "127.0.0.1:7002"  # kept
    assert s.apply(join_command(CFG, _node(2, "127.0.0.1:7102"))).ok  # restarted on another port
    assert s.nodes["node-2"].kv_addr == "127.0.0.1:7102" and s.epoch == epoch + 2
    # Another node's address is not a join's to change: its raft/api addresses must be the node's own.
    impostor = replace(_node(2, "10.9.9.9:1"), raft_addr="10.9.9.9:2")
    res = s.apply(join_command(CFG, impostor))
    assert not res.ok and "already in use" in res.error and s.nodes["node-2"].kv_addr == "127.0.0.1:7102"


def test_a_failed_node_that_rejoins_keeps_its_kv_address() -> None:
    s = _two()
    assert s.apply(join_command(CFG, _node(2, "127.0.0.1:7002"))).ok
    assert s.apply(fail_command("node-2", by_detector=True)).ok and s.nodes["node-2"].status == FAILED
    assert s.apply(join_command(CFG, _node(2))).ok  # (the leader's detector lets it back)
    assert s.nodes["node-2"].kv_addr == "127.0.0.1:7002"


def test_kv_addresses_survive_a_snapshot_and_old_snapshots_restore() -> None:
    s = _two()
    old = s.snapshot()  # no node has a KV address: the bytes are what they were before kv_addr existed
    assert b"kv_addr" not in old
    assert ClusterState.restore(old).nodes["node-2"].kv_addr == ""
    assert s.apply(join_command(CFG, _node(2, "[::1]:7002"))).ok
    again = ClusterState.restore(s.snapshot())
    assert again.nodes == s.nodes and again.snapshot() == s.snapshot()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "n" * (MAX_NODE_ID + 1), "at most 128"),
        ("name", "x" * 257, "at most 256"),
        ("zone", "z" * 129, "at most 128"),
        ("status", ["active"], "unknown node status"),
        ("kv_addr", 9080, "must be a string"),
        ("kv_addr", "127.0.0.1", "host:port"),
        ("kv_addr", "127.0.0.1:0", "host:port"),
        ("kv_addr", "127.0.0.1:65536", "host:port"),
        ("kv_addr", "127.0.0.1:99999999", "host:port"),
        ("kv_addr", "evil host:1", "host:port"),
        ("kv_addr", "h:1\n", "host:port"),
        ("kv_addr", "h" * 400 + ":1", "at most 300"),
        ("raft_addr", "::1:9001", "host:port"),
        ("api_addr", "http://h:1", "host:port"),
    ],
)
def test_every_node_field_is_checked_in_commands_and_snapshots(field: str, value: object, message: str) -> None:
    doc = {**_node(3, "127.0.0.1:7003").to_wire(), field: value}
    with pytest.raises(CommandError, match=message):
        NodeInfo.from_wire(doc)
    s = _two()
    before = s.snapshot()
    res = s.apply(msgpack.packb({"op": "join", "node": doc, "config": CFG.to_wire()}))
    assert not res.ok and s.snapshot() == before
    snap = msgpack.unpackb(before)
    snap["nodes"][1] = {**snap["nodes"][1], field: value}
    with pytest.raises(CommandError, match=message):
        ClusterState.restore(msgpack.packb(snap))


@pytest.mark.parametrize("addr", [":8080", "127.0.0.1:8080", "[::1]:9001", "[fe80::1%eth0]:1", "sim:2001",
                                  "db-a.example.com:65535"])
def test_the_addresses_nodes_use_are_taken(addr: str) -> None:
    info = NodeInfo.from_wire({"id": "n", "raft_addr": addr, "api_addr": addr, "kv_addr": addr})
    assert (info.raft_addr, info.api_addr, info.kv_addr) == (addr, addr, addr)


# ----------------------------------------------------------------- real nodes
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("metadata")
    with LocalCluster(root, size=3, extra_args=["--log-level", "WARNING"], kv=True) as c:
        c.start_all()

        c.wait(c.kv_settled, 30, "the KV store on every node")
        yield c


def test_a_register_write_under_kv_addr_redirects_nothing(cluster: LocalCluster) -> None:
    """The issue's attack: a PUT of node-2's KV address in the registers. It is just a register
    now: /cluster on every node, the SDK and the peers keep node-2's real address, and the port it
    names gets no connection."""
    _, doc = cluster.get("node-1", "/cluster")
    real = {n["id"]: n["kv_addr"] for n in doc["cluster"]["nodes"]}
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(16)
    trap.setblocking(False)
    bogus = f"127.0.0.1:{trap.getsockname()[1]}"
    key = urllib.parse.quote("kv/addr/node-2", safe="")
    try:
        leader = cluster.leader()  # (to the leader: a follower forwards a key holding "/" unquoted, a 404)
        assert leader is not None
        status, answer = http_json(cluster.nodes[leader].url + f"/registers/{key}", "PUT", {"value": bogus})
        assert status == 200, answer
        for node_id in ("node-1", "node-2", "node-3"):
            # A linearizable read: once it answers, this node has applied the register write.
            status, answer = cluster.get(node_id, f"/registers/{key}")
            assert status == 200 and answer["value"] == bogus, answer
            _, doc = cluster.get(node_id, "/cluster")
            assert {n["id"]: n.get("kv_addr") for n in doc["cluster"]["nodes"]} == real, node_id

        async def use_it() -> None:
            async with KVClient([cluster.nodes["node-1"].http]) as kv:
                # Writes on every partition, two owners of three acknowledging: node-2 owns most of
                # them, its peers replicate to it; all through its real address.
                await asyncio.gather(*(kv.set(f"meta{i}", f"v{i}", quorum=2) for i in range(64)))
                assert [await kv.get(f"meta{i}") for i in range(64)] == [f"v{i}" for i in range(64)]
                assert kv.topo is not None and kv.topo.nodes["node-2"].kv_addr == real["node-2"]

        asyncio.run(use_it())
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody was sent to the address in the register
    finally:
        trap.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node_id": "n" * 129}, "'id' is 129 characters long"),
        ({"node_name": "x" * 300}, "'name' is 300 characters long"),
        ({"zone": "z" * 200}, "'zone' is 200 characters long"),
    ],
)
def test_a_node_whose_entry_the_state_would_refuse_is_a_config_error(kwargs: dict, message: str) -> None:
    """Else its bootstrap or join would be refused by the cluster state, and it would wait forever."""
    from clusterkit.facade import Options
    from clusterkit.raft.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Options(**{"node_id": "n1", "http_addr": "127.0.0.1:8080", **kwargs}).resolved()
