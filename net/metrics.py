"""``/metrics``: a node's numbers in the Prometheus text format, through prometheus-client.

One registry per node (no process-wide state), filled at scrape time from
the node itself, so the numbers are never stale and a test with several
nodes in one process keeps them apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .node import NetNode

FSYNC_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


def _histogram(name: str, doc: str, samples: list[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    counts = []
    for bound in buckets:
        counts.append((str(bound), sum(1 for s in samples if s <= bound)))
    counts.append(("+Inf", len(samples)))
    return HistogramMetricFamily(name, doc, buckets=counts, sum_value=sum(samples))


class _Collector:
    def __init__(self, node: NetNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        raft = node.host.raft if node.host is not None else None
        yield GaugeMetricFamily("clusterkit_up", "1 while the Raft node runs", value=1 if raft else 0)
        if raft is not None:
            yield GaugeMetricFamily("clusterkit_raft_term", "current Raft term", value=raft.term)
            yield GaugeMetricFamily("clusterkit_raft_commit_index", "highest committed log index", value=raft.log.committed)
            yield GaugeMetricFamily("clusterkit_raft_applied_index", "highest applied log index", value=raft.log.applied)
            yield GaugeMetricFamily("clusterkit_raft_is_leader", "1 on the leader", value=1 if raft.is_leader else 0)
            yield CounterMetricFamily("clusterkit_raft_dropped_proposals", "proposals refused or lost in forwarding",
                                      value=raft.dropped_proposals)
        yield CounterMetricFamily("clusterkit_raft_elections_won", "elections this node won", value=node.elections)
        transport = node.transport
        if transport is not None:
            sent = CounterMetricFamily("clusterkit_peer_messages_sent", "Raft messages sent", labels=["peer"])
            received = CounterMetricFamily("clusterkit_peer_messages_received", "Raft messages received", labels=["peer"])
            bytes_sent = CounterMetricFamily("clusterkit_peer_bytes_sent", "bytes sent", labels=["peer"])
            bytes_received = CounterMetricFamily("clusterkit_peer_bytes_received", "bytes received", labels=["peer"])
            dropped = CounterMetricFamily("clusterkit_peer_messages_dropped", "messages dropped (peer unreachable)",
                                          labels=["peer"])
            for peer, s in sorted(transport.stats.items()):
                sent.add_metric([peer], s.messages_sent)
                received.add_metric([peer], s.messages_received)
                bytes_sent.add_metric([peer], s.bytes_sent)
                bytes_received.add_metric([peer], s.bytes_received)
                dropped.add_metric([peer], s.dropped)
            yield from (sent, received, bytes_sent, bytes_received, dropped)
            errors = CounterMetricFamily("clusterkit_frame_errors", "connections closed for a bad frame", labels=["reason"])
            for reason, n in sorted(transport.frame_errors.items()):
                errors.add_metric([reason], n)
            yield errors
        yield _histogram("clusterkit_fsync_seconds", "time to sync a Ready batch to disk",
                         list(node.fsync_seconds), FSYNC_BUCKETS)
        state = node.kit.state
        yield GaugeMetricFamily("clusterkit_cluster_epoch", "cluster-state epoch", value=state.epoch)
        if state.config is not None:
            mine = node.kit.partitions_for_node()
            owned = GaugeMetricFamily("clusterkit_partitions_owned", "partitions this node owns", labels=["role"])
            owned.add_metric(["primary"], sum(1 for p in mine if p.primary == node.id))
            owned.add_metric(["replica"], sum(1 for p in mine if node.id in p.replicas))
            yield owned
            yield GaugeMetricFamily("clusterkit_migrations_in_flight", "partition copies not yet confirmed",
                                    value=sum(len(state.incoming(p)) for p in range(len(state.owners))))
        yield CounterMetricFamily("clusterkit_hook_errors", "hooks that raised", value=node.kit.hook_errors)


class NodeMetrics:
    def __init__(self, node: NetNode) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(node))  # type: ignore[arg-type]

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
