"""Log replication: consistency check, conflicts, fast backtracking, batching, pipelining, commit rules."""

from __future__ import annotations

import pytest

from clusterkit.check import RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import (
    AppendEntries,
    AppendResponse,
    CommitNotice,
    ConfState,
    Entry,
    EntryType,
    HardState,
    HeartbeatResponse,
    MemoryStorage,
    NotLeader,
    ProposalDropped,
    Propose,
    RaftConfig,
    Role,
    VoteResponse,
)

from clusterkit.raft.storage import write_ready

from .conftest import drain, make_node


def stored(voters: tuple[str, ...], terms: list[int], term: int) -> MemoryStorage:
    """A storage holding entries of the given terms (index i+1 has terms[i])."""
    s = MemoryStorage(ConfState(voters=voters))
    s.append([Entry(t, i + 1, f"e{i + 1}t{t}".encode()) for i, t in enumerate(terms)])
    s.set_hard_state(HardState(term=term))
    s.sync()
    return s


def leader_of(storage: MemoryStorage, config: RaftConfig | None = None, voters=("a", "b", "c")):
    node = make_node("a", voters=voters, config=config or RaftConfig(pre_vote=False), storage=storage)
    node.campaign()
    for v in voters[1:]:
        node.step(VoteResponse(node.term, v, "a", reject=False))
        if node.role is Role.LEADER:
            break
    assert node.role is Role.LEADER
    return node


# ------------------------------------------------------------ follower side
def test_follower_rejects_append_with_missing_prev_entry():
    node = make_node("b")
    node.step(AppendEntries(1, "a", "b", index=5, log_term=1, commit=0, entries=[Entry(1, 6, b"x")]))
    (resp,) = drain(node)
    assert isinstance(resp, AppendResponse) and resp.reject and resp.index == 5
    assert resp.reject_hint == 0  # b's log is empty: "try from the start"
    assert node.log.last_index() == 0


def test_follower_truncates_conflicting_suffix_and_keeps_prefix():
    node = make_node("b", storage=stored(("a", "b", "c"), [1, 1, 2, 2], term=2))
    node.step(AppendEntries(3, "a", "b", index=2, log_term=1, commit=0, entries=[Entry(3, 3, b"new")]))
    (resp,) = drain(node)
    assert not resp.reject and resp.index == 3
    assert [e.term for e in node.log.entries] == [1, 1, 3]
    assert node.storage.entries(1, 4)[2].data == b"new"  # storage replaced the old entries too
    assert node.storage.last_index() == 3


def test_duplicate_append_is_idempotent():
    node = make_node("b")
    m = AppendEntries(1, "a", "b", 0, 0, 0, [Entry(1, 1, b"x"), Entry(1, 2, b"y")])
    node.step(m)
    drain(node)
    node.step(AppendEntries(1, "a", "b", 0, 0, 2, [Entry(1, 1, b"x")]))  # stale, shorter, same entries
    (resp,) = drain(node)
    assert not resp.reject and resp.index == 1
    assert node.log.last_index() == 2  # the stale message did not truncate entry 2
    assert node.log.committed == 1  # commit is capped at what the message vouched for


def test_follower_commit_follows_leader_commit():
    node = make_node("b")
    node.step(AppendEntries(1, "a", "b", 0, 0, 1, [Entry(1, 1, b"x"), Entry(1, 2, b"y")]))
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"x"]
    assert rd.hard_state.commit == 1


# ------------------------------------------------------------- leader side
def test_new_leader_appends_noop_of_its_term():
    node = leader_of(stored(("a", "b", "c"), [1, 1], term=1))
    last = node.log.entries[-1]
    assert last.index == 3 and last.term == node.term and last.type == EntryType.NOOP


def test_figure8_old_term_entry_not_committed_by_counting_replicas():
    node = leader_of(stored(("a", "b", "c"), [1, 2], term=3))
    assert node.term == 4
    drain(node)
    node.step(AppendResponse(4, "b", "a", index=2))  # b holds entry 2 (term 2): a majority holds it
    assert node.log.committed == 0  # ...but it is not of term 4, so counting replicas must not commit it
    node.step(AppendResponse(4, "b", "a", index=3))  # the term-4 no-op reaches a majority
    assert node.log.committed == 3  # now everything up to it commits, entry 2 included


def test_commit_needs_majority_of_voters():
    node = leader_of(stored(("a", "b", "c", "d", "e"), [], term=0), voters=("a", "b", "c", "d", "e"))
    drain(node)
    node.propose(b"x")
    drain(node)
    node.step(AppendResponse(node.term, "b", "a", index=2))
    assert node.log.committed == 0
    node.step(AppendResponse(node.term, "c", "a", index=2))
    assert node.log.committed == 2


def test_a_leader_counts_its_own_entry_for_a_commit_only_once_its_disk_holds_it():
    """The driver may send a leader's appends while it syncs them (Ready.take_early_messages): one
    follower's answer then must not commit the entry (one durable copy of three); both followers'
    answers may (two of three), whatever the leader's disk holds; the leader's own sync counts."""
    node = leader_of(stored(("a", "b", "c"), [], term=0))
    drain(node)
    node.step(AppendResponse(node.term, "b", "a", index=1))  # both in step: appends stream to them
    node.step(AppendResponse(node.term, "c", "a", index=1))
    drain(node)
    node.propose(b"x")
    rd = node.ready()
    write_ready(node.storage, rd)
    early = rd.take_early_messages()
    assert sorted(m.dst for m in early if isinstance(m, AppendEntries) and m.entries) == ["b", "c"]
    assert not any(isinstance(m, AppendEntries) for m in rd.messages)  # taken out: not sent twice
    node.step(AppendResponse(node.term, "b", "a", index=2))
    assert node.log.committed == 1  # b's copy alone: entry 2 is not on a majority of disks yet
    node.storage.sync()
    node.advance(rd)  # now the leader's disk holds it too: b and a are a majority
    assert node.log.committed == 2

    node.propose(b"y")
    rd = node.ready()
    write_ready(node.storage, rd)
    rd.take_early_messages()
    node.step(AppendResponse(node.term, "b", "a", index=3))
    assert node.log.committed == 2
    node.step(AppendResponse(node.term, "c", "a", index=3))
    assert node.log.committed == 3  # b and c hold it: committed while the leader still syncs
    node.storage.sync()
    node.advance(rd)


def test_no_message_leaves_before_the_sync_of_a_new_term_or_vote():
    node = make_node("a", config=RaftConfig(pre_vote=False))
    node.campaign()
    rd = node.ready()
    assert rd.hard_state_changed and rd.messages
    assert rd.take_early_messages() == [] and rd.messages  # the votes asked wait for the sync
    node.advance(rd)
    follower = make_node("b")
    follower.step(AppendEntries(1, "a", "b", index=0, log_term=0, commit=0, entries=[Entry(1, 1, b"x")]))
    rd = follower.ready()
    assert rd.take_early_messages() == [] and isinstance(rd.messages[0], AppendResponse)


def test_fast_backtracking_needs_few_round_trips():
    # Follower holds 60 entries from terms 2 and 3 that the leader (terms 1 then 5) never had.
    follower_terms = [1] * 3 + [2] * 30 + [3] * 30
    leader_terms = [1] * 3 + [4] * 40
    a = leader_of(stored(("a", "b", "c"), leader_terms, term=4), config=RaftConfig(pre_vote=False))
    b = make_node("b", storage=stored(("a", "b", "c"), follower_terms, term=4))
    rejections = 0
    msgs = [m for m in drain(a) if m.dst == "b"]
    for _ in range(20):
        if not msgs:
            break
        replies = []
        for m in msgs:
            b.step(m)
            replies.extend(drain(b))
        rejections += sum(1 for r in replies if isinstance(r, AppendResponse) and r.reject)
        msgs = []
        for r in replies:
            a.step(r)
        msgs = [m for m in drain(a) if m.dst == "b"]
    assert [e.term for e in b.log.entries] == [e.term for e in a.log.entries]
    assert rejections <= 2, rejections  # one per conflicting term, not one per entry


def test_batching_respects_entry_and_byte_limits():
    cfg = RaftConfig(max_entries_per_msg=10, max_bytes_per_msg=100, max_inflight=1000, pre_vote=False)
    a = leader_of(stored(("a", "b", "c"), [], term=0), config=cfg)
    drain(a)
    a.step(AppendResponse(a.term, "b", "a", index=1))  # b in step: now streaming
    drain(a)
    a.propose_batch([b"x" * 8] * 35 + [b"y" * 500] + [b"z"] * 3)
    appends = [m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]
    sizes = [len(m.entries) for m in appends]
    assert sum(sizes) == 39
    assert max(sizes) <= 10
    for m in appends:
        total = sum(len(e.data) for e in m.entries)
        assert total <= 100 or len(m.entries) == 1  # an oversized entry travels alone
    assert [len(e.data) for m in appends for e in m.entries].count(500) == 1


def test_pipelining_bounded_by_max_inflight():
    cfg = RaftConfig(max_entries_per_msg=1, max_inflight=4, pre_vote=False)
    a = leader_of(stored(("a", "b", "c"), [], term=0), config=cfg)
    drain(a)
    a.step(AppendResponse(a.term, "b", "a", index=1))
    drain(a)
    a.propose_batch([b"%d" % i for i in range(10)])
    to_b = [m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]
    assert len(to_b) == 4  # four in flight, then paused
    a.step(AppendResponse(a.term, "b", "a", index=to_b[0].entries[-1].index))
    more = [m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]
    assert len(more) == 1  # one acknowledged, one more sent


def test_proposals_between_two_readies_share_one_append_per_follower():
    """Entries proposed one by one before the driver takes the next Ready (during a sync, say)
    go out together when it is taken: one message and one answer per follower, one pipeline
    slot, within the entry and byte limits; the answer acknowledges all of them."""
    cfg = RaftConfig(max_entries_per_msg=3, max_bytes_per_msg=100, max_inflight=2, pre_vote=False)
    a = leader_of(stored(("a", "b", "c"), [], term=0), config=cfg)
    drain(a)
    a.step(AppendResponse(a.term, "b", "a", index=1))
    a.step(AppendResponse(a.term, "c", "a", index=1))
    drain(a)
    for i in range(4):
        a.propose(b"%d" % i)
    a.propose(b"x" * 100)
    a.propose(b"yy")
    assert not a.msgs  # nothing is sent before the Ready is taken
    to_b = [m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]
    # b"3" and 100 bytes are over max_bytes_per_msg: then the pipeline is full
    assert [[e.data for e in m.entries] for m in to_b] == [[b"0", b"1", b"2"], [b"3"]]
    assert list(a.progress["b"].inflight) == [4, 5]  # entry 1 is the election's no-op
    a.step(AppendResponse(a.term, "b", "a", index=5))
    assert a.log.committed == 5
    to_b = [m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]
    assert [[e.data for e in m.entries] for m in to_b] == [[b"x" * 100], [b"yy"]]  # 102 bytes don't fit in one
    assert [m.commit for m in to_b] == [5, 5] and list(a.progress["b"].inflight) == [6, 7]


def test_probe_state_sends_one_append_until_answer():
    cfg = RaftConfig(max_entries_per_msg=1, pre_vote=False)
    a = leader_of(stored(("a", "b", "c"), [], term=0), config=cfg)
    drain(a)
    a.propose_batch([b"1", b"2", b"3"])
    to_b = [m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]
    assert to_b == []  # the election's probe to b is unanswered: nothing more goes out
    a.step(HeartbeatResponse(a.term, "b", "a"))
    assert len([m for m in drain(a) if isinstance(m, AppendEntries) and m.dst == "b"]) == 1


def test_lost_pipeline_recovers_via_heartbeat():
    cfg = RaftConfig(max_entries_per_msg=1, max_inflight=2, pre_vote=False)
    net = MemNetwork(["a", "b", "c"], seed=4, config=cfg, monitor=RaftSafetyMonitor())
    lead = net.elect()
    for i in range(6):
        net.propose(lead, b"%d" % i)
    net.inflight.clear()  # everything in flight is lost
    assert net.run_until(lambda: all(len(n.applied_data()) == 6 for n in net.nodes.values()), 100)


# ------------------------------------------------------------- proposals
def test_follower_forwards_proposal_to_leader():
    net = MemNetwork(["a", "b", "c"], seed=9, monitor=RaftSafetyMonitor())
    lead = net.elect()
    follower = next(n for n in net.ids if n != lead)
    assert net.propose(follower, b"forwarded") is None
    fwd = [m for m in net.inflight if isinstance(m, Propose)]
    assert len(fwd) == 1 and fwd[0].dst == lead and fwd[0].term == 0
    net.run_until(lambda: all(b"forwarded" in n.applied_data() for n in net.nodes.values()), 20)
    assert all(n.applied_data() == [b"forwarded"] for n in net.nodes.values())


def test_not_leader_error_names_the_leader():
    node = make_node("b", config=RaftConfig(forward_proposals=False))
    node.step(AppendEntries(1, "a", "b", 0, 0, 0, []))
    with pytest.raises(NotLeader) as err:
        node.propose(b"x")
    assert err.value.leader == "a"
    assert "the leader is a" in str(err.value)


def test_not_leader_without_known_leader():
    node = make_node("b")
    with pytest.raises(NotLeader) as err:
        node.propose(b"x")
    assert err.value.leader is None
    assert "no leader is known" in str(err.value)


def test_oversized_and_mistyped_proposals_refused_and_node_keeps_working():
    cfg = RaftConfig(max_entry_bytes=10)
    node = make_node("a", voters=("a",), config=cfg)
    node.campaign()
    with pytest.raises(ProposalDropped, match="max_entry_bytes"):
        node.propose(b"x" * 11)
    with pytest.raises(TypeError, match="bytes"):
        node.propose("text")  # type: ignore[arg-type]
    assert node.propose(b"ok") == 2
    drain(node)
    assert node.log.committed == 2


def test_uncommitted_backlog_limit():
    cfg = RaftConfig(max_uncommitted_bytes=100, pre_vote=False)
    a = leader_of(stored(("a", "b", "c"), [], term=0), config=cfg)
    a.propose(b"x" * 60)
    a.propose(b"x" * 40)
    with pytest.raises(ProposalDropped, match="backlog"):
        a.propose(b"x")
    drain(a)
    a.step(AppendResponse(a.term, "b", "a", index=a.log.last_index()))
    assert a.propose(b"x") is not None  # commit freed the budget


def test_proposal_on_leader_returns_index_and_commits_everywhere():
    net = MemNetwork(["a", "b", "c", "d", "e"], seed=1, monitor=RaftSafetyMonitor())
    lead = net.elect()
    first = net.propose(lead, b"one")
    second = net.propose(lead, b"two")
    assert second == first + 1
    net.run_until(lambda: all(n.applied_data() == [b"one", b"two"] for n in net.nodes.values()), 20)
    assert all(n.applied_data() == [b"one", b"two"] for n in net.nodes.values())


def test_a_commit_under_load_waits_for_the_next_append_or_heartbeat_an_idle_one_is_a_notice():
    """While later entries are uncommitted, the answer that commits an entry sends no append of its
    own to caught-up followers (it and its answer were half the messages of a write): they learn
    it from the next append or heartbeat. The commit that leaves nothing uncommitted is told at
    once, by a CommitNotice capped at each follower's match and never answered, also to a
    follower whose answer comes after that commit."""
    net = MemNetwork(["n1", "n2", "n3"], seed=2, config=RaftConfig(election_ticks=10))
    net.elect()
    net.run_until(lambda: False, 3)
    leader, (f1, f2) = net.leader(), [n for n in net.ids if n != net.leader()]
    first = net.propose(leader, b"x")
    net.propose(leader, b"y")  # a second append to each follower, behind the first
    ys = [m for m in net.inflight if m.entries[-1].index > first]
    net.inflight[:] = [m for m in net.inflight if m.entries[-1].index == first]
    net.deliver_all()  # x commits while y is out: nothing is sent for it
    assert net.nodes[leader].raft.log.committed == first and not net.inflight
    assert net.nodes[f1].raft.log.committed < first and net.nodes[f2].raft.log.committed < first
    net.inflight[:] = [m for m in ys if m.dst == f1]
    net.deliver(0)  # f1 holds y
    net.deliver(0)  # its answer commits y, and now nothing is uncommitted
    assert net.nodes[leader].raft.log.committed == first + 1
    assert [(type(m), m.dst, m.commit) for m in net.inflight] == [
        (CommitNotice, f1, first + 1), (CommitNotice, f2, first)]  # f2 doesn't hold y yet: capped
    net.deliver_all()
    assert net.nodes[f1].raft.log.committed == first + 1 and net.nodes[f2].raft.log.committed == first
    net.inflight[:] = [m for m in ys if m.dst == f2]
    net.deliver(0)
    net.deliver(0)  # f2's answer comes after the commit: it gets its notice then
    assert [(type(m), m.dst, m.commit) for m in net.inflight] == [(CommitNotice, f2, first + 1)]
    net.deliver_all()
    assert all(n.raft.log.committed == first + 1 and b"y" in n.applied_data() for n in net.nodes.values())
    assert not net.inflight  # notices are not answered
