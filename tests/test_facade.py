"""The ClusterKit facade over the in-memory cluster: options, the seed's API, hooks."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from clusterkit.cluster_state import ClusterConfig, PartitionChange, confirm_command, fail_command
from clusterkit.facade import ClusterKit, ConfigError, Options
from clusterkit.mem.cluster import MemCluster

IDS = [f"node-{i}" for i in range(1, 6)]


def _opts(nid: str) -> Options:
    i = int(nid.split("-")[1])
    return Options(node_id=nid, http_addr=f":{8079 + i}", join_addr="" if i == 1 else "127.0.0.1:8080",
                   replication_factor=2)


def test_options_defaults_and_derivations() -> None:
    o = Options(node_id="node-1", http_addr=":8080").resolved()
    assert (o.node_name, o.raft_addr, o.bootstrap) == ("Server-1", "127.0.0.1:9001", True)
    assert (o.data_dir, o.cluster_name, o.partition_count, o.replication_factor) == (
        "./clusterkit-data", "clusterkit-cluster", 16, 3)
    o = Options(node_id="db-a", http_addr="10.0.0.5:8081", join_addr="10.0.0.4:8080").resolved()
    assert (o.node_name, o.raft_addr, o.bootstrap) == ("db-a", "10.0.0.5:9002", False)
    assert Options(node_id="n", http_addr="[::1]:8080").resolved().raft_addr == "[::1]:9001"
    assert Options(node_id="n", http_addr=":8080", raft_addr="h:7000").resolved().raft_addr == "h:7000"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node_id": "", "http_addr": ":8080"}, "node_id is required"),
        ({"node_id": "n", "http_addr": ""}, "http_addr is required"),
        ({"node_id": "n", "http_addr": "localhost"}, "host:port"),
        ({"node_id": "n", "http_addr": ":99999"}, "1..65535"),
        ({"node_id": "n", "http_addr": ":65000"}, "set raft_addr"),
        ({"node_id": "n", "http_addr": ":8080", "partition_count": 0}, "partition_count"),
        ({"node_id": "n", "http_addr": ":8080", "hash_algorithm": "sha1"}, "unknown hash"),
        ({"node_id": "n", "http_addr": ":8080", "copy_timeout_ticks": -1}, "copy_timeout_ticks"),
        ({"node_id": "n", "http_addr": ":8080", "fail_after_ticks": 1.5}, "fail_after_ticks"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Options(**kwargs).resolved()


def _running(n: int = 4, seed: int = 3) -> MemCluster:
    c = MemCluster(IDS, seed=seed, options=_opts)
    c.elect()
    for nid in IDS[:n]:
        assert c.start(nid).ok
    return c


def _confirm_everything(c: MemCluster) -> None:
    state = c.kits["node-1"].state
    pending = [(p, o) for p in range(len(state.owners)) for o in state.incoming(p)]
    for p, o in pending:
        c.submit(o, confirm_command(p, o))


def test_the_seed_api_agrees_on_every_node() -> None:
    c = _running()
    _confirm_everything(c)
    kits = [c.kits[n] for n in IDS[:4]]
    part = kits[0].get_partition("user:123")
    assert part.id == "partition-0"  # the Go vector
    for kit in kits:
        same = kit.get_partition("user:123")
        assert same == part
        assert kit.get_primary(part).id == part.primary
        assert [n.id for n in kit.get_nodes(part)] == [part.primary, *part.replicas]
        assert kit.is_primary(part) == (kit.my_node_id() == part.primary)
        assert kit.is_replica(part) == (kit.my_node_id() in part.replicas)
        stats = kit.partition_stats()
        assert sum(stats.partitions_per_node.values()) == 16
        assert set(stats.partitions_per_node.values()) == {4}  # balanced: 16 over 4
        assert len(kit.partitions_for_node()) == 8  # 16 * RF 2 / 4
    assert kits[1].get_primary("partition-0").api_addr.startswith(":80")
    with pytest.raises(KeyError):
        kits[0].get_primary("partition-99")


def test_hooks_fire_on_every_node_and_late_hooks_see_later_changes() -> None:
    c = MemCluster(IDS, seed=5, options=_opts)
    c.elect()
    seen: dict[str, list] = {n: [] for n in IDS}
    for nid in IDS:
        kit = c.kits[nid]
        kit.on_partition_change(lambda e, nid=nid: seen[nid].append(("change", e.partition, e.copy_to and e.copy_to.id)))
        kit.on_node_join(lambda e, nid=nid: seen[nid].append(("join", e.node.id)))
        kit.on_node_leave(lambda e, nid=nid: seen[nid].append((e.kind, e.node.id)))
        kit.on_rebalance_start(lambda e, nid=nid: seen[nid].append(("start", e.reason)))
        kit.on_rebalance_complete(lambda e, nid=nid: seen[nid].append(("complete", e.reason)))
    for nid in IDS[:3]:
        c.start(nid)
    _confirm_everything(c)
    late: list[PartitionChange] = []
    c.kits["node-2"].on_partition_change(late.append)
    c.start("node-4")
    c.submit("node-1", fail_command("node-3"))
    _confirm_everything(c)
    reference = seen["node-1"]
    assert ("join", "node-4") in reference and ("failure", "node-3") in reference
    assert ("start", "join") in reference and ("complete", "join") in reference
    assert any(kind == "change" and to == "node-4" for kind, _, to in [x for x in reference if len(x) == 3])
    for nid in IDS:  # every node saw the same events in the same order (node-5 too: it applies the log)
        assert seen[nid] == reference
    assert late and all(e.epoch > 3 for e in late)


def test_a_raising_hook_is_logged_and_the_node_keeps_working(caplog) -> None:
    c = MemCluster(IDS, seed=7, options=_opts)
    c.elect()
    calls: list[str] = []

    def broken(event):
        raise RuntimeError("application bug")

    for nid in IDS:
        c.kits[nid].on_partition_change(broken)
        c.kits[nid].on_partition_change(lambda e, nid=nid: calls.append(nid))
    with caplog.at_level(logging.ERROR, logger="clusterkit"):
        for nid in IDS[:3]:
            assert c.start(nid).ok
    assert "application bug" in caplog.text
    assert c.kits["node-2"].hook_errors > 0
    assert set(calls) == set(IDS)  # the hook after the broken one still ran, everywhere
    assert c.kits["node-3"].partition_stats().total_partitions == 16


def test_unconfirmed_copies_time_out_on_the_leader() -> None:
    def opts(nid: str) -> Options:
        return Options(**{**_opts(nid).__dict__, "copy_timeout_ticks": 20})

    c = MemCluster(IDS, seed=11, options=opts)
    c.elect()
    for nid in IDS[:3]:
        c.start(nid)
    assert c.run_until(lambda: not c.kits["node-1"].state.migrating, 200)


def test_a_node_with_another_config_cannot_join() -> None:
    c = _running(2)
    kit = c.kits["node-3"]
    other = Options(node_id="node-3", http_addr=":8082", join_addr="x:1", partition_count=64)
    res = c.submit("node-3", ClusterKit(other).join_command())
    assert not res.ok and "partition_count 64" in res.error
    assert kit.check_join(ClusterConfig(partition_count=64, replication_factor=2).to_wire())
    assert "node-3" not in c.kits["node-1"].state.nodes


def test_join_until_active_proposes_only_for_a_node_the_cluster_state_lacks() -> None:
    """The one implementation both drivers' joining loops call (net's membership step, the
    simulator's joining process): nothing before the cluster has a config, a join while this node
    is missing, nothing once it is listed, active, leaving or failed."""
    c = MemCluster(IDS[:3], seed=5, options=_opts)
    c.elect()
    kit = c.kits["node-3"]
    assert not kit.join_until_active()  # no cluster state yet: the bootstrap comes first
    assert c.start("node-1").ok
    assert c.run_until(lambda: kit.state.config is not None, 50)
    assert kit.join_until_active()  # forwarded to the leader
    assert c.run_until(lambda: "node-3" in c.kits["node-1"].state.nodes and "node-3" in kit.state.nodes, 50)
    assert kit.state.nodes["node-3"].status == "active"
    assert not kit.join_until_active()
    assert c.submit("node-1", fail_command("node-3")).ok
    assert c.run_until(lambda: kit.state.nodes["node-3"].status == "failed", 50)
    assert not kit.join_until_active()  # the leader's detector lets a failed node back, not the node


def test_the_leader_marks_a_silent_node_failed_and_lets_it_rejoin() -> None:
    def opts(nid: str) -> Options:
        return replace(_opts(nid), fail_after_ticks=20)

    c = MemCluster(IDS[:4], seed=6, options=opts)
    c.elect()
    for nid in IDS[:4]:
        assert c.start(nid).ok
    victim = next(n for n in IDS[:4] if not c.kits[n].is_leader)
    c.net.crash(victim, synced=True)
    leader = next(n for n in IDS[:4] if c.kits[n].is_leader)
    status = lambda: c.kits[leader].state.nodes[victim].status  # noqa: E731
    assert c.run_until(lambda: status() == "failed", 60)
    assert victim not in {o for owners in c.kits[leader].state.owners for o in owners}  # its partitions moved
    c.net.restart(victim)
    assert c.run_until(lambda: status() == "active", 60)  # heard again: it rejoins
