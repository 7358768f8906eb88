"""The KV store on every simulated node: its messages on the simulated network, its data on the
simulated disk.

A thin driver, as the TCP node is: it hands each node's
:class:`~clusterkit.kv.server.KVServer` its messages and ticks; the core's
:class:`~clusterkit.host.kv_pipeline.KVPipeline` (the TCP node's too) logs,
syncs and sends, on a :class:`MemoryKVLog` whose records are written after a
simulated fsync's delay (:class:`~.cluster.SimSyncs`: a crash meanwhile loses
the record); a restarted node's server is rebuilt from what was written.
Clients are endpoints on the same network (outside the partitions, as
Jepsen's are).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clusterkit.host.kv_pipeline import KVPipeline
from clusterkit.kv.data import KVData, LogEntry
from clusterkit.kv.messages import Message, decode, encode
from clusterkit.kv.records import Record, Version
from clusterkit.kv.server import KVServer, ServerConfig

from .cluster import SimCluster, SimNode, SimSyncs


class _AuditedData(KVData):
    """A node's data that also tells the end checks which tombstones it collected: once gone from
    every copy, a delete still counts as the newest version of its key (the simulator's view)."""

    audit: dict[tuple[int, str], Version]

    def collect(self, partition: int, key: str, tombstone: Record) -> bool:
        done = super().collect(partition, key, tombstone)
        if done:
            was = self.audit.get((partition, key))
            self.audit[(partition, key)] = max(was, tombstone.version) if was is not None else tombstone.version
        return done


@dataclass
class MemoryKVLog:
    """A node's KV log on the simulated disk: a record's entries are there once it is written (a
    crash before loses the whole record, as a real log's restart cuts a torn one)."""

    synced: list[LogEntry] = field(default_factory=list)  # survives a crash
    records: int = 0

    def encode_record(self, entries: list[LogEntry]) -> list[LogEntry]:
        return entries

    def write_record(self, record: list[LogEntry]) -> None:
        self.synced.extend(record)
        self.records += 1

    def wants_rewrite(self) -> bool:
        return False  # (a restart replays it compacted: see SimKV.restart)

    def rewrite(self, entries: Iterable[Any]) -> int:
        self.synced = list(entries)
        return len(self.synced)


@dataclass
class NodeKV:
    server: KVServer
    disk: MemoryKVLog
    pipeline: KVPipeline


class SimKV:
    """A :class:`~.cluster.DataLayer`: one KV server per node."""

    c: SimCluster

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.nodes: dict[str, NodeKV] = {}
        self.endpoints: dict[str, Callable[[str, Message], None]] = {}  # clients
        self.collected: dict[tuple[int, str], Version] = {}  # the newest tombstone collected, per key

    def bind(self, cluster: SimCluster) -> None:
        self.c = cluster

    # ------------------------------------------------------------ DataLayer
    def attach(self, node: SimNode) -> None:
        self.nodes[node.id] = self._node_kv(node, self._server(node, self._data()), MemoryKVLog())
        # One forwarder per facade: each life's server gets the events.
        node.kit.on_partition_change(lambda e, nid=node.id: self._changed(nid, e))

    def _server(self, node: SimNode, data: KVData, incarnation: int = 0) -> KVServer:
        server = KVServer(node.kit, data, self.config, hooks=False, incarnation=incarnation)
        server.answer_early = True
        return server

    def _node_kv(self, node: SimNode, server: KVServer, disk: MemoryKVLog) -> NodeKV:
        route = lambda out: self._send_all(node.id, out)  # noqa: E731
        return NodeKV(server, disk, KVPipeline(server, disk, route, SimSyncs(self.c, node)))

    def _data(self, synced: list[LogEntry] | None = None) -> KVData:
        data = _AuditedData.replay(synced) if synced else _AuditedData()
        data.audit = self.collected
        return data

    def _changed(self, nid: str, event: Any) -> None:
        self.nodes[nid].server.on_partition_change(event)

    def restart(self, node: SimNode) -> None:
        old = self.nodes[node.id]
        # As if its log had been rewritten from the live data before the crash, as a real node's
        # is now and then: a compacted log replays to fewer changes than the node made, so change
        # numbers (pull cursors) from its earlier life mean nothing in the new one.
        synced = KVData.replay(old.disk.synced).compacted()
        server = self._server(node, self._data(synced), node.generation)
        self.nodes[node.id] = self._node_kv(node, server, MemoryKVLog(synced))

    def wipe(self, node: SimNode) -> None:
        """The node's disk is lost: its KV data with it (restart() then starts from nothing)."""
        self.nodes[node.id].disk.synced = []

    def tick(self, node: SimNode) -> None:
        server = self.nodes[node.id].server
        before = server.stats.migrations
        server.tick()
        self.c.counters.migrations += server.stats.migrations - before  # copies made and confirmed
        self._flush(node)

    def deliver(self, node: SimNode, src: str, data: Any) -> None:
        server = self.nodes[node.id].server
        before = server.stats.migrations
        server.handle(src, decode(data) if self.c.codec else data)
        self.c.counters.migrations += server.stats.migrations - before
        self._flush(node)

    # ------------------------------------------------------------ the network
    def send(self, src: str, dst: str, msg: Message) -> None:
        self.c.send_data(src, dst, encode(msg) if self.c.codec else msg, self._arrive)

    def _arrive(self, src: str, dst: str, data: Any) -> None:
        endpoint = self.endpoints.get(dst)
        if endpoint is not None:
            self.c.counters.messages_delivered += 1
            endpoint(src, decode(data) if self.c.codec else data)
        else:
            self.c.deliver_data(src, dst, data)

    # ------------------------------------------------------------ the disk
    def _flush(self, node: SimNode) -> None:
        self.nodes[node.id].pipeline.kick()

    def _send_all(self, src: str, out: list[tuple[str, Message]]) -> None:
        for dst, msg in out:
            self.send(src, dst, msg)

    # ------------------------------------------------------------ checks
    def holders_of(self, partition: int, key: str) -> dict[str, Any]:
        """Each node's record of ``key`` (live nodes only)."""
        return {nid: kv.server.data.get(partition, key) for nid, kv in self.nodes.items()
                if self.c.nodes[nid].alive}
