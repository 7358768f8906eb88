"""Lease reads are linearizable where their assumptions hold: clocks that tick at the same rate and
messages that arrive within a bounded time.

The schedule runs in lockstep: every action is followed by delivering everything in flight (no
message waits longer than one round; 5% are lost, which a lease must survive), and time passes
only in rounds where every live node ticks once. Between rounds Hypothesis partitions (both
ways, or one way only: the leader's messages lost while some of the others' still reach it),
heals, crashes and restarts nodes (with or without the last write synced), proposes, transfers
leadership and asks for reads on any node. Every read must
come back with an index that covers every entry committed anywhere before it was asked. (In the
free schedules of test_raft_completeness_properties, where nodes tick independently and messages
wait arbitrarily long, lease reads are unsafe by design; that is why they are off by default.
The two ways a lease broke before, a restarted voter and a leadership transfer, need timings a
random schedule rarely hits: tests/test_raft_reads.py replays each of them.)
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clusterkit.check import RaftSafetyMonitor
from clusterkit.mem.network import MemNetwork
from clusterkit.raft import RaftConfig, RaftError

from .test_raft_properties import SETTINGS as BASE_SETTINGS

CONFIG = RaftConfig(election_ticks=10, lease_reads=True, max_inflight=4)
ACTION = st.tuples(st.integers(0, 99), st.integers(0, 63), st.booleans())
COUNTS = {"runs": 0, "reads": 0, "lease_reads": 0}


def run(n_nodes: int, schedule: list[tuple[int, int, bool]], seed: int) -> None:
    net = MemNetwork(
        [f"n{i}" for i in range(n_nodes)], seed=seed, config=CONFIG, monitor=RaftSafetyMonitor(), drop_rate=0.05
    )
    net.elect()
    required: dict[bytes, int] = {}
    for serial, (kind, arg, flag) in enumerate(schedule):
        nid = net.ids[arg % len(net.ids)]
        raft = net.nodes[nid].raft
        if kind < 45:
            net.tick_all()  # one round: every live node ticks once
        elif kind < 60:
            lead = net.leader()
            if lead is not None:
                net.propose(lead, b"w%d" % serial)
        elif kind < 63:
            net.partition([m for i, m in enumerate(net.ids) if arg >> i & 1])
        elif kind < 66:
            # One-way cuts: the chosen nodes can't reach the others, who still reach them. With the
            # flag, the chosen side is the leader, and the others it can't hear are the masked ones.
            side = [m for i, m in enumerate(net.ids) if arg >> i & 1]
            lead = net.leader()
            if flag and lead is not None:
                for src in side:
                    if src != lead:
                        net.cut(src, lead)
                side = [lead]
            for src in side:
                for dst in net.ids:
                    if dst not in side:
                        net.cut(src, dst)
        elif kind < 70:
            net.heal()
        elif kind < 74:
            net.crash(nid, synced=flag)
        elif kind < 80:
            net.restart(nid)
        elif kind < 83:
            if raft is not None and raft.is_leader:
                try:
                    raft.transfer_leadership()
                except RaftError:
                    pass
                net.process(nid)
        elif raft is not None:
            ctx = b"r%d" % serial
            required[ctx] = max(net.monitor.committed, default=0)
            try:
                raft.read_index(ctx)
            except RaftError:
                continue
            COUNTS["reads"] += 1
            if raft.is_leader and raft._lease_holds():
                COUNTS["lease_reads"] += 1
            net.process(nid)
        net.deliver_all()  # bounded delay: nothing waits past this round
        for node in net.nodes.values():
            for rs in node.read_states:
                assert rs.index >= required[rs.context], (
                    f"lease read {rs.context!r} on {node.id} got index {rs.index}, "
                    f"but {required[rs.context]} had committed before it was asked"
                )
            node.read_states.clear()
        net.check_logs()
    COUNTS["runs"] += 1


SETTINGS = settings(BASE_SETTINGS, max_examples=150)


@SETTINGS
@given(schedule=st.lists(ACTION, min_size=50, max_size=400), seed=st.integers(0, 2**16))
def test_lease_reads_in_lockstep_three_nodes(schedule, seed):
    run(3, schedule, seed)


@SETTINGS
@given(schedule=st.lists(ACTION, min_size=50, max_size=400), seed=st.integers(0, 2**16))
def test_lease_reads_in_lockstep_five_nodes(schedule, seed):
    run(5, schedule, seed)


def test_lease_schedules_read_from_the_lease():
    """Guards the two tests above against testing nothing (runs after them in file order)."""
    if COUNTS["runs"] < 300:
        return  # run alone: nothing to judge
    print(f"lease schedule statistics: {COUNTS}")
    assert COUNTS["lease_reads"] > COUNTS["runs"]
