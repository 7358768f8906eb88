"""What a KV request that did not succeed raises: whether anything was written is in the type."""

from __future__ import annotations


class KVError(Exception):
    """A KV request that did not succeed."""


class KVFailed(KVError):
    """Nothing was written (or the read found no quorum)."""


class KVUnknown(KVError):
    """The write may or may not have taken effect (a timeout, or a connection lost after sending)."""


class KVBadRequest(KVError):
    """A bad key, value or quorum: refused before anything happened."""
