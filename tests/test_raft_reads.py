"""Linearizable reads: ReadIndex on the leader and forwarded from followers; lease reads."""

from __future__ import annotations

import pytest

from clusterkit.check import RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import (
    AppendResponse,
    ConfigError,
    Heartbeat,
    HeartbeatResponse,
    NotLeader,
    RaftConfig,
    ReadIndex,
    VoteResponse,
)

from .conftest import drain, make_node

CFG = RaftConfig(election_ticks=8)


@pytest.fixture
def net() -> MemNetwork:
    n = MemNetwork(["n1", "n2", "n3"], seed=12, config=CFG, monitor=RaftSafetyMonitor())
    n.elect()
    n.run_until(lambda: False, 3)
    return n


def test_leader_read_waits_for_a_heartbeat_round(net):
    leader = net.leader()
    net.propose(leader, b"x=1")
    net.deliver_all()
    raft = net.nodes[leader].raft
    sent = []
    original = net._send
    net._send = lambda m: (sent.append(m), original(m))  # type: ignore[method-assign]
    raft.read_index(b"r1")
    net.process(leader)
    assert net.nodes[leader].read_states == []  # not before a majority confirmed the leadership
    rounds = [m.round for m in sent if isinstance(m, Heartbeat)]
    assert len(rounds) == 2 and rounds[0] == rounds[1] == raft._round  # one new round, to both followers
    net.deliver_all()
    (rs,) = net.nodes[leader].read_states
    assert rs.context == b"r1" and rs.index == raft.log.committed
    assert net.nodes[leader].applied[-1].index >= rs.index  # can be served at once


def test_follower_read_is_forwarded_and_covers_earlier_writes(net):
    leader = net.leader()
    follower = next(n for n in net.ids if n != leader)
    index = net.propose(leader, b"x=2")
    net.deliver_all()
    net.nodes[follower].raft.read_index(b"f1")
    net.process(follower)
    net.deliver_all()
    (rs,) = net.nodes[follower].read_states
    assert rs.context == b"f1" and rs.index >= index
    assert any(e.index == index for e in net.nodes[follower].applied)


def test_partitioned_old_leader_never_answers_a_read(net):
    old = net.leader()
    old_raft = net.nodes[old].raft
    net.partition([old])
    net.nodes[old].read_states.clear()
    old_raft.read_index(b"stale?")
    net.process(old)
    # The majority elects a new leader and commits a write the old leader cannot see.
    rest = [n for n in net.ids if n != old]
    assert net.run_until(lambda: net.leader() in rest, 200)
    new = net.leader()
    net.propose(new, b"x=new")
    net.run_until(lambda: all(b"x=new" in net.nodes[n].applied_data() for n in rest), 50)
    for _ in range(30):
        net.tick(old)
        net.deliver_all()
        old_raft.read_index(b"stale-again") if old_raft.is_leader else None
        net.process(old)
    assert net.nodes[old].read_states == []
    net.heal()
    net.run_until(lambda: not old_raft.is_leader, 50)
    net.deliver_all()
    assert net.nodes[old].read_states == []  # the round never completed; the read is dropped
    assert old_raft.dropped_reads >= 1


def test_read_before_the_new_leader_commits_in_its_term_waits():
    node = make_node("a", config=RaftConfig(pre_vote=False))
    node.campaign()
    node.step(VoteResponse(node.term, "b", "a", reject=False))
    assert node.is_leader and node.log.committed == 0
    node.read_index(b"early")
    msgs = drain(node)
    assert not any(isinstance(m, Heartbeat) for m in msgs)  # waits for the noop
    node.step(AppendResponse(node.term, "b", "a", node.log.last_index()))
    msgs = drain(node)
    hb = next(m for m in msgs if isinstance(m, Heartbeat) and m.dst == "b")  # the round sent for it
    node.step(HeartbeatResponse(node.term, "b", "a", hb.round))
    rd = node.ready()
    assert [(r.index, r.context) for r in rd.read_states] == [(1, b"early")]
    node.advance(rd)


def test_one_ack_confirms_every_earlier_read(net):
    leader = net.leader()
    raft = net.nodes[leader].raft
    for ctx in (b"a", b"b", b"c"):
        raft.read_index(ctx)
    net.process(leader)
    net.deliver_all()
    assert [r.context for r in net.nodes[leader].read_states] == [b"a", b"b", b"c"]


def test_single_voter_reads_at_once():
    net = MemNetwork(["solo"], seed=1)
    net.elect()
    net.nodes["solo"].raft.read_index(b"x")
    net.process("solo")
    assert [r.context for r in net.nodes["solo"].read_states] == [b"x"]


def test_lease_reads_skip_the_round_and_need_check_quorum():
    with pytest.raises(ConfigError, match="check_quorum"):
        RaftConfig(lease_reads=True, check_quorum=False)
    net = MemNetwork(["n1", "n2", "n3"], seed=3, config=RaftConfig(lease_reads=True))
    leader = net.elect()
    net.run_until(lambda: False, 2)
    sent = []
    original = net._send
    net._send = lambda m: (sent.append(m), original(m))  # type: ignore[method-assign]
    net.nodes[leader].raft.read_index(b"lease")
    net.process(leader)
    assert [r.context for r in net.nodes[leader].read_states] == [b"lease"]
    assert not any(isinstance(m, (Heartbeat, ReadIndex)) for m in sent)


def test_read_errors():
    node = make_node("a")
    with pytest.raises(NotLeader):
        node.read_index(b"x")
    with pytest.raises(TypeError):
        node.read_index("x")  # type: ignore[arg-type]


def test_a_cut_off_leader_stops_answering_lease_reads_before_another_can_be_elected():
    cfg = RaftConfig(election_ticks=10, lease_reads=True)
    net = MemNetwork(["n1", "n2", "n3"], seed=3, config=cfg, monitor=RaftSafetyMonitor())
    leader = net.elect()
    net.run_until(lambda: False, 2)
    raft = net.nodes[leader].raft
    net.partition([leader])
    for _ in range(cfg.election_ticks // 2):
        net.tick(leader)
        net.deliver_all()
    assert raft.is_leader  # CheckQuorum has not noticed yet...
    raft.read_index(b"late")
    net.process(leader)
    net.deliver_all()
    assert net.nodes[leader].read_states == []  # ...but the lease has run out: the read needs a round
    net.heal()
    net.tick(leader)
    net.deliver_all()
    assert [r.context for r in net.nodes[leader].read_states] == [b"late"]  # the round confirms it


def test_a_lost_read_round_is_retried_by_the_next_heartbeat(net):
    leader = net.leader()
    net.nodes[leader].raft.read_index(b"lost")
    net.process(leader)
    net.inflight.clear()  # the read's heartbeats are lost
    net.deliver_all()
    assert net.nodes[leader].read_states == []
    net.tick(leader)  # a regular heartbeat round confirms every read still pending
    net.deliver_all()
    assert [r.context for r in net.nodes[leader].read_states] == [b"lost"]


def _lease_net(n: int) -> tuple[MemNetwork, str]:
    cfg = RaftConfig(election_ticks=10, lease_reads=True)
    net = MemNetwork([f"n{i}" for i in range(1, n + 1)], seed=8, config=cfg, monitor=RaftSafetyMonitor())
    leader = net.elect()
    net.run_until(lambda: False, 3)
    return net, leader


def _stale_reads(net: MemNetwork, nid: str, required: dict[bytes, int]) -> list:
    net.deliver_all()
    return [rs for rs in net.nodes[nid].read_states if rs.index < required[rs.context]]


def test_a_restarted_voter_keeps_the_lease_it_promised():
    """The old leader's lease counts on X not voting for a full election timeout. If X restarts
    and forgets that, A (long cut off, so its timer has run out) wins at once with Z and X, commits,
    and the old leader, alone but inside its lease, would answer a stale read."""
    net, leader = _lease_net(5)
    a, z, x, y = [n for n in net.ids if n != leader]
    net.partition([leader, x, y], [a, z])
    net.run_until(lambda: False, 25)  # a and z can't win alone; a's election timer runs out
    net.partition([leader], [a, z, x, y])
    net.crash(x, synced=True)
    net.restart(x)
    net.nodes[a].raft.campaign()  # its election timer fires now
    net.process(a)
    required: dict[bytes, int] = {}
    for k in range(CFG.election_ticks):
        net.tick_all()
        net.deliver_all()
        new = net.leader()
        if new != leader:
            net.propose(new, b"after the old lease? %d" % k)
            net.deliver_all()
        ctx = b"r%d" % k
        required[ctx] = max(net.monitor.committed)
        if net.nodes[leader].raft.is_leader:
            net.nodes[leader].raft.read_index(ctx)
            net.process(leader)
        assert _stale_reads(net, leader, required) == []


def test_no_lease_read_while_leadership_is_being_transferred():
    """TimeoutNow lets the target win past every lease. If the old leader kept answering from its
    lease while it can't hear the new one, it would serve reads that miss the new leader's writes."""
    net, leader = _lease_net(3)
    target, other = [n for n in net.ids if n != leader]
    net.blocked |= {(target, leader), (other, leader)}  # the old leader hears nothing from now on
    net.nodes[leader].raft.transfer_leadership(target)
    net.process(leader)
    net.deliver_all()
    assert net.leader() == target
    net.propose(target, b"written by the new leader")
    net.deliver_all()
    required = {b"old": max(net.monitor.committed)}
    old = net.nodes[leader].raft
    assert old.is_leader  # it has not heard of the new term
    old.read_index(b"old")
    net.process(leader)
    assert _stale_reads(net, leader, required) == []
    assert net.nodes[leader].read_states == []  # it waits for a round that cannot complete


def test_an_answer_to_an_earlier_round_cannot_confirm_a_later_read_with_the_same_context():
    """Contexts need not be unique: a delayed answer to the round of an earlier read tagged the same
    way must not confirm a later read, which needs a round sent after it arrived."""
    node = make_node("a", voters=("a", "b", "c"), config=RaftConfig(pre_vote=False))
    node.campaign()
    node.step(VoteResponse(node.term, "b", "a", reject=False))
    node.step(AppendResponse(node.term, "b", "a", node.log.last_index()))
    drain(node)
    node.read_index(b"same")
    (first, _) = [m.round for m in drain(node) if isinstance(m, Heartbeat)]
    node.step(HeartbeatResponse(node.term, "b", "a", first))
    rd = node.ready()
    assert [r.context for r in rd.read_states] == [b"same"]
    node.advance(rd)
    node.read_index(b"same")
    drain(node)
    node.step(HeartbeatResponse(node.term, "c", "a", first))  # late answer to the first round
    node.step(HeartbeatResponse(node.term, "b", "a", first))  # and a duplicate of it
    assert not node.has_ready() or node.ready().read_states == []


def test_no_stale_lease_read_when_only_forwarded_reads_reach_the_leader():
    """One-way cut: the leader can't reach A or B and B can't reach it, but A's messages still
    arrive. A's forwarded reads must not keep the lease alive: A's election timer only resets on
    the leader's own appends and heartbeats, so A and B elect a new leader and commit a write
    that the old leader's lease read would miss."""
    net, leader = _lease_net(3)
    a, b = [n for n in net.ids if n != leader]
    net.cut(leader, a)
    net.cut(leader, b)
    net.cut(b, leader)
    required: dict[bytes, int] = {}
    new_leader_wrote = False
    for k in range(60):
        net.tick_all()
        net.deliver_all()
        new = net.leader()
        if new not in (None, leader) and not new_leader_wrote:
            new_leader_wrote = net.propose(new, b"written behind the old leader's back") is not None
            net.deliver_all()
        ctx = b"r%d" % k
        required[ctx] = max(net.monitor.committed)
        if net.nodes[a].raft.leader == leader:
            net.nodes[a].raft.read_index(b"via-a")  # forwarded to the old leader, and arrives
            net.process(a)
        old = net.nodes[leader].raft
        if old is not None and old.is_leader:
            old.read_index(ctx)  # a client of the old leader reads there
            net.process(leader)
        assert _stale_reads(net, leader, required) == []
    assert new_leader_wrote  # the scenario really happened: a new leader committed a write
