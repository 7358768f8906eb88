"""Membership changes: learners, promotion, removal, the single-server change guards, many nodes."""

from __future__ import annotations

import pytest

from clusterkit.check import RaftSafetyMonitor
from clusterkit.check.raft_safety import InvariantViolation
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import (
    AppendEntries,
    ConfChange,
    ConfChangeType,
    ConfigError,
    EntryType,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    Role,
    TimeoutNow,
)
from clusterkit.raft.confchange import decode_entry

CFG = RaftConfig(election_ticks=6, voter_down_ticks=12)


def raft(net: MemNetwork, nid: str):
    r = net.nodes[nid].raft
    assert r is not None
    return r


def change(net: MemNetwork, nid: str, fn, *args):
    """Call a membership method on ``nid``'s Raft node and let the driver process it."""
    out = fn(raft(net, nid), *args)
    net.process(nid)
    return out


def settle(net: MemNetwork, rounds: int = 60) -> None:
    net.run_until(lambda: False, rounds)


def committed_conf(net: MemNetwork, nid: str):
    r = raft(net, nid)
    return r.voters, r.learners


def applied_changes(net: MemNetwork, nid: str) -> list[tuple[int, str]]:
    return [
        (int(decode_entry(e.data)[0].op), decode_entry(e.data)[0].node)
        for e in net.nodes[nid].applied
        if e.type == EntryType.CONF_CHANGE
    ]


@pytest.fixture
def three() -> MemNetwork:
    net = MemNetwork(["n1", "n2", "n3"], seed=7, config=CFG, monitor=RaftSafetyMonitor())
    net.elect()
    settle(net, 5)
    return net


def test_a_joining_node_starts_as_learner_and_is_promoted_once_caught_up(three):
    net = three
    leader = net.leader()
    for i in range(30):
        net.propose(leader, b"w%d" % i)
    net.deliver_all()
    net.add_node("n4")
    change(net, leader, type(raft(net, leader)).add_learner, "n4")
    assert raft(net, leader).learners == ("n4",)
    # n4 does not count for commits while it is a learner...
    assert raft(net, leader).quorum() == 2
    settle(net, 40)
    # ... and is promoted by the leader once caught up (4 voters <= max_voters 5).
    assert raft(net, leader).voters == ("n1", "n2", "n3", "n4")
    assert (ConfChangeType.ADD_LEARNER, "n4") in applied_changes(net, "n4")
    assert (ConfChangeType.ADD_VOTER, "n4") in applied_changes(net, "n1")
    assert [e.data for e in net.nodes["n4"].applied if e.data and e.type == 0][:3] == [b"w0", b"w1", b"w2"]
    net.check_logs()


def test_a_slow_learner_never_costs_availability(three):
    net = three
    leader = net.leader()
    net.add_node("n4")
    change(net, leader, type(raft(net, leader)).add_learner, "n4")
    net.partition(["n4"])  # the joiner can't keep up at all
    for i in range(20):
        net.propose(leader, b"w%d" % i)
        settle(net, 2)
    assert all(b"w19" in net.nodes[n].applied_data() for n in ("n1", "n2", "n3"))
    assert "n4" in raft(net, leader).learners  # not promoted while behind
    net.heal()
    settle(net, 40)
    assert "n4" in raft(net, leader).voters
    assert b"w19" in net.nodes["n4"].applied_data()


def test_changes_are_refused_while_one_is_in_flight_or_before_a_commit_in_term(three):
    net = three
    leader = net.leader()
    lead = raft(net, leader)
    net.add_node("n4")
    net.add_node("n5")
    lead.add_learner("n4")
    with pytest.raises(ProposalDropped, match="has not committed yet"):
        lead.add_learner("n5")
    net.process(leader)
    settle(net, 3)
    # A fresh leader that has not committed an entry of its term yet refuses too.
    other = next(n for n in ("n1", "n2", "n3") if n != leader)
    lead.transfer_leadership(other)
    net.process(leader)
    r = raft(net, other)
    while r.role is not Role.LEADER and net.inflight:
        net.deliver(0)
    assert r.role is Role.LEADER and r.log.term(r.log.committed) != r.term
    with pytest.raises(ProposalDropped, match="no entry of term"):
        r.add_learner("n5")


def test_bad_changes_are_refused_with_a_clear_error(three):
    lead = raft(three, three.leader())
    with pytest.raises(ConfigError, match="already a voter"):
        lead.add_voter("n2")
    with pytest.raises(ConfigError, match="not a member"):
        lead.remove_node("n9")
    with pytest.raises(ConfigError, match="non-empty string"):
        ConfChange(ConfChangeType.REMOVE, "")
    with pytest.raises(ConfigError, match="unknown membership change"):
        ConfChange(7, "n1")  # type: ignore[arg-type]
    follower = raft(three, next(n for n in three.ids if n != three.leader()))
    follower.leader = None
    with pytest.raises(NotLeader):
        follower.add_learner("n4")


def test_max_voters_is_enforced_for_explicit_adds():
    net = MemNetwork(["n1", "n2", "n3"], seed=3, config=RaftConfig(election_ticks=6, max_voters=3))
    leader = net.elect()
    settle(net, 3)
    net.add_node("n4")
    with pytest.raises(ConfigError, match="max_voters=3"):
        raft(net, leader).add_voter("n4")
    change(net, leader, type(raft(net, leader)).add_learner, "n4")
    settle(net, 30)
    assert raft(net, leader).voters == ("n1", "n2", "n3") and raft(net, leader).learners == ("n4",)


def test_a_bootstrap_with_more_voters_than_max_voters_settles_at_the_limit():
    ids = [f"n{i}" for i in range(1, 10)]
    net = MemNetwork(ids, seed=5, config=RaftConfig(election_ticks=6), monitor=RaftSafetyMonitor())
    leader = net.elect()
    settle(net, 60)
    lead = raft(net, net.leader())
    assert len(lead.voters) == 5 and len(lead.learners) == 4  # the default max_voters
    assert net.leader() in lead.voters
    for nid in ids:  # every node agrees, and the demoted ones still follow the log
        assert raft(net, nid).conf_state == lead.conf_state
    index = net.propose(net.leader(), b"after")
    settle(net, 5)
    assert all(raft(net, nid).log.committed >= index for nid in ids)
    assert leader  # elected from the bootstrap's nine voters


def test_removing_a_follower_shrinks_the_quorum(three):
    net = three
    leader = net.leader()
    victim = next(n for n in net.ids if n != leader)
    change(net, leader, type(raft(net, leader)).remove_node, victim)
    settle(net, 10)
    assert victim not in raft(net, leader).voters
    assert raft(net, victim).removed or victim not in raft(net, victim).voters
    net.crash(victim)
    survivor = next(n for n in net.ids if n not in (leader, victim))
    net.propose(leader, b"two voters suffice")
    settle(net, 5)
    assert b"two voters suffice" in net.nodes[survivor].applied_data()


def test_a_leader_removing_itself_hands_over_first(three):
    net = three
    leader = net.leader()
    assert change(net, leader, type(raft(net, leader)).remove_node, leader) is None
    assert raft(net, leader).status()["transferring_to"] is not None
    settle(net, 30)
    new = net.leader()
    assert new is not None and new != leader
    assert leader not in raft(net, new).voters
    assert raft(net, leader).removed
    net.propose(new, b"after")
    settle(net, 5)
    assert all(b"after" in net.nodes[n].applied_data() for n in net.ids if n != leader)


def test_a_leader_whose_removal_commits_steps_down_when_it_could_not_hand_over(three):
    net = three
    leader = net.leader()
    lead = raft(net, leader)
    original = net._send
    sent_as_follower = []

    def send(m):
        if m.src == leader and isinstance(m, AppendEntries) and not lead.is_leader:
            sent_as_follower.append(m)  # a node that stepped down must not act as leader
        if not isinstance(m, TimeoutNow):
            original(m)

    net._send = send  # type: ignore[method-assign]
    lead.remove_node(leader)
    net.process(leader)
    assert lead.status()["transferring_to"] is not None
    for _ in range(CFG.election_ticks + 2):
        net.tick(leader)
        net.deliver_all()
    # The transfer was abandoned; the leader appended its own removal, which committed without it.
    assert leader not in lead.voters
    assert lead.role is not Role.LEADER and lead.removed
    assert sent_as_follower == []
    net._send = original  # type: ignore[method-assign]
    settle(net, 40)
    new = net.leader()
    assert new is not None and new != leader and leader not in raft(net, new).voters


def test_truncated_change_is_undone_on_the_follower():
    """A node adopts a change when it appends it; a new leader that never had it overwrites it,
    and the node falls back to the configuration before it."""
    net = MemNetwork([f"n{i}" for i in range(1, 6)], seed=11, config=CFG, monitor=RaftSafetyMonitor())
    leader = net.elect()
    settle(net, 3)
    a, *rest = [n for n in net.ids if n != leader]
    net.add_node("n6")
    net.partition([leader, a])  # the change reaches a only
    raft(net, leader).add_learner("n6")
    net.process(leader)
    net.deliver_all()
    assert raft(net, a).learners == ("n6",)  # adopted on append, not on commit
    conf_index = raft(net, a)._conf_key[0]
    assert raft(net, a).log.committed < conf_index
    net.partition([leader])  # a joins the other three; they elect a leader without the change
    others = [a, *rest]
    assert net.run_until(lambda: any(raft(net, n).is_leader for n in rest), 100)
    new = next(n for n in rest if raft(net, n).is_leader)
    net.propose(new, b"overwrite")
    net.run_until(lambda: b"overwrite" in net.nodes[a].applied_data(), 50)
    assert raft(net, a).log.entry(conf_index).type != EntryType.CONF_CHANGE
    assert raft(net, a).learners == () and len(raft(net, a).voters) == 5
    assert all(raft(net, n).voters == raft(net, a).voters for n in others)
    net.check_logs()


def test_ongaro_single_server_change_bug_is_prevented():
    """raft-dev, 2015: with single-server changes, a leader that appends a change before it has
    committed an entry of its own term can lose a committed change. S1..S4; S1 adds S5 (reaches only
    S5); S2 leads term 2 and removes S4, committing with S3 alone; S1 comes back, wins with S4 and S5
    (a majority of its 5-voter configuration) and overwrites the committed removal."""

    def scenario(guarded: bool) -> MemNetwork:
        cfg = RaftConfig(election_ticks=5, pre_vote=False, check_quorum=False, auto_promote=False)
        net = MemNetwork(["s1", "s2", "s3", "s4"], seed=1, config=cfg, monitor=RaftSafetyMonitor())
        s1, s2 = raft(net, "s1"), raft(net, "s2")
        if not guarded:  # the bug as described: no "commit an entry of your term first" rule
            for r in net.nodes.values():
                r.raft._can_change_conf = lambda r=r.raft: None if r._conf_key[0] <= r.log.committed else "busy"
        s1.campaign()
        net.process("s1")
        net.deliver_all()
        assert s1.is_leader and s1.log.committed == 1
        net.add_node("s5")
        net.partition(["s1", "s5"])
        s1.add_voter("s5")  # C1 = {s1..s5}: reaches s5 only
        net.process("s1")
        net.deliver_all()
        assert raft(net, "s5").voters == ("s1", "s2", "s3", "s4", "s5")
        # s2 leads term 2 with s3 and s4; s4 is cut off before it hears anything from s2.
        net.partition(["s1", "s5"], ["s2", "s3"], ["s4"])
        for vote_from in ("s3", "s4"):
            net.blocked.discard(("s2", vote_from))
            net.blocked.discard((vote_from, "s2"))
        s2.campaign()
        net.process("s2")
        while not s2.is_leader:
            net.deliver(0)
        net.partition(["s1", "s5", "s4"], ["s2", "s3"])  # s4 misses s2's noop; s3 gets it
        net.deliver_all()
        try:
            s2.remove_node("s4")  # C2 = {s1, s2, s3}
        except ProposalDropped:
            assert guarded
            return net
        net.process("s2")
        net.deliver_all()
        assert s2.log.committed == s2.log.last_index()  # committed by s2 and s3: a majority of C2
        # s1 restarts and campaigns in C1, where s4 and s5 make a majority with it.
        net.crash("s1", synced=True)
        net.restart("s1")
        s1 = raft(net, "s1")
        net.heal()
        for _ in range(30):
            net.tick("s1")
            net.deliver_all()
            net.check_logs()
        return net

    with pytest.raises(InvariantViolation):
        scenario(guarded=False)
    net = scenario(guarded=True)
    # With the guard: s2 must first commit its noop, which needs s4, so s4's log then beats s1's.
    s2 = raft(net, "s2")
    assert s2.log.term(s2.log.committed) != s2.term
    assert s2.voters == ("s1", "s2", "s3", "s4")  # the removal was never appended
    net.heal()
    for _ in range(80):  # the cluster runs on; the monitor checks every step
        net.tick_all()
        net.deliver_all()
        net.check_logs()


def test_twenty_five_nodes_keep_five_voters_and_replace_a_failed_one():
    ids = [f"n{i:02d}" for i in range(1, 6)]
    net = MemNetwork(ids, seed=25, config=CFG, monitor=RaftSafetyMonitor())
    leader = net.elect()
    settle(net, 3)
    for i in range(6, 26):
        nid = f"n{i:02d}"
        net.add_node(nid)
        for _ in range(50):
            try:
                change(net, net.leader(), type(raft(net, leader)).add_learner, nid)
                break
            except ProposalDropped:
                settle(net, 1)
        settle(net, 2)
    settle(net, 30)
    lead = raft(net, net.leader())
    assert len(lead.voters) == 5 and len(lead.learners) == 20
    assert all(raft(net, n).log.applied == lead.log.committed for n in net.ids)

    victim = next(v for v in lead.voters if v != net.leader())
    net.crash(victim)
    settle(net, CFG.voter_down_ticks + 30)
    lead = raft(net, net.leader())
    assert victim not in lead.voters and victim in lead.learners
    assert len(lead.voters) == 5
    net.propose(net.leader(), b"still five")
    settle(net, 5)
    assert sum(b"still five" in n.applied_data() for n in net.nodes.values()) == 24
    net.check_logs()
