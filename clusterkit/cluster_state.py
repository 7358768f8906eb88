"""The cluster state: the Raft FSM every node applies in log order.

Holds the nodes, the config (fixed at bootstrap), the partition map, which
nodes hold each partition's data, and an epoch that increases with every
change. It changes only by applying committed commands, so every node that
has applied the same prefix of the log has the same state.

Migration safety: ``owners[p]`` is where partition p should live;
``holders[p]`` lists the nodes that hold a complete copy (old owners first,
the old primary leading). A new owner is *incoming* until the application
confirms its copy (a ``confirm`` command, sent by the application or by the
facade's timeout); until every owner of p holds the data, the old owners
stay holders, so p never has fewer live copies than before the change. The
acting primary is the new primary once it holds the data, else the first
live holder.

A node marked failed stays among the holders, not counted as live, until
every new owner has confirmed its copy: a failure detector can't tell a dead
node from one cut off, and a cut-off copy may hold the only acknowledged
writes of a quorum (two of three owners marked failed at once would otherwise
take those writes with them). A data layer counts failed holders in its
quorums, so it copies from a quorum of the old copies, never from what
happens to be reachable. Only an operator's ``leave`` of a failed node
(it is gone for good, with its disk) drops its copies at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import chain
from types import MappingProxyType
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from .partitioning.assigner import assign
from .partitioning.hashing import HashConfig

ACTIVE = "active"
LEAVING = "leaving"  # asked to leave; stays a copy source until its data has moved
FAILED = "failed"  # marked failed; a holder until its partitions are copied elsewhere
STATUSES = (ACTIVE, LEAVING, FAILED)

SNAPSHOT_VERSION = 1

# Bounds on a node's fields: they arrive in commands and snapshots (and, through a join, from outside).
MAX_NODE_ID = 128
MAX_NODE_NAME = 256
MAX_ZONE = 128
MAX_ADDR = 300  # host:port: a 253-character DNS name, brackets around an IPv6 address, the port
# host:port; host empty (":8080", every interface), a name or IPv4 address, or [IPv6]; port 1..65535.
_ADDR = re.compile(r"(?:|[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]):([0-9]{1,5})")


class CommandError(ValueError):
    """A command that can't be applied (malformed, or refused by the state)."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CommandError(message)


def _str(doc: Mapping[str, Any], key: str, *, optional: bool = False, limit: int | None = None) -> Any:
    value = doc.get(key)
    if value is None and optional:
        return None
    _require(isinstance(value, str), f"{key!r} must be a string, got {value!r}")
    if limit is not None:
        _require(len(value) <= limit, f"{key!r} is {len(value)} characters long, at most {limit} allowed")
    return value


def _addr(doc: Mapping[str, Any], key: str) -> str:
    """An optional ``host:port`` address field ("" when absent)."""
    value = _str(doc, key, optional=True, limit=MAX_ADDR) or ""
    if value:
        m = _ADDR.fullmatch(value)
        _require(m is not None and 0 < int(m.group(1)) < 65536, f"{key!r} must be host:port, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the cluster state knows it. Its addresses are written only by the node's own join
    (the cluster-state command it proposes through Raft), never by a client: ``kv_addr`` is where
    its KV store listens (empty: none, or not published yet), what the SDK and the other nodes
    send its KV traffic to."""

    id: str
    name: str = ""
    raft_addr: str = ""
    api_addr: str = ""
    zone: str | None = None
    status: str = ACTIVE
    kv_addr: str = ""

    def to_wire(self) -> dict[str, Any]:
        doc = {
            "id": self.id,
            "name": self.name,
            "raft_addr": self.raft_addr,
            "api_addr": self.api_addr,
            "zone": self.zone,
            "status": self.status,
        }
        if self.kv_addr:  # (absent when empty: the bytes of a state without KV stores stay as they were)
            doc["kv_addr"] = self.kv_addr
        return doc

    @classmethod
    def from_wire(cls, doc: Any) -> NodeInfo:
        _require(isinstance(doc, dict), f"a node must be a map, got {type(doc).__name__}")
        node_id = _str(doc, "id", limit=MAX_NODE_ID)
        _require(bool(node_id), "a node id must not be empty")
        status = doc.get("status", ACTIVE)
        _require(type(status) is str and status in STATUSES, f"unknown node status {status!r}")
        return cls(
            id=node_id,
            name=_str(doc, "name", optional=True, limit=MAX_NODE_NAME) or "",
            raft_addr=_addr(doc, "raft_addr"),
            api_addr=_addr(doc, "api_addr"),
            zone=_str(doc, "zone", optional=True, limit=MAX_ZONE),
            status=status,
            kv_addr=_addr(doc, "kv_addr"),
        )


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    cluster_name: str = "clusterkit-cluster"
    partition_count: int = 16
    replication_factor: int = 3
    hash_algorithm: str = "md5"

    def __post_init__(self) -> None:
        if not isinstance(self.cluster_name, str) or not self.cluster_name:
            raise ValueError(f"cluster name must be a non-empty string, got {self.cluster_name!r}")
        for name in ("partition_count", "replication_factor"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.hash_config  # validates the algorithm

    @property
    def hash_config(self) -> HashConfig:
        return HashConfig(algorithm=self.hash_algorithm, modulo=self.partition_count)

    def to_wire(self) -> dict[str, Any]:
        return {
            "cluster_name": self.cluster_name,
            "partition_count": self.partition_count,
            "replication_factor": self.replication_factor,
            "hash_algorithm": self.hash_algorithm,
        }

    @classmethod
    def from_wire(cls, doc: Any) -> ClusterConfig:
        _require(isinstance(doc, dict), "a config must be a map")
        try:
            return cls(
                cluster_name=doc.get("cluster_name"),
                partition_count=doc.get("partition_count"),
                replication_factor=doc.get("replication_factor"),
                hash_algorithm=doc.get("hash_algorithm"),
            )
        except (ValueError, TypeError) as exc:
            raise CommandError(f"bad config: {exc}") from None

    def conflicts(self, other: ClusterConfig) -> list[str]:
        """Human-readable differences, empty when the configs agree."""
        return [
            f"{name} {getattr(other, name)!r} != cluster's {getattr(self, name)!r}"
            for name in ("cluster_name", "partition_count", "replication_factor", "hash_algorithm")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True, slots=True)
class PartitionChange:
    """Partition ``partition`` needs (or got) a new owner, or a new primary.

    ``copy_to`` is the node that must copy the data (None when only the
    primary moved between nodes that hold it); ``copy_from`` lists live
    nodes holding a complete copy, the best source first.
    """

    partition: str
    number: int
    copy_from: tuple[NodeInfo, ...]
    copy_to: NodeInfo | None
    old_primary: str | None
    new_primary: str
    reason: str
    epoch: int


@dataclass(frozen=True, slots=True)
class NodeEvent:
    kind: str  # "join" | "leave" | "failure"
    node: NodeInfo
    epoch: int


@dataclass(frozen=True, slots=True)
class RebalanceEvent:
    kind: str  # "start" | "complete"
    reason: str
    epoch: int
    moves: int  # copies to make (start) or made (complete)


Event = PartitionChange | NodeEvent | RebalanceEvent


@dataclass(frozen=True, slots=True)
class ApplyResult:
    ok: bool
    epoch: int
    error: str | None = None
    events: tuple[Event, ...] = ()


def encode_command(op: str, **fields: Any) -> bytes:
    return msgpack.packb({"op": op, **fields}, use_bin_type=True)


@dataclass
class ClusterState:
    config: ClusterConfig | None = None
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    owners: list[tuple[str, ...]] = field(default_factory=list)
    holders: list[tuple[str, ...]] = field(default_factory=list)
    epoch: int = 0
    # Per partition, the epoch at which its owners or holders last changed: a data layer fences
    # requests made against an older placement of that partition (and only that partition).
    changed: list[int] = field(default_factory=list)
    rebalance_reason: str | None = None  # set while copies are outstanding
    rebalance_moves: int = 0
    # Nodes a leader's failure detector marked failed (not an operator): only these it lets
    # rejoin by itself when they are heard again.
    detected: set[str] = field(default_factory=set)

    # ------------------------------------------------------------ queries
    def active(self) -> list[str]:
        return sorted(n for n, info in self.nodes.items() if info.status == ACTIVE)

    def live_holders(self, p: int) -> list[str]:
        return [h for h in self.holders[p] if h in self.nodes and self.nodes[h].status != FAILED]

    def failed_holders(self, p: int) -> list[str]:
        """Holders marked failed: their copies still count until every new owner has one."""
        return [h for h in self.holders[p] if h in self.nodes and self.nodes[h].status == FAILED]

    def incoming(self, p: int) -> list[str]:
        return [o for o in self.owners[p] if o not in self.holders[p]]

    def outgoing(self, p: int) -> list[str]:
        return [h for h in self.live_holders(p) if h not in self.owners[p]]

    def acting_primary(self, p: int) -> str | None:
        """The node to send partition p's writes to: the new primary once it holds the data."""
        if not self.owners:
            return None
        target = self.owners[p][0]
        if target in self.holders[p]:
            return target
        live = self.live_holders(p)
        return live[0] if live else target

    def serving_nodes(self, p: int) -> list[str]:
        """Acting primary first, then every other owner and every old owner still holding data."""
        primary = self.acting_primary(p)
        out = [primary] if primary is not None else []
        for node in [*self.owners[p], *self.outgoing(p)]:
            if node not in out:
                out.append(node)
        return out

    @property
    def migrating(self) -> bool:
        return any(self.incoming(p) for p in range(len(self.owners)))

    # ------------------------------------------------------------ commands
    def apply(self, data: bytes) -> ApplyResult:
        """Apply one committed command. Never raises: bad commands return an error result."""
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # noqa: BLE001 - any undecodable entry is refused, not fatal
            return ApplyResult(False, self.epoch, f"undecodable command: {exc}")
        try:
            _require(isinstance(doc, dict), "a command must be a map")
            op = doc.get("op")
            handler = _HANDLERS.get(op) if isinstance(op, str) else None
            _require(handler is not None, f"unknown command {op!r}")
            _require(op == "bootstrap" or self.config is not None, "the cluster is not bootstrapped yet")
            before = (self.epoch, list(self.owners), list(self.holders))
            events = handler(self, doc)
        except CommandError as exc:
            return ApplyResult(False, self.epoch, str(exc))
        if self.epoch != before[0]:
            self._mark_changed(before[1], before[2])
        return ApplyResult(True, self.epoch, None, tuple(events))

    def _mark_changed(self, owners: list[tuple[str, ...]], holders: list[tuple[str, ...]]) -> None:
        if len(self.changed) != len(self.owners):
            self.changed = [self.epoch] * len(self.owners)  # bootstrap: every partition is new
            return
        for p, (o, h) in enumerate(zip(self.owners, self.holders)):
            if o != owners[p] or h != holders[p]:
                self.changed[p] = self.epoch

    def _bootstrap(self, doc: dict[str, Any]) -> list[Event]:
        config = ClusterConfig.from_wire(doc.get("config"))
        node = NodeInfo.from_wire(doc.get("node"))
        if self.config is not None:
            problems = self.config.conflicts(config)
            _require(not problems, "already bootstrapped with another config: " + "; ".join(problems))
            return []  # a repeated bootstrap of the same cluster changes nothing
        self.config = config
        self.nodes = {node.id: replace(node, status=ACTIVE)}
        self.owners = list(assign([node.id], config.partition_count, config.replication_factor))
        self.holders = list(self.owners)  # fresh partitions are empty: every owner holds them
        self.epoch = 1
        return [NodeEvent("join", self.nodes[node.id], self.epoch)]

    def _join(self, doc: dict[str, Any]) -> list[Event]:
        assert self.config is not None
        node = NodeInfo.from_wire(doc.get("node"))
        config = ClusterConfig.from_wire(doc.get("config"))
        problems = self.config.conflicts(config)
        _require(not problems, f"node {node.id} has a conflicting config: " + "; ".join(problems))
        known = self.nodes.get(node.id)
        if known is not None and not node.kv_addr and known.kv_addr:
            node = replace(node, kv_addr=known.kv_addr)  # a join that doesn't name a KV address keeps it
        if known is not None and known.status == ACTIVE:
            same = (known.raft_addr, known.api_addr) == (node.raft_addr, node.api_addr)
            _require(same, f"node id {node.id} is already in use by {known.api_addr or known.raft_addr}")
            if node.kv_addr != known.kv_addr:
                # The node publishes (or moved) its KV store: only its own join says where it is.
                self.nodes[node.id] = replace(known, kv_addr=node.kv_addr)
                self.epoch += 1  # /cluster's ETag changes: clients fetch the new address
            return []  # a retried join, or a new KV address: no membership change, no hooks
        joined = replace(node, status=ACTIVE)
        self.nodes[node.id] = joined
        self.detected.discard(node.id)
        self.epoch += 1
        return [NodeEvent("join", joined, self.epoch), *self._reassign("join")]

    def _remove(self, doc: dict[str, Any], status: str) -> list[Event]:
        node_id = _str(doc, "node_id")
        known = self.nodes.get(node_id)
        _require(known is not None, f"unknown node {node_id!r}")
        assert known is not None
        if known.status == status:
            return []
        _require(
            known.status != ACTIVE or len(self.active()) > 1,
            f"{node_id} is the last active node; the cluster needs one",
        )
        told = self._pending_sources()
        if known.status == FAILED and status == LEAVING:
            self._drop_copies(node_id)  # an operator says a failed node is gone for good, disk and all
        self.nodes[node_id] = replace(known, status=status)
        if status == FAILED and doc.get("by_detector") is True:
            self.detected.add(node_id)
        self.epoch += 1
        kind = "leave" if status == LEAVING else "failure"
        events: list[Event] = [NodeEvent(kind, self.nodes[node_id], self.epoch)]
        events += self._reassign(kind, told)
        self._forget_departed()
        return events

    def _leave(self, doc: dict[str, Any]) -> list[Event]:
        return self._remove(doc, LEAVING)

    def _fail(self, doc: dict[str, Any]) -> list[Event]:
        return self._remove(doc, FAILED)

    def _rebalance(self, doc: dict[str, Any]) -> list[Event]:
        self.epoch += 1
        return self._reassign("rebalance")

    def _confirm(self, doc: dict[str, Any]) -> list[Event]:
        assert self.config is not None
        p = doc.get("partition")
        _require(type(p) is int and 0 <= p < self.config.partition_count, f"no partition {p!r}")
        node_id = _str(doc, "node_id")
        epoch = doc.get("epoch")
        _require(epoch is None or type(epoch) is int, "epoch must be an integer")
        if node_id not in self.incoming(p) or (epoch is not None and epoch != self.changed[p]):
            return []  # late or repeated: the node holds it already, no longer owns it, or copies again
        self.holders[p] = (*self.holders[p], node_id)
        if not self.incoming(p):
            # every owner holds the data: release the old owners
            self.holders[p] = self.owners[p]
        self.epoch += 1
        events: list[Event] = []
        self._forget_departed()
        if self.rebalance_reason is not None and not self.migrating:
            events.append(RebalanceEvent("complete", self.rebalance_reason, self.epoch, self.rebalance_moves))
            self.rebalance_reason, self.rebalance_moves = None, 0
        return events

    # ------------------------------------------------------------ helpers
    def _drop_copies(self, node_id: str) -> None:
        """Stop counting ``node_id``'s copies. A partition left with no copy at all starts again
        empty on its owners: what only that node held is lost, which the operator accepted."""
        self.detected.discard(node_id)
        for p, hs in enumerate(self.holders):
            if node_id in hs:
                self.holders[p] = tuple(h for h in hs if h != node_id) or self.owners[p]

    def _copy_sources(self, p: int) -> tuple[NodeInfo, ...]:
        return tuple(self.nodes[h] for h in self.live_holders(p))

    def _pending_sources(self) -> dict[tuple[int, str], tuple[NodeInfo, ...]]:
        """What each incoming owner was told to copy from."""
        return {(p, o): self._copy_sources(p) for p in range(len(self.owners)) for o in self.incoming(p)}

    def _reassign(self, reason: str, told: dict[tuple[int, str], tuple[NodeInfo, ...]] | None = None) -> list[Event]:
        """Recompute the map for the active nodes; report what must be copied where.

        An incoming owner is told again only when its copy sources changed.
        """
        assert self.config is not None
        cfg = self.config
        before_sources = told if told is not None else self._pending_sources()
        live = self.active()
        zones = {n: self.nodes[n].zone or "" for n in live}
        hold = [tuple(self.live_holders(p)) for p in range(cfg.partition_count)]
        failed = [tuple(self.failed_holders(p)) for p in range(cfg.partition_count)]
        new = assign(
            live,
            cfg.partition_count,
            cfg.replication_factor,
            self.owners,
            zones=zones if any(zones.values()) else None,
            holders=hold,
        )
        events: list[Event] = []
        moves = 0
        old_owners = self.owners
        self.owners = list(new)
        for p in range(cfg.partition_count):
            self.holders[p] = hold[p] + failed[p]
            if not self.incoming(p):
                # Nothing to copy: old live owners are released, but not failed ones: no new owner
                # copied from them, and they may hold writes the owners lack (the owners shrank
                # below RF, so none was brought in).
                self.holders[p] = tuple(new[p]) + tuple(f for f in failed[p] if f not in new[p])
            old_primary = old_owners[p][0] if old_owners[p] else None
            sources = self._copy_sources(p)
            changed = False
            for o in self.incoming(p):
                if o in old_owners[p] and before_sources.get((p, o)) == sources:
                    continue  # already told to copy, from the same sources
                moves += o not in old_owners[p]
                changed = True
                events.append(
                    PartitionChange(
                        cfg.hash_config.format % p, p, sources, self.nodes[o], old_primary, new[p][0], reason, self.epoch
                    )
                )
            if not changed and old_primary != new[p][0]:
                events.append(
                    PartitionChange(cfg.hash_config.format % p, p, sources, None, old_primary, new[p][0], reason, self.epoch)
                )
        if events:
            start = RebalanceEvent("start", reason, self.epoch, moves)
            events.insert(0, start)
            if self.migrating:
                self.rebalance_reason = reason if self.rebalance_reason is None else self.rebalance_reason
                self.rebalance_moves += moves
            else:
                events.append(RebalanceEvent("complete", reason, self.epoch, moves))
        return events

    def _forget_departed(self) -> None:
        """Nodes that left and hold nothing any more leave the node list."""
        held = {h for hs in self.holders for h in hs}
        for node_id, info in list(self.nodes.items()):
            if info.status == LEAVING and node_id not in held:
                del self.nodes[node_id]

    # ------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        """The whole state as msgpack (deterministic: same state, same bytes)."""
        doc = {
            "v": SNAPSHOT_VERSION,
            "config": self.config.to_wire() if self.config is not None else None,
            "nodes": [self.nodes[n].to_wire() for n in sorted(self.nodes)],
            "owners": [list(o) for o in self.owners],
            "holders": [list(h) for h in self.holders],
            "epoch": self.epoch,
            "changed": self.changed,
            "rebalance": [self.rebalance_reason, self.rebalance_moves],
            "detected": sorted(self.detected),
        }
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def restore(cls, data: bytes) -> ClusterState:
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # noqa: BLE001
            raise CommandError(f"undecodable snapshot: {exc}") from None
        _require(isinstance(doc, dict) and doc.get("v") == SNAPSHOT_VERSION, "not a cluster-state snapshot (version 1)")
        state = cls()
        if doc.get("config") is not None:
            state.config = ClusterConfig.from_wire(doc["config"])
        nodes = [NodeInfo.from_wire(n) for n in doc.get("nodes", [])]
        state.nodes = {n.id: n for n in nodes}
        owners, holders = doc.get("owners"), doc.get("holders")
        _require(isinstance(owners, list) and isinstance(holders, list) and len(owners) == len(holders), "bad map")
        count = state.config.partition_count if state.config is not None else 0
        _require(len(owners) == count, f"map has {len(owners)} partitions, config says {count}")
        # Type checks at C speed (map/set): a map has P x RF ids, 196,608 for 65,536 partitions at RF 3.
        seqs = (*owners, *holders)
        _require(set(map(type, seqs)) <= {list}, "map entries must list node ids")
        _require(set(map(type, chain.from_iterable(seqs))) <= {str}, "map entries must list node ids")
        state.owners = [tuple(o) for o in owners]
        state.holders = [tuple(h) for h in holders]
        epoch = doc.get("epoch")
        _require(type(epoch) is int and epoch >= 0, "bad epoch")
        state.epoch = epoch
        changed = doc.get("changed", [epoch] * count)
        _require(
            isinstance(changed, list) and len(changed) == count
            and all(type(e) is int and 0 <= e <= epoch for e in changed),
            "bad per-partition epochs",
        )
        state.changed = changed
        reason, moves = doc.get("rebalance", [None, 0])
        state.rebalance_reason, state.rebalance_moves = reason, moves
        detected = doc.get("detected", [])
        _require(isinstance(detected, list) and all(type(n) is str for n in detected), "bad detected list")
        state.detected = set(detected)
        return state

    def to_dict(self) -> dict[str, Any]:
        """The state as the HTTP API and ``/cluster`` publish it."""
        cfg = self.config
        out: dict[str, Any] = {"epoch": self.epoch, "nodes": [self.nodes[n].to_wire() for n in sorted(self.nodes)]}
        if cfg is None:
            return out
        out["cluster"] = {"name": cfg.cluster_name, **cfg.to_wire()}
        out["hash_config"] = cfg.hash_config.to_dict()
        out["partitions"] = {
            cfg.hash_config.format % p: {
                "primary": self.acting_primary(p),
                "owners": list(self.owners[p]),
                "holders": list(self.holders[p]),
                "incoming": self.incoming(p),
                "failed": self.failed_holders(p),
                "epoch": self.changed[p] if p < len(self.changed) else self.epoch,
            }
            for p in range(cfg.partition_count)
        }
        return out


_HANDLERS: Mapping[str, Any] = MappingProxyType({
    "bootstrap": ClusterState._bootstrap,
    "join": ClusterState._join,
    "leave": ClusterState._leave,
    "fail": ClusterState._fail,
    "rebalance": ClusterState._rebalance,
    "confirm": ClusterState._confirm,
})


def bootstrap_command(config: ClusterConfig, node: NodeInfo) -> bytes:
    return encode_command("bootstrap", config=config.to_wire(), node=node.to_wire())


def join_command(config: ClusterConfig, node: NodeInfo) -> bytes:
    return encode_command("join", config=config.to_wire(), node=node.to_wire())


def leave_command(node_id: str) -> bytes:
    return encode_command("leave", node_id=node_id)


def fail_command(node_id: str, by_detector: bool = False) -> bytes:
    """Mark ``node_id`` failed; ``by_detector``: the leader's failure detector did, so the node
    may rejoin by itself once heard again (an operator's failure stands until a join)."""
    return encode_command("fail", node_id=node_id, by_detector=by_detector)


def rebalance_command() -> bytes:
    return encode_command("rebalance")


def confirm_command(partition: int, node_id: str, epoch: int | None = None) -> bytes:
    """``node_id`` holds partition ``partition``'s data; with ``epoch``, as copied at that
    placement (the partition's epoch): ignored if the placement changed since."""
    if epoch is None:
        return encode_command("confirm", partition=partition, node_id=node_id)
    return encode_command("confirm", partition=partition, node_id=node_id, epoch=epoch)

