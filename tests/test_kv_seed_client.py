"""The seed's Go KV client reaches our KV store: a Python port of its routing, reading only the seed's shape.

:class:`SeedClient` follows the Go ClusterKit's ``example/sync/client.go``: ``refreshTopology``
decodes ``/cluster`` into the Go structs (so it sees the seed's fields and nothing else: ours are
dropped as ``encoding/json`` drops unknown ones), ``getPartitionID`` hashes with the published
``hash_config``, ``getNodeAddr`` picks ``services["kv"]`` (``:port`` as ``localhost:port``) with
the ``ip`` fallbacks, ``SetWithQuorum`` posts ``/kv/set`` to every owner and counts the 200s,
``SetWithReplication`` (the README's smart client) does the same on ``/kv/replicate``, and ``Get``
tries the owners in order. Everything runs against a real :class:`LocalCluster` on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import make_mocked_request

from clusterkit.net.client import BlockingKVClient
from clusterkit.net.kv_http import KVRoutes
from clusterkit.net.local import LocalCluster, http_json

WAIT = 30.0


def _seed_view(doc: dict[str, Any]) -> dict[str, Any]:
    """``/cluster`` as the Go client's ``apiResponse`` struct holds it after ``json.Unmarshal``."""
    cluster = doc.get("cluster") or {}
    hc = doc.get("hash_config") or {}
    return {
        "nodes": [{k: n.get(k) for k in ("id", "ip", "name", "status", "services")} for n in cluster.get("nodes", [])],
        "partitions": [{k: p.get(k) for k in ("id", "primary_node", "replica_nodes")}
                       for p in (cluster.get("partition_map") or {}).get("partitions", {}).values()],
        "hash_config": {k: hc.get(k) for k in ("algorithm", "encoding", "modulo", "format")},
    }


@dataclass
class SeedClient:
    seeds: list[str]
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    hash_config: dict[str, Any] = field(default_factory=dict)

    def refresh_topology(self) -> None:
        for node in self.seeds:
            status, doc = http_json(f"http://{node}/cluster")
            if status != 200 or not isinstance(doc, dict):
                continue
            view = _seed_view(doc)
            self.hash_config = view["hash_config"]
            self.nodes = {n["id"]: n for n in view["nodes"]}
            self.partitions = {p["id"]: p for p in view["partitions"]}
            return
        raise AssertionError("failed to refresh topology")

    def partition_id(self, key: str) -> str:
        if self.hash_config["algorithm"] != "md5":
            return ""
        number = int.from_bytes(hashlib.md5(key.encode()).digest()[:4], "big") % self.hash_config["modulo"]
        return self.hash_config["format"].replace("%d", str(number))  # fmt.Sprintf(format, n)

    def node_addr(self, node_id: str) -> str:
        info = self.nodes.get(node_id)
        if info is None:
            return ""
        kv = (info.get("services") or {}).get("kv")
        if kv:
            return "localhost" + kv if kv.startswith(":") else kv
        ip = info.get("ip") or ""
        if ip.startswith(":") and ip[1:].isdigit():  # fmt.Sscanf(ip, ":%d"): the seed's port + 1000 guess
            return f"localhost:{int(ip[1:]) + 1000}"
        return ip

    def owners(self, key: str) -> list[str]:
        p = self.partitions[self.partition_id(key)]
        return [p["primary_node"], *p["replica_nodes"]]

    def _post_all(self, path: str, key: str, value: str) -> int:
        def post(node_id: str) -> bool:
            addr = self.node_addr(node_id)
            return bool(addr) and http_json(f"http://{addr}{path}", "POST", {"key": key, "value": value},
                                            timeout=WAIT)[0] == 200

        owners = self.owners(key)
        with ThreadPoolExecutor(len(owners)) as pool:
            return sum(pool.map(post, owners))

    def set_with_quorum(self, key: str, value: str, quorum: int = 2) -> bool:
        return self._post_all("/kv/set", key, value) >= quorum

    def set_with_replication(self, key: str, value: str, quorum: int = 2) -> bool:
        return self._post_all("/kv/replicate", key, value) >= quorum

    def get(self, key: str) -> str | None:
        for node_id in self.owners(key):
            addr = self.node_addr(node_id)
            if not addr:
                continue
            status, doc = http_json(f"http://{addr}/kv/get?key={quote(key)}", timeout=WAIT)
            if status == 200:
                return doc["value"]
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("seed-client"), size=3, partition_count=64, kv=True,
                      extra_args=["--log-level", "WARNING"]) as c:
        c.start_all()
        c.wait(c.kv_settled, WAIT, "the KV store on every node")
        yield c


def test_every_node_entry_has_the_seeds_fields_next_to_ours(cluster: LocalCluster) -> None:
    for path, entries in (("/cluster", lambda d: d["cluster"]["nodes"]), ("/nodes", lambda d: d["nodes"])):
        status, doc = cluster.get("node-2", path)
        assert status == 200
        for entry in entries(doc):
            node = cluster.nodes[entry["id"]]
            assert entry["ip"] == entry["http_addr"] == node.http
            assert entry["port"] == node.http_port
            assert entry["services"] == {"kv": entry["kv_addr"]} == {"kv": f"127.0.0.1:{node.kv_port}"}


def test_the_seed_client_routes_every_key_where_our_map_says(cluster: LocalCluster) -> None:
    seed = SeedClient([cluster.nodes["node-1"].http])
    seed.refresh_topology()
    assert len(seed.partitions) == 64 and set(seed.nodes) == set(cluster.nodes)
    for i in range(40):
        key = f"user:{i}"
        status, ours = cluster.get("node-1", f"/partitions/key?key={quote(key)}")
        assert status == 200
        assert seed.partition_id(key) == ours["partition"]
        assert seed.owners(key) == [ours["primary"]["id"], *(r["id"] for r in ours["replicas"])]
        assert seed.node_addr(ours["primary"]["id"]) == ours["primary"]["kv_addr"]  # the KV port, not nowhere


def test_the_seed_client_writes_and_reads_through_the_kv_store(cluster: LocalCluster) -> None:
    seed = SeedClient([cluster.nodes["node-2"].http])
    seed.refresh_topology()
    keys = [f"seed:{i}" for i in range(12)]
    for key in keys:
        assert seed.set_with_quorum(key, f"v1-{key}")
    for key in keys:
        assert seed.get(key) == f"v1-{key}"
    for key in keys:
        assert seed.set_with_replication(key, f"v2-{key}")
    with BlockingKVClient([cluster.nodes["node-3"].http]) as sdk:  # our SDK sees what the seed's wrote
        for key in keys:
            assert seed.get(key) == f"v2-{key}" == sdk.get(key)


def test_set_and_replicate_answer_the_seeds_status_and_check_their_bodies(cluster: LocalCluster) -> None:
    url = cluster.nodes["node-1"].url
    for path in ("/kv/set", "/kv/replicate"):
        status, doc = http_json(url + path, "POST", {"key": "seed:status", "value": "x"}, timeout=WAIT)
        assert (status, doc["status"], doc["ok"], doc["value"]) == (200, "ok", True, "x"), doc
        for bad in ({"key": "k"}, {"key": "k", "value": "v", "quorum": 17}, {"key": "k", "value": "v", "quorum": 0},
                    {"key": "k", "value": "v", "quorum": True}, ["k", "v"], {"key": "", "value": "v"}):
            status, doc = http_json(url + path, "POST", bad, timeout=WAIT)
            assert status == 400 and doc["error"], (path, bad, doc)
        # a quorum above RF: refused by the node's own quorum check, before anything is written
        assert http_json(url + path, "POST", {"key": "k", "value": "v", "quorum": 4}, timeout=WAIT)[0] == 400
    status, doc = http_json(url + "/kv/delete?key=seed:status", "POST", timeout=WAIT)
    assert (status, doc["status"]) == (200, "deleted")
    assert cluster.get("node-1", "/health")[0] == 200


def test_replicate_is_refused_under_async_where_no_write_waits_for_a_quorum() -> None:
    service: Any = SimpleNamespace(options=SimpleNamespace(server=SimpleNamespace(strategy="async")))
    answer = asyncio.run(KVRoutes(service).replicate(make_mocked_request("POST", "/kv/replicate")))
    assert answer.status == 409 and b"async" in answer.body and b"/kv/set" in answer.body
