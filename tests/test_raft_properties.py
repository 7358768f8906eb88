"""Raft safety and liveness under random schedules.

Hypothesis draws a schedule (ticks, deliveries in any order, drops,
duplicates, proposals, crashes with or without the last write synced,
restarts, partitions, forced elections) for a 3- or 5-node group. After every
step the monitor checks election safety, commit safety, leader completeness
and state machine safety; log matching is checked across all live nodes.
After the schedule everything heals and a leader must be elected and a new
proposal commit on every node, within a bounded number of rounds.

A failing schedule shrinks to a short list of actions that reproduces it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterkit.check import RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import RaftConfig

# (kind selector, argument, flag). Small selectors are deliveries, so shrinking
# heads towards the most boring schedule that still fails.
ACTION = st.tuples(st.integers(0, 99), st.integers(0, 63), st.booleans())
CONFIG = RaftConfig(election_ticks=5, heartbeat_ticks=1, max_inflight=4, max_entries_per_msg=3)

COUNTS = {"elections": 0, "commits": 0, "crashes": 0, "runs": 0, "leader_changes": 0}


def apply(net: MemNetwork, action: tuple[int, int, bool], serial: int) -> None:
    kind, arg, flag = action
    nid = net.ids[arg % len(net.ids)]
    if kind < 30:
        net.deliver(arg)
    elif kind < 55:
        net.tick(nid)
    elif kind < 70:
        net.tick_all()
    elif kind < 80:
        net.propose(nid, b"p%d" % serial)
    elif kind < 83:
        net.drop(arg)
    elif kind < 86:
        net.duplicate(arg)
    elif kind < 90:
        net.crash(nid, synced=flag)
    elif kind < 94:
        net.restart(nid)
    elif kind < 97:
        net.partition([m for i, m in enumerate(net.ids) if arg >> i & 1])
    elif kind < 98:
        net.heal()
    else:
        raft = net.nodes[nid].raft
        if raft is not None:
            raft.campaign()
            net.process(nid)


def commit_everywhere(net: MemNetwork, data: bytes, max_rounds: int) -> bool:
    """Propose ``data`` like a client would (to the leader, again after a leader change) until every
    node has applied it. A proposal can legitimately vanish when its leader is deposed before it commits."""
    proposed_to: tuple[str, int] | None = None
    for _ in range(max_rounds):
        if all(data in n.applied_data() for n in net.nodes.values()):
            return True
        leader = net.leader()
        if leader is not None and (leader, net.nodes[leader].raft.term) != proposed_to:
            if net.propose(leader, data) is not None:
                proposed_to = (leader, net.nodes[leader].raft.term)
        net.tick_all()
        net.deliver_all()
    return False


def run_schedule(
    n_nodes: int, schedule: list[tuple[int, int, bool]], seed: int, elected: bool = False
) -> MemNetwork:
    ids = [f"n{i}" for i in range(n_nodes)]
    net = MemNetwork(ids, seed=seed, config=CONFIG, monitor=RaftSafetyMonitor())
    if elected:  # start from a working cluster: the schedule then disturbs a leader
        net.elect()
    for serial, action in enumerate(schedule):
        apply(net, action, serial)
        net.check_logs()

    # Liveness: heal, restart, quiet network. A leader must emerge and commit.
    net.heal()
    for nid in ids:
        net.restart(nid)
    net.inflight.clear()
    assert commit_everywhere(net, b"final", max_rounds=300), "no proposal committed after healing"
    # Followers learn a commit index from the next append or heartbeat: one more round tells them
    # of entries the leader committed after "final" (a copy of it proposed to an earlier leader).
    net.tick_all()
    net.deliver_all()
    net.check_logs()
    reference = net.nodes[ids[0]].applied
    assert all([(e.index, e.term, e.data) for e in n.applied] == [(e.index, e.term, e.data) for e in reference]
               for n in net.nodes.values())

    COUNTS["runs"] += 1
    COUNTS["elections"] += len(net.monitor.leaders)
    COUNTS["leader_changes"] += len(net.monitor.leaders) > 1
    COUNTS["commits"] += len(net.monitor.committed)
    COUNTS["crashes"] += net.stats.crashes
    return net


SETTINGS = settings(
    max_examples=550,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(schedule=st.lists(ACTION, min_size=50, max_size=400), seed=st.integers(0, 2**16), elected=st.booleans())
def test_three_nodes_random_schedules(schedule, seed, elected):
    run_schedule(3, schedule, seed, elected)


@SETTINGS
@given(schedule=st.lists(ACTION, min_size=50, max_size=400), seed=st.integers(0, 2**16), elected=st.booleans())
def test_five_nodes_random_schedules(schedule, seed, elected):
    run_schedule(5, schedule, seed, elected)


def test_schedules_were_eventful():
    """Guards the two tests above against silently testing nothing (runs after them in file order)."""
    if COUNTS["runs"] < 1000:
        return  # run alone: nothing to judge
    print(f"schedule statistics: {COUNTS}")
    assert COUNTS["leader_changes"] > COUNTS["runs"] // 5  # leaders change, not just the first election
    assert COUNTS["commits"] > 3 * COUNTS["runs"]
    assert COUNTS["crashes"] > COUNTS["runs"] // 2


def test_long_seeded_chaos_runs():
    """Longer runs than Hypothesis draws: 5 nodes, 4000 seeded random steps each, lossy network."""
    for seed in range(12):
        net = MemNetwork(
            [f"n{i}" for i in range(5)], seed=seed, monitor=RaftSafetyMonitor(), drop_rate=0.05, dup_rate=0.05
        )
        for step in range(4000):
            net.random_step(fault_rate=0.02)
            if step % 10 == 0:
                net.check_logs()
        net.heal()
        net.drop_rate = net.dup_rate = 0.0
        for nid in net.ids:
            net.restart(nid)
        assert commit_everywhere(net, b"final", max_rounds=300)
        assert len(net.monitor.committed) > 20
