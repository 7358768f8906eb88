"""The node host: requests by index and term, reads, the facade for life, the address book."""

from __future__ import annotations

import pytest

from clusterkit.cluster_state import rebalance_command
from clusterkit.host import AppliedLog, NodeHost
from clusterkit.host.node import HOST_ENTRY, unwrap_snapshot
from clusterkit.mem.cluster import MemCluster
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import AppendEntries, CommitNotice, ConfState, Entry, MemoryStorage, NotLeader, RaftConfig
from clusterkit.raft.ready import Role

CFG = RaftConfig(election_ticks=6, snapshot_threshold=20, snapshot_trailing=2)


def _net(n: int = 3, seed: int = 1) -> MemNetwork:
    net = MemNetwork([f"n{i}" for i in range(1, n + 1)], seed=seed, config=CFG)
    net.elect()
    return net


def test_a_proposal_ends_with_its_own_entrys_result():
    net = _net()
    leader = net.nodes[net.leader()]
    first, second = leader.propose(b"same"), leader.propose(b"same")  # identical bytes, two entries
    net.process(leader.id)
    assert net.run_until(lambda: first.done and second.done, 20)
    assert first.ok and second.ok and first.index != second.index
    assert (first.result, second.result) == (first.index, second.index)  # AppliedLog answers the index


def test_a_proposal_overwritten_by_a_new_leader_fails():
    net = _net()
    old = net.leader()
    net.partition([old])
    lost = net.nodes[old].propose(b"never commits")
    net.process(old)
    assert net.run_until(lambda: net.leader() not in (None, old), 100)
    new = net.leader()
    net.propose(new, b"the new leader's entry")
    net.heal()
    assert net.run_until(lambda: lost.done, 100)
    assert not lost.ok and lost.error.startswith("lost")


def test_propose_on_a_follower_names_the_leader_and_host_bytes_are_refused():
    net = _net()
    follower = net.nodes[next(n for n in net.ids if n != net.leader())]
    with pytest.raises(NotLeader) as err:
        follower.propose(b"x")
    assert err.value.leader == net.leader()
    with pytest.raises(ValueError, match="0xc1"):
        net.nodes[net.leader()].propose(HOST_ENTRY + b"forged")
    with pytest.raises(TypeError):
        net.nodes[net.leader()].propose("text")  # type: ignore[arg-type]


def test_requests_end_when_the_node_crashes():
    net = _net()
    leader = net.nodes[net.leader()]
    net.partition([leader.id])
    proposal, read = leader.propose(b"x"), leader.read()
    net.crash(leader.id)
    assert proposal.done and not proposal.ok and proposal.error.startswith("unknown")
    assert read.done and not read.ok


def test_a_read_through_a_follower_waits_until_it_has_applied_the_index():
    net = _net()
    follower = net.nodes[next(n for n in net.ids if n != net.leader())]
    leader = net.nodes[net.leader()]
    net.propose(leader.id, b"w")
    while b"w" not in leader.applied_data():
        net.deliver(0)
    net.inflight[:] = [m for m in net.inflight if not isinstance(m, CommitNotice)]  # lost: the follower lags
    net.deliver_all()
    assert b"w" not in follower.applied_data()
    read = follower.read()
    net.process(follower.id)
    assert net.run_until(lambda: read.done, 20) and read.ok
    assert follower.applied_index >= read.index and b"w" in follower.applied_data()


def test_the_facade_is_the_same_object_for_the_nodes_whole_life():
    c = MemCluster([f"node-{i}" for i in range(1, 4)], seed=2, raft_config=RaftConfig(snapshot_threshold=5,
                                                                                   snapshot_trailing=1))
    c.elect()
    for nid in c.kits:
        assert c.start(nid).ok
    kit = c.kits["node-3"]  # what an application holds
    c.net.crash("node-3", synced=True)
    for _ in range(8):
        c.submit("node-1", rebalance_command())
    c.net.restart("node-3")
    assert c.run_until(lambda: kit.state.epoch == c.kits["node-1"].state.epoch, 100)
    assert c.kits["node-3"] is kit and c.net.nodes["node-3"].machine is kit
    assert kit.state.to_dict() == c.kits["node-1"].state.to_dict()  # the held object reads the current map


def test_identical_commands_each_get_their_own_result():
    c = MemCluster([f"node-{i}" for i in range(1, 4)], seed=4)
    c.elect()
    for nid in c.kits:
        c.start(nid)
    a = c.submit("node-2", rebalance_command())
    b = c.submit("node-2", rebalance_command())
    assert a.ok and b.ok and b.epoch == a.epoch + 1  # two entries, two results (was: the first one twice)


def test_the_facade_reads_leadership_from_its_own_raft_node():
    c = MemCluster([f"node-{i}" for i in range(1, 4)], seed=5)
    old = c.elect()
    c.net.partition([old])
    assert c.run_until(lambda: c.net.leader() not in (None, old), 100)
    assert c.kits[old].is_leader == c.net.nodes[old].raft.is_leader  # its own view, even if stale
    new = c.net.leader()
    assert c.kits[new].is_leader and not any(c.kits[n].is_leader for n in c.kits if n not in (old, new))


def test_addresses_survive_compaction_and_a_new_leader():
    ids = ["n1", "n2", "n3"]
    peers = {nid: f"127.0.0.1:{9000 + i}" for i, nid in enumerate(ids)}
    net = MemNetwork(ids, seed=3, config=CFG)
    for nid in ids:  # bootstrap members know each other's addresses from their config
        net.nodes[nid].peers = dict(peers)
        net.nodes[nid].address = peers[nid]
    leader = net.elect()
    net.add_node("n4")
    net.nodes[leader].raft.add_learner("n4", context=b"10.0.0.4:9000")
    net.process(leader)
    for k in range(60):  # enough entries that every log is compacted past the membership change
        net.propose(net.leader(), b"w%d" % k)
        net.run_until(lambda: False, 1)
    for nid in ids:
        raft = net.nodes[nid].raft
        assert raft.snapshot is not None and raft.log.offset > 3
        book, _ = unwrap_snapshot(raft.snapshot.data)
        assert book["n4"] == "10.0.0.4:9000" and book["n1"] == peers["n1"]
    net.crash(leader)
    assert net.run_until(lambda: net.leader() not in (None, leader), 100)
    new = net.nodes[net.leader()]
    assert new.addresses["n4"] == "10.0.0.4:9000"
    assert net.run_until(lambda: net.nodes["n4"].addresses.get("n1") == peers["n1"], 100)  # n4 learnt them too


def test_a_single_host_runs_without_a_network():
    host = NodeHost("solo", MemoryStorage(ConfState(voters=("solo",))), AppliedLog())
    while not host.is_leader:
        host.tick()
        assert host.process() == []  # one voter: nothing to send
    p = host.propose(b"hello")
    host.process()
    assert p.ok and host.machine.data() == [b"hello"]


def test_apply_stable_applies_durable_committed_entries_before_the_sync_and_finish_the_rest():
    """While a driver syncs a Ready that carries new entries, the committed entries an earlier sync
    made durable may apply (their proposals end) without waiting for it; none applies twice."""
    net = _net()
    leader = net.nodes[net.leader()]
    first = leader.propose(b"first")
    net.process(leader.id)  # persisted and synced on the leader, appends sent
    to_leader = []
    while net.inflight:  # the followers persist and answer; hold their answers
        m = net.inflight.pop(0)
        if m.dst == leader.id:
            to_leader.append(m)
        else:
            net.nodes[m.dst].step(m)
            net.process(m.dst)
    for m in to_leader:
        leader.step(m)  # "first" commits: the leader's next Ready carries it
    second = leader.propose(b"second")  # ... beside a new entry, not yet synced
    rd = leader.begin()
    assert rd is not None and rd.must_sync()
    assert [e.data for e in rd.entries] == [b"second"]
    assert b"first" in [e.data for e in rd.committed_entries]
    leader.apply_stable(rd)
    assert first.ok and first.result == first.index and not second.done  # before the sync
    assert b"second" not in leader.machine.data()
    leader.storage.sync()
    for m in leader.finish(rd):
        net._send(m)
    assert net.run_until(lambda: second.done, 50)
    assert second.ok
    indexes = [e.index for e in leader.machine.entries]
    assert indexes == sorted(set(indexes))  # each entry applied once, in order
    assert leader.machine.data().count(b"first") == 1 and leader.machine.data().count(b"second") == 1


def test_apply_stable_leaves_entries_not_yet_synced_to_finish():
    """A follower learns an entry and its commit in one append: the Ready that persists the entry
    also applies it, but only in finish, after the sync."""
    net = _net()
    leader = net.nodes[net.leader()]
    follower = net.nodes[next(n for n in net.nodes if n != leader.id)]
    raft = leader.raft
    last = raft.log.last_index()
    follower.step(AppendEntries(raft.term, leader.id, follower.id, last, raft.log.last_term(), last + 1,
                                [Entry(raft.term, last + 1, b"x")]))
    rd = follower.begin()
    assert rd is not None and [e.data for e in rd.committed_entries][-1:] == [b"x"] and rd.entries
    follower.apply_stable(rd)
    assert b"x" not in follower.machine.data()  # not durable yet: applies only after the sync, in finish
    follower.storage.sync()
    follower.finish(rd)
    assert follower.machine.data()[-1:] == [b"x"]


def test_a_single_voter_commits_an_entry_once_its_disk_holds_it():
    host = NodeHost("solo", MemoryStorage(ConfState(voters=("solo",))), AppliedLog())
    while not host.is_leader:
        host.tick()
        host.process()
    p = host.propose(b"x")
    rd = host.begin()
    assert rd is not None and rd.entries and not rd.committed_entries  # not durable: not committed
    host.storage.sync()
    host.finish(rd)  # advance: durable here, so committed; the next Ready applies it
    assert not p.done and host.raft.log.committed == p.index
    host.process()
    assert p.ok and host.machine.data() == [b"x"]


def test_a_truncated_proposal_is_unknown_until_certain_and_may_still_commit():
    """Issue 20, item 5: leader L appends X and replicates it only to B; a new leader N, elected
    without either, truncates X on L with its first append (which reaches only L) and crashes; B
    wins and commits X everywhere. L's proposal must not end as failed when X leaves L's log: it
    ends ok, once X is applied."""
    cfg = RaftConfig(election_ticks=6, pre_vote=False, check_quorum=False, lease_reads=False)
    net = MemNetwork([f"n{i}" for i in range(1, 6)], seed=3, config=cfg)
    lead = net.elect()
    others = [n for n in net.ids if n != lead]
    b, n, d, e = others
    everyone = set(net.ids)

    def only(*links: tuple[str, str]) -> None:
        net.blocked = {(s, t) for s in everyone for t in everyone if s != t} - set(links)

    only((lead, b), (b, lead))
    x = net.nodes[lead].propose(b"X")
    net.process(lead)
    net.deliver_all()
    assert net.nodes[b].raft.log.term(x.index) == x.term  # X on L and B, not committed (2 of 5)
    assert not x.done

    only((n, d), (d, n), (n, e), (e, n))
    net.nodes[n].raft.campaign()
    net.process(n)
    while net.nodes[n].raft.role is not Role.LEADER:  # one message at a time, to stop N's appends
        assert net.deliver(0)
    only((n, lead), (lead, n))  # N's first appends reach only L
    net.deliver_all()
    assert net.nodes[lead].raft.log.term(x.index) != x.term  # X truncated on L
    assert not x.done  # not failed: B still holds X
    net.crash(n)

    only(*[(s, t) for s in (b, d, e) for t in (b, d, e) if s != t])
    net.nodes[b].raft.campaign()
    net.process(b)
    assert net.run_until(lambda: net.leader() == b and net.nodes[b].raft.log.committed >= x.index, 50)
    net.blocked = {(s, t) for s in everyone for t in everyone if n in (s, t)}
    assert net.run_until(lambda: x.done, 100)
    assert x.ok, x.error  # X committed after all: "lost" would have been a lie


def test_a_node_not_admitted_grants_no_vote_and_never_campaigns():
    """Issue 20, item 2: a node restarted on an empty disk under a member's id has forgotten the
    entries it acknowledged: its vote could elect a leader that lacks a committed entry. Until the
    cluster takes it in again it refuses every vote, never campaigns and acknowledges nothing."""
    from clusterkit.raft.messages import RequestVote, VoteResponse

    for admitted in (False, True):
        host = NodeHost("n3", MemoryStorage(), AppliedLog(), CFG, joining=True, admitted=admitted)
        host.step(RequestVote(5, "n2", "n3", 0, 0))
        out = host.process()
        votes = [m for m in out if isinstance(m, VoteResponse)]
        assert len(votes) == 1 and votes[0].reject is (not admitted)
        for _ in range(10 * CFG.election_ticks):
            host.tick()
        assert not any(isinstance(m, RequestVote) for m in host.process())
        # It writes what a leader sends, but acknowledges nothing a leader would count.
        host.step(AppendEntries(5, "n2", "n3", 0, 0, 0, [Entry(5, 1, b"x")]))
        acks = [m for m in host.process() if type(m).__name__ == "AppendResponse"]
        assert host.raft.log.last_index() == 1 and len(acks) == (1 if admitted else 0)
        if not admitted:
            host.admit()
            assert host.raft.admitted
