"""Partition-map invariant checks catch what they claim to."""

from __future__ import annotations

import pytest

from clusterkit.check import InvariantViolation
from clusterkit.check.partition_invariants import (
    assert_partition_map,
    check_balance,
    check_data_safety,
    check_owners,
)

NODES = ["n1", "n2", "n3"]


def round_robin(p: int, nodes: list[str], r: int) -> dict[str, list[str]]:
    return {f"partition-{i}": [nodes[(i + k) % len(nodes)] for k in range(r)] for i in range(p)}


def test_round_robin_map_passes():
    assert_partition_map(round_robin(16, NODES, 2), NODES, rf=2)
    assert_partition_map(round_robin(16, NODES, 3), NODES, rf=5)  # N < RF: everyone owns everything


def test_duplicate_missing_and_unknown_owners_are_reported():
    m = round_robin(4, NODES, 2)
    m["partition-0"] = ["n1", "n1"]
    m["partition-1"] = ["n2"]
    m["partition-2"] = ["n2", "ghost"]
    problems = check_owners(m, NODES, rf=2)
    assert any("listed twice" in p for p in problems)
    assert any("partition-1: 1 owners" in p for p in problems)
    assert any("ghost" in p for p in problems)
    with pytest.raises(InvariantViolation):
        assert_partition_map(m, NODES, rf=2)


def test_imbalance_is_reported():
    m = {f"partition-{i}": ["n1", "n2"] for i in range(6)}
    problems = check_balance(m, NODES, rf=2)
    assert any(p.startswith("n1: 6 copies") for p in problems)
    assert any(p.startswith("n3: 0 copies") for p in problems)
    assert any("n1: 6 primaries" in p for p in problems)


def test_data_safety_during_migration():
    holders = {"partition-0": ["n1", "n2"], "partition-1": ["n3"]}
    assert check_data_safety(holders, live=NODES, rf=2) == [
        "partition-1: only 1 live nodes hold its data (['n3']), need 2"
    ]
    # with n2 dead, partition-0 still needs min(RF, live) = 2 holders among n1 and n3
    assert check_data_safety(holders, live=["n1", "n3"], rf=2)[0].startswith("partition-0: only 1")
    assert check_data_safety({"partition-0": ["n1"]}, live=["n1"], rf=3) == []
