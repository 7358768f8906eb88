"""The smart client's map, read from ``/cluster`` as a node publishes it: failed holders included."""

from __future__ import annotations

from types import SimpleNamespace

from clusterkit.cluster_state import ClusterConfig, ClusterState, NodeInfo, bootstrap_command, confirm_command, fail_command, join_command
from clusterkit.facade import ClusterKit, Options
from clusterkit.kv.quorum import Placement, Quorums
from net.http import Api
from clusterkit.net.client import Topology

CFG = ClusterConfig(partition_count=8, replication_factor=3)


def _published(state: ClusterState) -> tuple[dict, ClusterKit]:
    """``/cluster`` exactly as net/http.py builds it, from a node whose kit holds ``state``."""
    kit = ClusterKit(Options(node_id="n1", http_addr="127.0.0.1:1", partition_count=8, replication_factor=3))
    kit.state = state
    api = SimpleNamespace(node=SimpleNamespace(kit=kit, options=kit.options, registers={}))
    api._node_doc = lambda info: Api._node_doc(api, info)
    api._partitions = lambda: Api._partitions(api)
    return Api.cluster_doc(api), kit


def test_the_client_counts_failed_holders_as_the_node_does() -> None:
    s = ClusterState()
    assert s.apply(bootstrap_command(CFG, NodeInfo("n1", api_addr="127.0.0.1:1"))).ok
    for i in range(2, 6):
        assert s.apply(join_command(CFG, NodeInfo(f"n{i}", api_addr=f"127.0.0.1:{i}"))).ok
        for p in range(8):
            for o in s.incoming(p):
                assert s.apply(confirm_command(p, o)).ok
    a, b, c = s.owners[0]
    assert s.apply(fail_command(b, by_detector=True)).ok and s.apply(fail_command(c, by_detector=True)).ok
    doc, kit = _published(s)
    topo = Topology.from_doc(doc, None)
    for p in range(8):
        assert topo.placements[p] == Placement.of(kit.partition(p)), p
    here = topo.placements[0]
    assert set(here.failed) == {b, c} and set(here.holders) >= {a, b, c}
    q = Quorums(3)
    # a write acknowledged by the one live old copy and the new owners is not enough: a quorum of
    # the old copies (failed ones included) must hold it before their copies stop counting
    assert not here.write_done({a, *here.incoming}, q)
    assert here.write_done({a, b, *here.owners}, q)
