"""The pure parts the Raft node is built from: read queue, snapshot buffer, voter manager, conf changes."""

from __future__ import annotations

import pytest

from clusterkit.raft import ConfChange, ConfChangeType, ConfigError, ConfState, InstallSnapshot, RaftConfig
from clusterkit.raft.confchange import apply_change
from clusterkit.raft.membership import next_membership_change
from clusterkit.raft.progress import Progress
from clusterkit.raft.reads import ReadQueue
from clusterkit.raft.snapshot_buffer import SnapshotBuffer

VOTERS = ("a", "b", "c", "d", "e")


# ------------------------------------------------------------------ reads
def test_read_needs_a_quorum_of_voters_and_confirms_earlier_reads():
    q = ReadQueue()
    assert q.add(b"r1", "a", 10, leader="a")
    assert q.add(b"r2", "b", 11, leader="a")
    assert not q.add(b"r1", "a", 12, leader="a")  # asked again: answered once
    assert q.ack("b", b"r2", VOTERS, quorum=3) == []
    assert q.ack("x", b"r2", VOTERS, quorum=3) == []  # not a voter: does not count
    assert q.ack("b", b"r2", VOTERS, quorum=3) == []  # the same voter twice counts once
    done = q.ack("c", b"r2", VOTERS, quorum=3)
    assert [(rs.index, rs.context, origin) for rs, origin in done] == [(10, b"r1", "a"), (11, b"r2", "b")]
    assert q.pending == {}


def test_a_later_read_stays_pending_when_an_earlier_one_is_confirmed():
    q = ReadQueue()
    q.add(b"r1", "a", 5, leader="a")
    q.add(b"r2", "a", 6, leader="a")
    assert q.last_context() == b"r2"
    done = q.ack("b", b"r1", ("a", "b", "c"), quorum=2)
    assert [rs.context for rs, _ in done] == [b"r1"] and list(q.pending) == [b"r2"]
    q.waiting_commit.append((b"r3", "c"))
    assert q.clear() == 2 and q.pending == {} and q.waiting_commit == []
    assert q.last_context() == b""


# --------------------------------------------------------- snapshot buffer
def chunk(offset: int, data: bytes, index: int = 9, term: int = 2, size: int = 10) -> InstallSnapshot:
    return InstallSnapshot(2, "a", "b", index, term, ["a", "b"], ["c"], size, offset, data)


def test_buffer_assembles_chunks_in_order_and_ignores_the_rest():
    buf = SnapshotBuffer()
    assert buf.receive(chunk(0, b"0123")) is None and buf.offset == 4
    assert buf.receive(chunk(8, b"89")) is None and buf.offset == 4  # a gap: ask again from 4
    assert buf.receive(chunk(0, b"0123")) is None and buf.offset == 4  # a duplicate keeps what we hold
    assert buf.receive(chunk(2, b"23456789")) is None and buf.offset == 4  # overlapping: ignored
    assert buf.receive(chunk(4, b"456789012")) is None and buf.offset == 4  # past the declared size
    snap = buf.receive(chunk(4, b"456789"))
    assert snap is not None and snap.data == b"0123456789"
    assert (snap.meta.index, snap.meta.term, snap.meta.conf) == (9, 2, ConfState(("a", "b"), ("c",)))


def test_a_newer_snapshot_restarts_the_buffer():
    buf = SnapshotBuffer()
    buf.receive(chunk(0, b"01234"))
    assert buf.receive(chunk(5, b"56789", index=20)) is None and buf.offset == 0
    assert buf.receive(chunk(0, b"abcdefghij", index=20)).data == b"abcdefghij"


def test_an_empty_snapshot_completes_at_once():
    assert SnapshotBuffer().receive(chunk(0, b"", size=0)).data == b""


# ----------------------------------------------------------- voter manager
def progress(match: int, inactive: int = 0) -> Progress:
    pr = Progress(match + 1, 8)
    pr.match, pr.inactive_ticks = match, inactive
    return pr


CFG = RaftConfig(election_ticks=10, voter_down_ticks=30, max_voters=3, promote_lag=5)


def test_promotes_the_most_caught_up_learner_below_the_limit():
    prs = {"a": progress(100), "b": progress(100), "l1": progress(96), "l2": progress(99), "l3": progress(0)}
    cc = next_membership_change("a", ("a", "b"), ("l1", "l2", "l3"), prs, 100, CFG)
    assert cc == ConfChange(ConfChangeType.ADD_VOTER, "l2")


def test_never_promotes_a_learner_that_is_behind_silent_or_new():
    prs = {"a": progress(100), "l1": progress(90), "l2": progress(100, inactive=10), "l3": progress(0)}
    assert next_membership_change("a", ("a",), ("l1", "l2", "l3"), prs, 100, CFG) is None


def test_replaces_a_voter_that_is_down_then_demotes_it():
    prs = {"a": progress(100), "b": progress(100), "c": progress(40, inactive=30), "l1": progress(100)}
    step1 = next_membership_change("a", ("a", "b", "c"), ("l1",), prs, 100, CFG)
    assert step1 == ConfChange(ConfChangeType.ADD_VOTER, "l1")
    step2 = next_membership_change("a", ("a", "b", "c", "l1"), (), prs, 100, CFG)
    assert step2 == ConfChange(ConfChangeType.ADD_LEARNER, "c")
    assert next_membership_change("a", ("a", "b", "l1"), ("c",), prs, 100, CFG) is None


def test_a_down_voter_without_a_replacement_stays():
    prs = {"a": progress(100), "b": progress(100), "c": progress(40, inactive=99)}
    assert next_membership_change("a", ("a", "b", "c"), (), prs, 100, CFG) is None


def test_the_leader_is_never_considered_down():
    prs = {"a": progress(100, inactive=99), "b": progress(100), "c": progress(100), "d": progress(100)}
    assert next_membership_change("a", ("a", "b", "c", "d"), (), prs, 100, CFG) is None


# ------------------------------------------------------------ conf changes
def test_apply_change_promotes_demotes_and_removes():
    conf = ConfState(("a", "b"), ("c",))
    assert apply_change(conf, ConfChange(ConfChangeType.ADD_VOTER, "c")) == ConfState(("a", "b", "c"), ())
    assert apply_change(conf, ConfChange(ConfChangeType.ADD_LEARNER, "b")) == ConfState(("a",), ("b", "c"))
    assert apply_change(conf, ConfChange(ConfChangeType.REMOVE, "c")) == ConfState(("a", "b"), ())
    with pytest.raises(ConfigError, match="already a learner"):
        apply_change(conf, ConfChange(ConfChangeType.ADD_LEARNER, "c"))
    with pytest.raises(ConfigError, match="no voters"):
        apply_change(ConfState(("a",)), ConfChange(ConfChangeType.REMOVE, "a"))
