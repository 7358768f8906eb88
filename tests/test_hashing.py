"""Key to partition: the Go ClusterKit's vectors, fnv1a, bad input, the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterkit.partitioning.hashing import HashConfig, fnv1a_32

VECTORS = [("user:123", 0, 48), ("test-key", 1, 49), ("order:100", 14, 46), ("", 9, 25)]


@pytest.mark.parametrize("key, p16, p64", VECTORS)
def test_go_clusterkit_vectors(key, p16, p64):
    assert HashConfig(modulo=16).partition(key) == f"partition-{p16}"
    assert HashConfig(modulo=64).partition(key) == f"partition-{p64}"


def test_fnv1a_reference_values():
    # Published FNV-1a 32-bit test vectors.
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968
    assert HashConfig(algorithm="fnv1a", modulo=16).number("foobar") == 0xBF9CF968 % 16


@settings(max_examples=200, derandomize=True, database=None)
@given(key=st.text(), modulo=st.integers(1, 4096))
def test_partition_in_range_and_str_equals_utf8_bytes(key, modulo):
    cfg = HashConfig(modulo=modulo)
    n = cfg.number(key)
    assert 0 <= n < modulo and cfg.number(key.encode()) == n


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"algorithm": "sha1"}, "unknown hash algorithm"), ({"modulo": 0}, "positive integer"),
     ({"modulo": "16"}, "positive integer"), ({"format": "partition"}, "one integer")],
)
def test_bad_hash_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        HashConfig(**kwargs)


def test_key_of_wrong_type():
    with pytest.raises(TypeError, match="str or bytes"):
        HashConfig().number(123)  # type: ignore[arg-type]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "clusterkit.cli", "partitions", *args], capture_output=True, text=True, timeout=60)


def test_cli_partitions_key():
    assert _cli("key", "user:123").stdout.strip() == "partition-0"
    assert _cli("key", "user:123", "--count", "64").stdout.strip() == "partition-48"
    assert _cli("key", "foobar", "--hash", "fnv1a").stdout.strip() == f"partition-{0xBF9CF968 % 16}"
    bad = _cli("key", "x", "--count", "0")
    assert bad.returncode == 2 and "expected a number >= 1" in bad.stderr
