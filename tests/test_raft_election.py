"""Elections: timeouts, votes, PreVote, CheckQuorum."""

from __future__ import annotations

from clusterkit.check import RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import (
    AppendEntries,
    Entry,
    HardState,
    Heartbeat,
    RaftConfig,
    RequestVote,
    Role,
    VoteResponse,
)

from .conftest import drain, make_node


def test_randomized_election_timeout_is_within_e_and_2e():
    cfg = RaftConfig(election_ticks=10)
    seen = set()
    for seed in range(200):
        node = make_node(config=cfg, seed=seed)
        assert 10 <= node.randomized_election_timeout < 20
        seen.add(node.randomized_election_timeout)
    assert len(seen) > 5  # actually random, not a constant


def test_single_voter_elects_itself_and_commits_noop():
    node = make_node(voters=("a",))
    for _ in range(node.randomized_election_timeout):
        node.tick()
    assert node.role is Role.LEADER
    assert node.term == 1
    drain(node)
    assert node.log.committed == 1
    assert node.log.entries[0].type == 1  # NOOP of the new term


def test_follower_starts_prevote_without_raising_term():
    node = make_node()
    for _ in range(node.randomized_election_timeout):
        node.tick()
    assert node.role is Role.PRE_CANDIDATE
    assert node.term == 0
    msgs = drain(node)
    votes = [m for m in msgs if isinstance(m, RequestVote)]
    assert {m.dst for m in votes} == {"b", "c"}
    assert all(m.pre_vote and m.term == 1 for m in votes)


def test_prevote_quorum_then_real_vote_then_leader():
    node = make_node()
    for _ in range(node.randomized_election_timeout):
        node.tick()
    drain(node)
    node.step(VoteResponse(1, "b", "a", reject=False, pre_vote=True))
    assert node.role is Role.CANDIDATE and node.term == 1 and node.vote == "a"
    msgs = drain(node)
    assert all(isinstance(m, RequestVote) and not m.pre_vote for m in msgs)
    node.step(VoteResponse(1, "c", "a", reject=False))
    assert node.role is Role.LEADER
    msgs = drain(node)
    appends = [m for m in msgs if isinstance(m, AppendEntries)]
    assert {m.dst for m in appends} == {"b", "c"}
    assert appends[0].entries[0].type == 1 and appends[0].entries[0].term == 1


def test_candidate_loses_on_majority_of_rejections():
    node = make_node(config=RaftConfig(pre_vote=False))
    node.campaign()
    node.step(VoteResponse(1, "b", "a", reject=True))
    node.step(VoteResponse(1, "c", "a", reject=True))
    assert node.role is Role.FOLLOWER
    assert node.term == 1


def test_vote_is_persisted_before_the_grant_is_sent():
    node = make_node("b")
    node.step(RequestVote(1, "a", "b", index=0, log_term=0))
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote="a", commit=0)
    assert any(isinstance(m, VoteResponse) and not m.reject for m in rd.messages)
    assert rd.must_sync()


def test_one_vote_per_term():
    node = make_node("c")
    node.step(RequestVote(1, "a", "c", 0, 0))
    node.step(RequestVote(1, "b", "c", 0, 0))
    msgs = drain(node)
    grants = [m for m in msgs if isinstance(m, VoteResponse) and not m.reject]
    rejects = [m for m in msgs if isinstance(m, VoteResponse) and m.reject]
    assert [m.dst for m in grants] == ["a"]
    assert [m.dst for m in rejects] == ["b"]


def test_vote_refused_to_candidate_with_stale_log():
    node = make_node("b", config=RaftConfig(check_quorum=False))  # no lease: the log alone decides
    # b holds an entry of term 2
    node.step(AppendEntries(2, "c", "b", 0, 0, 0, [Entry(2, 1, b"x")]))
    drain(node)
    # a candidate whose last entry is from term 1 (longer log, older term) is refused
    node.step(RequestVote(3, "a", "b", index=5, log_term=1))
    msgs = drain(node)
    assert [m.reject for m in msgs if isinstance(m, VoteResponse)] == [True]
    assert node.vote is None


def test_granted_vote_resets_election_timer():
    node = make_node("b")
    for _ in range(5):
        node.tick()
    node.step(RequestVote(1, "a", "b", 0, 0))
    assert node.election_elapsed == 0


def test_leader_heartbeats_every_heartbeat_interval():
    net = MemNetwork(["a", "b", "c"], seed=3, config=RaftConfig(heartbeat_ticks=3))
    lead = net.elect()
    net.deliver_all()
    beats = []
    for _ in range(9):
        net.tick(lead)
        beats.append(sum(isinstance(m, Heartbeat) for m in net.inflight))
        net.deliver_all()
    assert beats == [0, 0, 2, 0, 0, 2, 0, 0, 2]


def test_isolated_node_does_not_inflate_term_with_prevote():
    net = MemNetwork(["a", "b", "c"], seed=5)
    lead = net.elect()
    term = net.nodes[lead].raft.term
    loner = next(n for n in net.ids if n != lead)
    net.partition([loner])
    for _ in range(100):
        net.tick_all()
        net.deliver_all()
    assert net.nodes[loner].raft.term == term  # pre-votes never won, term never bumped
    net.heal()
    for _ in range(30):
        net.tick_all()
        net.deliver_all()
    assert net.leader() == lead and net.nodes[lead].raft.term == term  # rejoining didn't depose the leader


def test_without_prevote_isolated_node_disrupts_on_rejoin():
    # The counterpart of the test above: shows PreVote is what protects the leader.
    cfg = RaftConfig(pre_vote=False, check_quorum=False)
    net = MemNetwork(["a", "b", "c"], seed=5, config=cfg)
    lead = net.elect()
    term = net.nodes[lead].raft.term
    loner = next(n for n in net.ids if n != lead)
    net.partition([loner])
    for _ in range(100):
        net.tick_all()
        net.deliver_all()
    assert net.nodes[loner].raft.term > term + 2
    net.heal()
    net.run_until(lambda: net.leader() is not None and net.nodes[net.leader()].raft.term > term, 50)
    assert net.nodes[net.leader()].raft.term > term


def test_check_quorum_leader_steps_down_when_cut_off():
    cfg = RaftConfig(election_ticks=10)
    net = MemNetwork(["a", "b", "c", "d", "e"], seed=11, config=cfg)
    lead = net.elect()
    net.partition([lead])
    for _ in range(2 * cfg.election_ticks):
        net.tick(lead)
        net.deliver_all()
    assert net.nodes[lead].raft.role is Role.FOLLOWER


def test_leader_without_check_quorum_stays_leader_when_cut_off():
    cfg = RaftConfig(election_ticks=10, check_quorum=False)
    net = MemNetwork(["a", "b", "c"], seed=11, config=cfg)
    lead = net.elect()
    net.partition([lead])
    for _ in range(5 * cfg.election_ticks):
        net.tick(lead)
        net.deliver_all()
    assert net.nodes[lead].raft.role is Role.LEADER


def test_majority_side_elects_new_leader_and_old_one_rejoins_as_follower():
    net = MemNetwork(["a", "b", "c", "d", "e"], seed=2, monitor=RaftSafetyMonitor())
    old = net.elect()
    old_term = net.nodes[old].raft.term
    others = [n for n in net.ids if n != old]
    net.partition([old])
    new = None
    for _ in range(200):
        net.tick_all()
        net.deliver_all()
        cand = [n for n in others if net.nodes[n].raft.role is Role.LEADER]
        if cand:
            new = cand[0]
            break
    assert new is not None and net.nodes[new].raft.term > old_term
    net.heal()
    net.run_until(lambda: net.nodes[old].raft.leader == new, 50)
    assert net.nodes[old].raft.role is Role.FOLLOWER
    assert net.nodes[old].raft.term == net.nodes[new].raft.term


def test_vote_request_ignored_while_in_leader_lease():
    node = make_node("b")
    node.step(Heartbeat(1, "a", "b", 0))
    drain(node)
    node.step(RequestVote(2, "c", "b", 10, 1))
    assert node.term == 1  # not even the term moved
    assert not any(isinstance(m, VoteResponse) for m in drain(node))


def test_stale_leader_is_told_the_new_term():
    node = make_node("b")
    node.step(Heartbeat(5, "c", "b", 0))
    drain(node)
    node.step(AppendEntries(3, "a", "b", 0, 0, 0, []))
    msgs = drain(node)
    assert len(msgs) == 1 and msgs[0].term == 5 and msgs[0].dst == "a"
    leader = make_node("a")
    leader.campaign()
    leader.step(VoteResponse(1, "b", "a", reject=False))
    assert leader.role is Role.LEADER
    leader.step(msgs[0].__class__(5, "b", "a", 0))
    assert leader.role is Role.FOLLOWER and leader.term == 5
