"""The facade over Raft membership and snapshots: nodes join the Raft group as learners,
and the Raft snapshot is the cluster state."""

from __future__ import annotations

from clusterkit.cluster_state import PartitionChange, rebalance_command
from clusterkit.facade import Options
from clusterkit.mem.cluster import MemCluster
from clusterkit.raft import RaftConfig

FIRST = ["node-1", "node-2", "node-3"]
SMALL = RaftConfig(election_ticks=6, snapshot_threshold=6, snapshot_trailing=1)


def _opts(nid: str) -> Options:
    i = int(nid.split("-")[1])
    return Options(node_id=nid, http_addr=f":{8079 + i}", join_addr="" if i == 1 else "127.0.0.1:8080",
                   partition_count=32, replication_factor=2)


def _cluster(config: RaftConfig | None = None) -> MemCluster:
    c = MemCluster(FIRST, seed=21, options=_opts, raft_config=config)
    c.elect()
    for nid in FIRST:
        assert c.start(nid).ok
    return c


def test_a_new_node_joins_raft_as_a_learner_then_the_cluster_state():
    c = _cluster()
    events: list[PartitionChange] = []
    c.add_node("node-4")
    c.kits["node-4"].on_partition_change(events.append)
    raft = c.net.nodes[c.net.leader()].raft
    assert "node-4" in raft.voters + raft.learners
    assert "node-4" not in c.kits["node-1"].state.nodes  # Raft member, not yet a cluster node
    assert c.start("node-4").ok
    c.run_until(lambda: "node-4" in c.net.nodes[c.net.leader()].raft.voters, 50)
    assert "node-4" in c.net.nodes[c.net.leader()].raft.voters  # promoted once caught up
    assert c.kits["node-4"].partitions_for_node("node-4")
    copies_to_me = [e for e in events if e.copy_to is not None and e.copy_to.id == "node-4"]
    assert copies_to_me and all(e.copy_from for e in copies_to_me)  # told where to copy from
    assert c.kits["node-4"].state.to_dict() == c.kits["node-1"].state.to_dict()


def test_a_node_far_behind_restores_the_cluster_state_from_a_snapshot():
    c = _cluster(SMALL)
    c.net.crash("node-3", synced=True)
    c.add_node("node-4")
    assert c.start("node-4").ok
    for _ in range(8):
        c.submit("node-1", rebalance_command())
    leader = c.net.nodes[c.net.leader()].raft
    assert leader.snapshot is not None and leader.log.offset > 1
    epoch = c.kits["node-1"].state.epoch
    c.net.restart("node-3")
    assert c.run_until(lambda: c.kits["node-3"].state.epoch == epoch, 100)
    assert c.net.nodes["node-3"].snapshots_installed >= 1
    assert c.kits["node-3"].state.to_dict() == c.kits["node-1"].state.to_dict()
    assert c.kits["node-3"].get_partition("user:123") == c.kits["node-1"].get_partition("user:123")


def test_a_restart_restores_the_snapshot_then_replays_only_the_tail():
    c = _cluster(SMALL)
    for _ in range(8):
        c.submit("node-2", rebalance_command())
    applied_before = c.kits["node-2"].commands_applied
    snap_index = c.net.nodes["node-2"].storage.snapshot().meta.index
    assert snap_index > 0
    c.net.crash("node-2", synced=True)
    c.net.restart("node-2")
    c.run_until(lambda: c.kits["node-2"].state.epoch == c.kits["node-1"].state.epoch, 50)
    assert c.kits["node-2"].state.to_dict() == c.kits["node-1"].state.to_dict()
    replayed = c.kits["node-2"].commands_applied - applied_before
    assert 0 <= replayed < applied_before  # not the whole history again
