"""The Go ClusterKit's partition assignment: rendezvous (highest random weight) hashing.

Every node is scored per partition with md5(partition id + node id), first 4
bytes big-endian; nodes are sorted by score, lowest first, and the first RF
own the partition, the first of them as primary. Re-implemented from that
description, for comparisons (``bench/assigner.py``, ``clusterkit.plot``):
a map is a function of the node set alone, so it moves little when nodes come
and go, but balance is left to chance.
"""

from __future__ import annotations

from collections.abc import Sequence

from .assigner import PartitionMap
from .hashing import md5_32


def rendezvous(nodes: Sequence[str], partition_count: int, replication_factor: int,
               name_format: str = "partition-%d") -> PartitionMap:
    """The Go ClusterKit's map for ``nodes``: owners per partition number, primary first."""
    r = min(replication_factor, len(nodes))
    out = []
    for p in range(partition_count):
        pid = name_format % p
        # Ties (never seen with md5, but possible) fall back to the node id, so the map is total.
        ranked = sorted(nodes, key=lambda n: (md5_32((pid + n).encode()), n))
        out.append(tuple(ranked[:r]))
    return tuple(out)
