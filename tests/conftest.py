from __future__ import annotations

import random

import pytest

from clusterkit.raft import ConfState, MemoryStorage, RaftConfig, RaftNode
from clusterkit.raft.storage import write_ready


def make_node(
    node_id: str = "a",
    voters: tuple[str, ...] = ("a", "b", "c"),
    config: RaftConfig | None = None,
    seed: int = 1,
    storage: MemoryStorage | None = None,
) -> RaftNode:
    storage = storage or MemoryStorage(ConfState(voters=voters))
    return RaftNode(node_id, storage, config or RaftConfig(), rng=random.Random(seed))


def drain(node: RaftNode) -> list:
    """Persist and acknowledge everything; return the messages the node wants sent."""
    out = []
    while node.has_ready():
        rd = node.ready()
        write_ready(node.storage, rd)
        node.storage.sync()
        out.extend(rd.messages)
        node.advance(rd)
    return out


@pytest.fixture
def node_factory():
    return make_node


def pytest_addoption(parser):
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="write what the golden transcripts (tests/testdata/*.txt) print back into them "
        "instead of comparing (also CLUSTERKIT_REWRITE=1)",
    )
