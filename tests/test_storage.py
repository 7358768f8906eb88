"""MemoryStorage's fsync model and restarting a node from it."""

from __future__ import annotations

import random

import pytest

from clusterkit.raft import ConfState, Entry, HardState, MemoryStorage, RaftNode, StorageError

from .conftest import drain, make_node


def test_unsynced_writes_are_lost_on_crash():
    s = MemoryStorage(ConfState(voters=("a",)))
    s.append([Entry(1, 1, b"x")])
    s.set_hard_state(HardState(1, "a", 1))
    s.sync()
    s.append([Entry(1, 2, b"y")])
    s.set_hard_state(HardState(2, None, 1))
    assert s.last_index() == 2 and s.unsynced_writes == 2
    s.crash()
    assert s.last_index() == 1
    assert s.initial_state()[0] == HardState(1, "a", 1)


def test_append_replaces_conflicting_suffix():
    s = MemoryStorage(ConfState(voters=("a",)))
    s.append([Entry(1, i, b"") for i in range(1, 6)])
    s.append([Entry(2, 3, b"new")])
    assert [e.term for e in s.entries(1, s.last_index() + 1)] == [1, 1, 2]


def test_append_with_gap_is_refused():
    s = MemoryStorage(ConfState(voters=("a",)))
    with pytest.raises(StorageError, match="gap"):
        s.append([Entry(1, 3, b"")])


def test_out_of_range_read_is_refused():
    s = MemoryStorage(ConfState(voters=("a",)))
    with pytest.raises(StorageError):
        s.entries(1, 5)


def test_node_restarts_from_storage_with_term_vote_and_log():
    node = make_node("a", voters=("a",))
    node.campaign()
    node.propose(b"one")
    node.propose(b"two")
    drain(node)
    storage = node.storage
    again = RaftNode("a", storage, rng=random.Random(2))
    assert again.term == node.term and again.vote == "a"
    assert again.log.last_index() == 3 and again.log.committed == 3
    rd = again.ready()
    assert [e.data for e in rd.committed_entries] == [b"", b"one", b"two"]  # re-applied from the log


def test_node_restarts_with_persistent_applied_index():
    node = make_node("a", voters=("a",))
    node.campaign()
    node.propose(b"one")
    drain(node)
    again = RaftNode("a", node.storage, applied=2, rng=random.Random(2))
    assert not again.has_ready() or again.ready().committed_entries == []


def test_storage_without_voters_is_refused():
    with pytest.raises(Exception, match="no voters"):
        RaftNode("a", MemoryStorage())
