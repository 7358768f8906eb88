"""The KV store on every simulated node: its messages on the simulated network, its data on the
simulated disk.

A thin driver, as the TCP node is: it hands each node's
:class:`~clusterkit.kv.server.KVServer` its messages and ticks, waits for the
disk's fsync before the answers leave (a crash loses what wasn't synced),
and rebuilds the server from what was synced when a node restarts. Clients
are endpoints on the same network (outside the partitions, as Jepsen's are).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusterkit.kv.data import KVData, LogEntry
from clusterkit.kv.messages import Message, decode, encode
from clusterkit.kv.records import Record, Version
from clusterkit.kv.server import KVServer, ServerConfig

from .cluster import SimCluster, SimNode


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
class NodeKV:
    server: KVServer
    synced: list[LogEntry] = field(default_factory=list)  # survives a crash
    flushing: bool = False


class SimKV:
    """A :class:`~.cluster.DataLayer`: one KV server per node."""

    c: SimCluster

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.nodes: dict[str, NodeKV] = {}
        self.endpoints: dict[str, Callable[[str, Message], None]] = {}  # clients
        self.syncs = 0
        self.collected: dict[tuple[int, str], Version] = {}  # the newest tombstone collected, per key

    def bind(self, cluster: SimCluster) -> None:
        self.c = cluster

    # ------------------------------------------------------------ DataLayer
    def attach(self, node: SimNode) -> None:
        self.nodes[node.id] = NodeKV(self._server(node, self._data()))
        # One forwarder per facade: each life's server gets the events.
        node.kit.on_partition_change(lambda e, nid=node.id: self._changed(nid, e))

    def _server(self, node: SimNode, data: KVData, incarnation: int = 0) -> KVServer:
        server = KVServer(node.kit, data, self.config, hooks=False, incarnation=incarnation)
        server.answer_early = True
        return server

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
        synced = KVData.replay(old.synced).compacted()
        server = self._server(node, self._data(synced), node.generation)
        self.nodes[node.id] = NodeKV(server, synced)

    def wipe(self, node: SimNode) -> None:
        """The node's disk is lost: its KV data with it (restart() then starts from nothing)."""
        self.nodes[node.id].synced = []

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
        kv = self.nodes[node.id]
        # As the TCP node does: answers that report only synced data leave at once (answer_early).
        self._send_all(node.id, kv.server.take_early())
        if kv.flushing:
            return  # the flush under way sends this output too, once its sync is done
        # The answers taken with the entries wait for their sync; later ones wait for the next.
        data = kv.server.data
        entries, out, lsn = data.take_unsynced(), kv.server.take_outbox(), data.lsn
        if not entries:
            self._send_all(node.id, out)
            return
        kv.flushing = True
        generation = node.generation
        ev = self.c.env.timeout(self.c.fsync.sample(self.c.rng) + max(0.0, node.stall_until - self.c.env.now))
        ev.callbacks.append(lambda _e: self._synced(node, kv, generation, entries, out, lsn))

    def _synced(self, node: SimNode, kv: NodeKV, generation: int, entries: list[LogEntry], out: list[Any],
                lsn: int) -> None:
        if node.generation != generation or self.nodes.get(node.id) is not kv:
            return  # crashed before the sync: the entries and the answers died with the process
        kv.synced.extend(entries)
        kv.server.data.mark_synced(lsn)
        self.syncs += 1
        kv.flushing = False
        self._send_all(node.id, out)
        self._flush(node)

    def _send_all(self, src: str, out: list[tuple[str, Message]]) -> None:
        for dst, msg in out:
            self.send(src, dst, msg)

    # ------------------------------------------------------------ checks
    def holders_of(self, partition: int, key: str) -> dict[str, Any]:
        """Each node's record of ``key`` (live nodes only)."""
        return {nid: kv.server.data.get(partition, key) for nid, kv in self.nodes.items()
                if self.c.nodes[nid].alive}
