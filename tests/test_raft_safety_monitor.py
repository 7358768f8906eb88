"""The safety monitor's per-node rules: a term never goes down, one vote per term.

Unit tests feed :class:`RaftSafetyMonitor` directly; the network tests break
the core on purpose (a follower that adopts the lower term of a stale append,
a node that forgets its vote, a disk that loses synced writes) and check that
the monitor, fed by ``MemNetwork.observe``, catches each of them, while the
checks it had before these rules miss the stale append.
"""

from __future__ import annotations

import random

import pytest

from clusterkit.check import InvariantViolation, RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import AppendEntries, HardState, Heartbeat, RaftConfig, RequestVote, Role
from clusterkit.raft.node import RaftNode
from clusterkit.raft.storage import MemoryStorage

CFG = RaftConfig(election_ticks=5, heartbeat_ticks=1, max_inflight=4, max_entries_per_msg=3)


class OlderChecks(RaftSafetyMonitor):
    """The monitor without the per-node rules: election safety, commit, log matching,
    leader completeness and state machine safety only."""

    def term_seen(self, node, term):
        pass

    def persisted(self, node, term, vote):
        pass

    def vote_granted(self, voter, term, candidate):
        pass

    def restarted(self, node, term, vote):
        pass


# ---------------------------------------------------------------- the monitor alone
def test_live_term_may_rise_or_stay():
    mon = RaftSafetyMonitor()
    for term in (0, 1, 1, 3, 7):
        mon.term_seen("a", term)
    mon.term_seen("b", 2)  # nodes are independent
    assert mon.live_term == {"a": 7, "b": 2}


def test_live_term_going_down_is_a_violation():
    mon = RaftSafetyMonitor()
    mon.term_seen("a", 4)
    with pytest.raises(InvariantViolation, match="term monotonicity: a went from term 4 back to term 3"):
        mon.term_seen("a", 3)


def test_live_term_below_a_persisted_term_is_a_violation():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 5, None)
    with pytest.raises(InvariantViolation, match="below term 5 it persisted"):
        mon.term_seen("a", 4)


def test_persisted_term_going_down_is_a_violation():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 2, "a")
    mon.persisted("a", 2, "a")
    mon.persisted("a", 3, None)
    with pytest.raises(InvariantViolation, match="persisted term 2 after it had persisted term 3"):
        mon.persisted("a", 2, None)


def test_restart_below_an_unsynced_term_is_legal():
    """In memory the node reached term 6 (a driver saw it live), but it crashed before syncing
    it: it sent nothing in term 6 and may come back at the term it persisted."""
    mon = RaftSafetyMonitor()
    mon.persisted("a", 5, "b")
    mon.term_seen("a", 5)
    mon.term_seen("a", 6)
    mon.restarted("a", 5, "b")
    mon.term_seen("a", 5)  # a new lifetime: 5 after 6 is fine now
    mon.term_seen("a", 6)
    mon.restarted("a", 6, None)  # restarting higher is fine too (it persisted 6 meanwhile)


def test_restart_below_a_persisted_term_is_a_violation():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 5, None)
    with pytest.raises(InvariantViolation, match="a restarted at term 4, below term 5 it had persisted"):
        mon.restarted("a", 4, None)


def test_restart_below_a_term_it_voted_in_is_a_violation():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 2, None)
    mon.vote_granted("a", 3, "b")  # sent after a sync: term 3 was durable
    with pytest.raises(InvariantViolation, match="restarted at term 2, below term 3"):
        mon.restarted("a", 2, None)


def test_one_vote_per_term():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 1, "b")
    mon.vote_granted("a", 1, "b")  # the same vote again (a re-sent answer) is fine
    mon.persisted("a", 1, "b")
    mon.persisted("a", 2, "c")  # a new term, a new vote
    mon.persisted("c", 1, "c")  # another node's vote in term 1
    with pytest.raises(InvariantViolation, match=r"one vote per term: a voted for 'b' and for 'c' in term 1"):
        mon.vote_granted("a", 1, "c")


def test_second_vote_in_a_term_from_the_hard_state_is_a_violation():
    mon = RaftSafetyMonitor()
    mon.vote_granted("a", 4, "b")
    with pytest.raises(InvariantViolation, match="one vote per term: a voted for 'b' and for 'a' in term 4"):
        mon.persisted("a", 4, "a")


def test_restart_must_remember_the_vote_of_its_term():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 3, "b")
    mon.restarted("a", 3, "b")  # remembered: fine
    with pytest.raises(InvariantViolation, match="restarted in term 3 voting for None; it had voted for 'b'"):
        mon.restarted("a", 3, None)


def test_restart_with_a_different_vote_then_voting_again_is_caught_across_the_crash():
    mon = RaftSafetyMonitor()
    mon.vote_granted("a", 3, "b")
    with pytest.raises(InvariantViolation, match="restarted in term 3 voting for 'c'"):
        mon.restarted("a", 3, "c")
    mon = RaftSafetyMonitor()
    mon.persisted("a", 3, "b")
    mon.restarted("a", 4, None)  # a later term: the old vote no longer matters
    mon.persisted("a", 4, "c")


def test_forget_wipes_a_node():
    mon = RaftSafetyMonitor()
    mon.persisted("a", 3, "b")
    mon.term_seen("a", 3)
    mon.forget("a")
    mon.restarted("a", 0, None)
    mon.persisted("a", 3, "c")


# ---------------------------------------------------------------- fed by the in-memory network
def test_network_feeds_terms_votes_and_restarts():
    mon = RaftSafetyMonitor()
    net = MemNetwork(["a", "b", "c"], seed=3, config=CFG, monitor=mon)
    lead = net.elect()
    term = net.nodes[lead].raft.term
    assert mon.live_term == {nid: term for nid in net.ids}
    assert mon.durable_term == {nid: term for nid in net.ids}
    assert mon.votes[(lead, term)] == lead
    net.crash(lead)
    net.restart(lead)
    assert mon.live_term[lead] == term and net.nodes[lead].raft.vote == lead


def test_unsynced_higher_term_lost_in_a_crash_is_not_a_violation():
    mon = RaftSafetyMonitor()
    net = MemNetwork(["a", "b", "c"], seed=4, config=CFG, monitor=mon)
    lead = net.elect()
    term = net.nodes[lead].raft.term
    other = next(n for n in net.ids if n != lead)
    net.nodes[other].raft.campaign()  # term + 1 in memory, never synced nor sent
    assert net.nodes[other].raft.term == term + 1
    net.crash(other, synced=False)
    net.restart(other)
    assert net.nodes[other].raft.term == term
    net.elect()


def _stale_append_adopts_its_term(monkeypatch):
    """Break the core: a follower takes the lower term of a stale leader's append."""
    step = RaftNode.step

    def broken(self, m):
        if isinstance(m, (AppendEntries, Heartbeat)) and m.term < self.term and self.role is Role.FOLLOWER:
            self._become_follower(m.term, m.src)
        step(self, m)

    monkeypatch.setattr(RaftNode, "step", broken)


def _stale_heartbeat_scenario(mon: RaftSafetyMonitor) -> MemNetwork:
    net = MemNetwork(["a", "b", "c"], seed=1, config=CFG, monitor=mon)
    old = net.elect()
    net.tick(old)
    stale = next(m for m in net.inflight if m.src == old and isinstance(m, Heartbeat))
    net.deliver_all()
    new = next(n for n in net.ids if n not in (old, stale.dst))
    net.nodes[old].raft.transfer_leadership(new)
    net.process(old)
    assert net.run_until(lambda: net.leader() == new and net.nodes[stale.dst].raft.term > stale.term)
    net.inflight.append(stale)  # the old leader's heartbeat, delayed in the network
    net.deliver(len(net.inflight) - 1)
    return net


def test_stale_heartbeat_is_harmless_with_a_correct_core():
    net = _stale_heartbeat_scenario(RaftSafetyMonitor())
    net.elect()


def test_follower_adopting_a_stale_term_is_caught(monkeypatch):
    _stale_append_adopts_its_term(monkeypatch)
    with pytest.raises(InvariantViolation, match=r"term monotonicity: \w+ went from term (\d+) back to term"):
        _stale_heartbeat_scenario(RaftSafetyMonitor())
    _stale_heartbeat_scenario(OlderChecks())  # which the older checks did not see


def _forgets_its_vote(monkeypatch):
    """Break the core: a node forgets its vote whenever it is asked for one (a real vote)."""
    handle = RaftNode._handle_vote_request

    def broken(self, m):
        if not m.pre_vote:
            self.vote = None
            self.leader = None
        handle(self, m)

    monkeypatch.setattr(RaftNode, "_handle_vote_request", broken)


def test_voting_twice_in_a_term_is_caught(monkeypatch):
    _forgets_its_vote(monkeypatch)
    net = MemNetwork(["a", "b", "c"], seed=2, config=CFG, monitor=RaftSafetyMonitor())
    for nid in ("b", "c"):  # two candidates of term 1, no pre-vote
        net.nodes[nid].raft.campaign()
        net.process(nid)

    def deliver(src: str, dst: str) -> None:
        k = next(i for i, m in enumerate(net.inflight) if isinstance(m, RequestVote) and (m.src, m.dst) == (src, dst))
        net.deliver(k)

    deliver("b", "a")
    assert net.nodes["a"].raft.vote == "b"
    with pytest.raises(InvariantViolation, match="one vote per term: a voted for 'b' and for 'c' in term 1"):
        deliver("c", "a")


def test_disk_that_loses_synced_state_is_caught_at_restart(monkeypatch):
    """Break the storage: a crash loses the synced hard state (term and vote) as well."""
    crash = MemoryStorage.crash

    def lossy(self, *args, **kwargs):
        crash(self, *args, **kwargs)
        self._durable.hard_state = self._current.hard_state = HardState()

    mon = RaftSafetyMonitor()
    net = MemNetwork(["a", "b", "c"], seed=5, config=CFG, monitor=mon)
    lead = net.elect()
    term = net.nodes[lead].raft.term
    monkeypatch.setattr(MemoryStorage, "crash", lossy)
    net.crash(lead)
    with pytest.raises(InvariantViolation, match=f"{lead} restarted at term 0, below term {term}"):
        net.restart(lead)


# ---------------------------------------------------------------- random schedules
def _random_schedule(mon: RaftSafetyMonitor, seed: int, steps: int = 400) -> None:
    """Ticks, deliveries in any order, drops, proposals, crashes (synced or not), restarts,
    partitions and forced elections, drawn from ``seed``, as in the property tests."""
    rng = random.Random(seed)
    net = MemNetwork([f"n{i}" for i in range(3)], seed=seed, config=CFG, monitor=mon)
    for step in range(steps):
        r, nid = rng.random(), rng.choice(net.ids)
        if r < 0.30:
            net.deliver(rng.randrange(64))
        elif r < 0.55:
            net.tick(nid)
        elif r < 0.70:
            net.tick_all()
        elif r < 0.80:
            net.propose(nid, b"p%d" % step)
        elif r < 0.83:
            net.drop(rng.randrange(64))
        elif r < 0.86:
            net.duplicate(rng.randrange(64))
        elif r < 0.90:
            net.crash(nid, synced=rng.random() < 0.5)
        elif r < 0.94:
            net.restart(nid)
        elif r < 0.97:
            net.partition([m for m in net.ids if rng.random() < 0.5])
        elif r < 0.98:
            net.heal()
        elif net.nodes[nid].raft is not None:
            net.nodes[nid].raft.campaign()
            net.process(nid)
        net.check_logs()


def _caught(mon_type: type[RaftSafetyMonitor], seeds: range) -> dict[int, str]:
    found = {}
    for seed in seeds:
        try:
            _random_schedule(mon_type(), seed)
        except InvariantViolation as e:
            found[seed] = str(e)
    return found


def test_random_schedules_with_a_correct_core_raise_nothing():
    assert _caught(RaftSafetyMonitor, range(30)) == {}


def test_random_schedules_catch_a_follower_adopting_a_stale_term(monkeypatch):
    _stale_append_adopts_its_term(monkeypatch)
    found = _caught(RaftSafetyMonitor, range(100))
    assert any(v.startswith("term monotonicity") for v in found.values())
    seeds = [seed for seed, v in found.items() if v.startswith("term monotonicity")]
    for seed in seeds:
        _random_schedule(OlderChecks(), seed)  # the older checks pass these very runs


def test_random_schedules_catch_a_forgotten_vote(monkeypatch):
    _forgets_its_vote(monkeypatch)
    found = _caught(RaftSafetyMonitor, range(30))
    assert any(v.startswith("one vote per term") for v in found.values())
