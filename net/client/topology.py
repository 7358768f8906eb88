"""The cluster's map as the SDK reads it from ``/cluster``: nodes (with their KV ports), each
partition's placement, the hash config and the replication factor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterkit.kv.quorum import Placement
from clusterkit.partitioning.hashing import HashConfig


@dataclass(frozen=True)
class NodeDoc:
    id: str
    http_addr: str
    kv_addr: str | None
    status: str


@dataclass
class Topology:
    epoch: int = -1
    etag: str | None = None
    nodes: dict[str, NodeDoc] = field(default_factory=dict)
    placements: dict[int, Placement] = field(default_factory=dict)
    hash: HashConfig | None = None
    rf: int = 3

    @classmethod
    def from_doc(cls, doc: dict[str, Any], etag: str | None) -> Topology:
        cluster = doc["cluster"]
        if doc.get("hash_config") is None:
            raise ValueError("the cluster is not bootstrapped yet")
        hc = doc["hash_config"]
        hash_config = HashConfig(hc["algorithm"], int(hc["modulo"]), hc.get("format", "partition-%d"), int(hc.get("seed", 0)))
        prefix = hash_config.format.split("%d")[0]
        nodes = {n["id"]: NodeDoc(n["id"], n.get("http_addr", ""), n.get("kv_addr"), n.get("status", ""))
                 for n in cluster["nodes"]}
        placements = {}
        for pid, p in cluster["partition_map"]["partitions"].items():
            number = int(pid[len(prefix):])
            serving = (p["primary_node"], *p["replica_nodes"])
            incoming, outgoing = tuple(p.get("incoming", ())), tuple(p.get("outgoing", ()))
            failed = tuple(p.get("failed", ()))  # copies still counted in quorums, though marked failed
            placements[number] = Placement(number, int(p.get("epoch", cluster["epoch"])), p["primary_node"], serving,
                                           (*(n for n in serving if n not in incoming), *failed),
                                           tuple(n for n in serving if n not in outgoing), incoming, failed)
        rf = int((cluster.get("config") or {}).get("replication_factor", 3))
        return cls(int(cluster["epoch"]), etag, nodes, placements, hash_config, rf)
