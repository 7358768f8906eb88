"""clusterkit.net: real nodes. The core's node host driven by asyncio over msgpack TCP frames, on a
durable log, serving the seed's HTTP API; the facade as a node (``ClusterKit`` with start/stop, and
``BlockingClusterKit`` for synchronous programs). The KV store's client SDK, what an application
imports to read and write, is :mod:`clusterkit.net.client`, apart from this hosting code."""

from .facade import BlockingClusterKit, ClusterKit
from .node import NetNode, NodeConfig

__all__ = ["BlockingClusterKit", "ClusterKit", "NetNode", "NodeConfig"]
