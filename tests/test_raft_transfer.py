"""Leadership transfer (TimeoutNow, Ongaro's thesis §3.10)."""

from __future__ import annotations

import pytest

from clusterkit.check import RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import ConfigError, NotLeader, ProposalDropped, RaftConfig, TimeoutNow

CFG = RaftConfig(election_ticks=10)


@pytest.fixture
def net() -> MemNetwork:
    n = MemNetwork(["n1", "n2", "n3", "n4", "n5"], seed=4, config=CFG, monitor=RaftSafetyMonitor())
    n.elect()
    n.run_until(lambda: False, 3)
    return n


def test_transfer_to_a_named_node_needs_no_election_timeout(net):
    old = net.leader()
    target = next(n for n in net.ids if n != old)
    assert net.nodes[old].raft.transfer_leadership(target) == target
    net.process(old)
    net.deliver_all()  # no tick at all: TimeoutNow makes the target campaign at once
    assert net.leader() == target
    assert net.nodes[target].raft.term == net.nodes[old].raft.term
    net.propose(target, b"after transfer")
    net.deliver_all()
    assert b"after transfer" in net.nodes[target].applied_data()
    net.tick(target)  # the followers learn the commit from the next heartbeat
    net.deliver_all()
    assert all(b"after transfer" in n.applied_data() for n in net.nodes.values())


def test_transfer_picks_the_most_caught_up_voter(net):
    old = net.leader()
    behind = [n for n in net.ids if n != old][:3]
    best = next(n for n in net.ids if n not in behind and n != old)
    net.partition(behind)
    net.propose(old, b"only some have this")
    net.deliver_all()
    net.heal()
    assert net.nodes[old].raft.transfer_leadership() == best


def test_lagging_target_is_caught_up_before_it_is_told(net):
    old = net.leader()
    target = next(n for n in net.ids if n != old)
    net.partition([target])
    for i in range(5):
        net.propose(old, b"w%d" % i)
    net.deliver_all()
    net.heal()
    sent = []
    original = net._send
    net._send = lambda m: (sent.append(m), original(m))  # type: ignore[method-assign]
    net.nodes[old].raft.transfer_leadership(target)
    net.process(old)
    assert not any(isinstance(m, TimeoutNow) for m in sent)  # it is behind: appends first
    net.deliver_all()
    assert any(isinstance(m, TimeoutNow) for m in sent)
    assert net.leader() == target
    assert b"w4" in net.nodes[target].applied_data()


def test_proposals_are_refused_during_a_transfer_and_resume_if_it_is_abandoned(net):
    old = net.leader()
    target = next(n for n in net.ids if n != old)
    net.partition([target])
    raft = net.nodes[old].raft
    raft.transfer_leadership(target)
    net.process(old)
    with pytest.raises(ProposalDropped, match="transferred"):
        raft.propose(b"x")
    with pytest.raises(ProposalDropped):
        raft.add_learner("n9")
    for _ in range(CFG.election_ticks):
        net.tick(old)
        net.deliver_all()
    assert raft.is_leader and raft.status()["transferring_to"] is None
    assert raft.propose(b"x") is not None


def test_bad_transfer_requests(net):
    old = net.leader()
    follower = next(n for n in net.ids if n != old)
    with pytest.raises(NotLeader):
        net.nodes[follower].raft.transfer_leadership()
    with pytest.raises(ConfigError, match="not a voter"):
        net.nodes[old].raft.transfer_leadership("n9")
    assert net.nodes[old].raft.transfer_leadership(old) == old  # already there: nothing to do
    single = MemNetwork(["solo"], seed=1)
    single.elect()
    with pytest.raises(ConfigError, match="no other voter"):
        single.nodes["solo"].raft.transfer_leadership()
