"""Key to partition, byte-compatible with the Go ClusterKit.

md5 (default): the first 4 bytes of md5(key), big-endian, modulo the
partition count. fnv1a: 32-bit FNV-1a of the key, modulo the count. The
partition's name is ``format % number`` ("partition-%d"). The settings are
published with the cluster state as ``hash_config`` so smart clients hash
exactly as the servers do.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from typing import Any

ALGORITHMS = ("md5", "fnv1a")
_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619


_md5 = hashlib.md5
_first_u32 = struct.Struct(">I").unpack_from  # the first 4 bytes, big-endian


def md5_32(data: bytes) -> int:
    return _first_u32(_md5(data).digest())[0]


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


@dataclass(frozen=True)
class HashConfig:
    algorithm: str = "md5"
    modulo: int = 16
    format: str = "partition-%d"
    seed: int = 0  # published for compatibility with the Go ClusterKit's hash_config; unused by md5/fnv1a

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown hash algorithm {self.algorithm!r} (expected one of {', '.join(ALGORITHMS)})")
        if type(self.modulo) is not int or self.modulo < 1:
            raise ValueError(f"partition count must be a positive integer, got {self.modulo!r}")
        try:
            self.format % 0
        except (TypeError, ValueError):
            raise ValueError(f"partition name format must take one integer, like 'partition-%d', got {self.format!r}") from None

    def number(self, key: str | bytes) -> int:
        """The partition number of ``key`` (0 <= n < modulo)."""
        data = key.encode("utf-8") if isinstance(key, str) else key
        if not isinstance(data, bytes):
            raise TypeError(f"a key must be str or bytes, got {type(key).__name__}")
        h = md5_32(data) if self.algorithm == "md5" else fnv1a_32(data)
        return h % self.modulo

    def partition(self, key: str | bytes) -> str:
        """The partition id of ``key``, e.g. ``partition-48``."""
        return self.format % self.number(key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
