"""clusterkit.net.client: the KV store's client SDK, what an application imports to read and write.

:class:`KVClient` (asyncio) and :class:`BlockingKVClient` (for synchronous code) route each key by
the cluster's own map (``/cluster``) and talk msgpack frames to the nodes' KV ports. Nothing here
hosts a node: the node's side of the KV port is :mod:`clusterkit.net.kv_service`.
"""

from .blocking import BlockingKVClient
from .errors import KVBadRequest, KVError, KVFailed, KVUnknown
from .kv import KVClient
from .topology import NodeDoc, Topology

__all__ = ["BlockingKVClient", "KVBadRequest", "KVClient", "KVError", "KVFailed", "KVUnknown", "NodeDoc",
           "Topology"]
