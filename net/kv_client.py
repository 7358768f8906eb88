"""The SDK's old import path, kept only for README.md's examples: import from
:mod:`clusterkit.net.client` instead. Nothing in the repository's code imports this module."""

from .client import BlockingKVClient, KVBadRequest, KVClient, KVError, KVFailed, KVUnknown, NodeDoc, Topology

__all__ = ["BlockingKVClient", "KVBadRequest", "KVClient", "KVError", "KVFailed", "KVUnknown", "NodeDoc",
           "Topology"]
