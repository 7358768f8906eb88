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
def test_reads_are_confirmed_by_round_in_arrival_order():
    q = ReadQueue()
    q.add(b"r1", "a", 10, 1)
    q.add(b"r1", "b", 11, 2)  # the same context again: still a read of its own
    q.add(b"r3", "a", 12, 2)
    assert q.confirmed(0) == []  # an answer to an earlier round confirms nothing
    done = q.confirmed(1)
    assert [(rs.index, rs.context, origin) for rs, origin in done] == [(10, b"r1", "a")]
    done = q.confirmed(5)  # a later round confirms every read that arrived before it
    assert [(rs.index, rs.context, origin) for rs, origin in done] == [(11, b"r1", "b"), (12, b"r3", "a")]
    assert not q.pending


def test_clear_drops_pending_and_waiting_reads():
    q = ReadQueue()
    q.add(b"r1", "a", 5, 1)
    q.waiting_commit.append((b"r2", "c"))
    assert q.clear() == 2 and not q.pending and q.waiting_commit == []


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


def test_a_chunk_of_an_older_snapshot_keeps_the_newer_one():
    buf = SnapshotBuffer()
    buf.receive(chunk(0, b"01234", index=20))
    assert buf.receive(chunk(0, b"abcde", index=9)) is None  # delayed chunk of an older snapshot
    assert buf.offset == 5  # what we held of the newer one is still there
    assert buf.receive(chunk(5, b"56789", index=20)).data == b"0123456789"


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
    assert next_membership_change("a", ("a", "b", "c"), ("d",), prs, 100, CFG) is None
    # One voter over the limit: one is demoted, never the leader, however silent it looks.
    cc = next_membership_change("a", ("a", "b", "c", "d"), (), prs, 100, CFG)
    assert cc == ConfChange(ConfChangeType.ADD_LEARNER, "b")


def test_voters_over_the_limit_are_demoted_least_caught_up_first():
    prs = {"a": progress(100), "b": progress(90), "c": progress(70), "d": progress(95), "e": progress(100)}
    cc = next_membership_change("a", ("a", "b", "c", "d", "e"), (), prs, 100, CFG)
    assert cc == ConfChange(ConfChangeType.ADD_LEARNER, "c")


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
