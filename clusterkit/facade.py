"""The ClusterKit facade: what applications call, over either driver.

The facade holds this node's copy of the cluster state (the Raft FSM), answers
the seed's questions (which partition, who is primary, am I a replica) from
it, and runs the hooks after each change is applied. It does no I/O. It is
the state machine of its node's :class:`~clusterkit.host.NodeHost` (whichever
driver runs that host: the in-memory cluster, the simulator, the TCP node):
the host feeds it every committed entry (:meth:`apply_entry`), restores it
from snapshots, ticks it so copy confirmations can time out, and carries its
commands through Raft. One facade serves its node for the node's whole life:
a restart or a snapshot replaces its state, never the object, so an
application holding it always reads the current map.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .raft.errors import ConfigError, RaftError
from .raft.messages import Entry, EntryType
from .cluster_state import (
    ACTIVE,
    FAILED,
    ApplyResult,
    ClusterConfig,
    ClusterState,
    CommandError,
    Event,
    NodeEvent,
    NodeInfo,
    PartitionChange,
    RebalanceEvent,
    bootstrap_command,
    confirm_command,
    fail_command,
    join_command,
    leave_command,
    rebalance_command,
)

log = logging.getLogger("clusterkit")

RAFT_PORT_OFFSET = 921  # :8080 -> 127.0.0.1:9001, :8081 -> :9002, as in the Go ClusterKit's examples
_NODE_NUMBER = re.compile(r"^node-(\d+)$")



def _split_host_port(addr: str, what: str) -> tuple[str, int]:
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{what} must be host:port or :port, got {addr!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"{what} port must be 1..65535, got {port}")
    return host, port


@dataclass(frozen=True)
class Options:
    """Node options, as in the Go ClusterKit; only ``node_id`` and ``http_addr`` are required.

    Derived when left empty: ``node_name`` ("node-1" -> "Server-1", else the
    id); ``raft_addr`` from ``http_addr``: same host (127.0.0.1 when empty),
    port + 921 (":8080" -> "127.0.0.1:9001", "10.0.0.5:8080" ->
    "10.0.0.5:9001"); ``bootstrap`` is true when ``join_addr`` is empty.
    """

    node_id: str
    http_addr: str
    node_name: str = ""
    raft_addr: str = ""
    join_addr: str = ""
    bootstrap: bool | None = None
    data_dir: str = "./clusterkit-data"
    cluster_name: str = "clusterkit-cluster"
    partition_count: int = 16
    replication_factor: int = 3
    hash_algorithm: str = "md5"
    zone: str | None = None
    # ticks an incoming owner may take to confirm its copy before the
    # leader's facade confirms it anyway (0 = wait for the application forever)
    copy_timeout_ticks: int = 0
    # failure detection: the leader marks a node failed when it hasn't heard from it for this many
    # ticks, and lets it rejoin when it is heard again (0 = off: nodes are marked failed by hand)
    fail_after_ticks: int = 0

    def resolved(self) -> Options:
        """These options with every derived field filled in, validated."""
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ConfigError("node_id is required")
        if not isinstance(self.http_addr, str) or not self.http_addr:
            raise ConfigError("http_addr is required (e.g. ':8080' or '10.0.0.5:8080')")
        host, port = _split_host_port(self.http_addr, "http_addr")
        raft_addr = self.raft_addr
        if not raft_addr:
            if port + RAFT_PORT_OFFSET > 65535:
                raise ConfigError(f"cannot derive raft_addr from port {port}; set raft_addr")
            raft_addr = f"{host or '127.0.0.1'}:{port + RAFT_PORT_OFFSET}"
        else:
            _split_host_port(raft_addr, "raft_addr")
        name = self.node_name
        if not name:
            match = _NODE_NUMBER.match(self.node_id)
            name = f"Server-{match.group(1)}" if match else self.node_id
        for field_name in ("copy_timeout_ticks", "fail_after_ticks"):
            value = getattr(self, field_name)
            if type(value) is not int or value < 0:
                raise ConfigError(f"{field_name} must be a whole number >= 0, got {value!r}")
        try:
            self.cluster_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        bootstrap = self.bootstrap if self.bootstrap is not None else not self.join_addr
        resolved = replace(self, node_name=name, raft_addr=raft_addr, bootstrap=bootstrap)
        try:  # what the cluster state will take in this node's join (lengths, address formats)
            NodeInfo.from_wire(resolved.node_info().to_wire())
        except CommandError as exc:
            raise ConfigError(f"this node's entry would be refused by the cluster state: {exc}") from None
        return resolved

    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(self.cluster_name, self.partition_count, self.replication_factor, self.hash_algorithm)

    def node_info(self) -> NodeInfo:
        return NodeInfo(self.node_id, self.node_name, self.raft_addr, self.http_addr, self.zone)


@dataclass(frozen=True, slots=True)
class Partition:
    """A partition as applications see it: acting primary first, then the other owners."""

    id: str
    number: int
    primary: str
    replicas: tuple[str, ...]
    incoming: tuple[str, ...] = ()  # owners still copying the data
    outgoing: tuple[str, ...] = ()  # old owners still holding the data until every copy is confirmed
    epoch: int = 0  # the cluster epoch at which this partition's owners or holders last changed
    # Old owners marked failed whose copies still count (a data layer's quorums include them)
    # until every new owner has confirmed its copy; not serving, as they are thought unreachable.
    failed: tuple[str, ...] = ()

    @property
    def holders(self) -> tuple[str, ...]:
        """The nodes holding a complete copy: every serving node but the incoming ones, then
        the failed holders."""
        return (*(n for n in (self.primary, *self.replicas) if n not in self.incoming), *self.failed)

    @property
    def owners(self) -> tuple[str, ...]:
        """Where the partition is going: every serving node but the outgoing ones."""
        return tuple(n for n in (self.primary, *self.replicas) if n not in self.outgoing)


@dataclass(frozen=True, slots=True)
class PartitionStats:
    total_partitions: int
    partitions_per_node: dict[str, int]  # primaries
    replicas_per_node: dict[str, int]
    epoch: int


@dataclass
class Hooks:
    """The application's callbacks, run on every node after each change applies, in log order."""

    partition_change: list[Callable[[PartitionChange], Any]] = field(default_factory=list)
    node_join: list[Callable[[NodeEvent], Any]] = field(default_factory=list)
    node_leave: list[Callable[[NodeEvent], Any]] = field(default_factory=list)
    rebalance_start: list[Callable[[RebalanceEvent], Any]] = field(default_factory=list)
    rebalance_complete: list[Callable[[RebalanceEvent], Any]] = field(default_factory=list)


class Host(Protocol):
    """What the facade needs from the node host that runs it."""

    @property
    def is_leader(self) -> bool: ...

    def submit(self, data: bytes) -> Any: ...

    def peer_silence(self, node_id: str) -> int | None: ...

    def peer_heard(self, node_id: str) -> bool: ...


class ClusterKit:
    """One node's view of the cluster, and its handle to change it."""

    def __init__(self, options: Options, hooks: Hooks | None = None) -> None:
        self.options = options.resolved()
        self.state = ClusterState()
        self.hooks = hooks or Hooks()
        self.hook_errors = 0
        self.commands_applied = 0
        self._host: Host | None = None
        self._incoming_age: dict[tuple[int, str], int] = {}
        self._ticks = 0
        self._failure_asked: dict[str, int] = {}  # node -> tick we last proposed its fail or rejoin

    # ------------------------------------------------------------ host side
    def attach(self, host: Host) -> None:
        """Called by the node host that runs this facade."""
        self._host = host

    @property
    def is_leader(self) -> bool:
        """Whether this node's own Raft node leads (only the leader times out copies)."""
        return self._host is not None and self._host.is_leader

    def propose(self, command: bytes) -> Any:
        """Send ``command`` through Raft from this node: the host's Proposal on the leader, None
        when forwarded to it (commands are idempotent: repeat one that may have been lost)."""
        if self._host is None:
            raise RuntimeError("this ClusterKit is not attached to a node host yet")
        return self._host.submit(command)

    def apply_entry(self, entry: Entry) -> ApplyResult | None:
        """The host's call for every committed entry: commands apply, Raft's own entries don't."""
        if entry.type != EntryType.NORMAL or not entry.data:
            return None
        return self.apply(entry.data)

    def apply(self, data: bytes) -> ApplyResult:
        """Apply one committed command, then run the hooks for what changed."""
        result = self.state.apply(data)
        self.commands_applied += 1
        for event in result.events:
            self._fire(event)
        return result

    def snapshot(self) -> bytes:
        return self.state.snapshot()

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with a snapshot's (``b""``: empty). Hooks stay; they fire for the
        entries applied after it (at-least-once across restarts: ``event.epoch`` tells)."""
        self.state = ClusterState.restore(snapshot) if snapshot else ClusterState()
        self._incoming_age = {}

    def tick(self) -> None:
        """One unit of time. On the leader: incoming copies past the timeout get confirmed, and
        (with ``fail_after_ticks``) silent nodes are marked failed and heard ones rejoin."""
        self._ticks += 1
        self._detect_failures()
        self._time_out_copies()

    def _detect_failures(self) -> None:
        limit = self.options.fail_after_ticks
        host, cfg = self._host, self.state.config
        if not limit or host is None or cfg is None or not self.is_leader:
            return
        for node_id, info in sorted(self.state.nodes.items()):
            silent = host.peer_silence(node_id) if node_id != self.options.node_id else None
            if silent is None:
                continue  # ourselves, a node Raft doesn't track, or one this leader hasn't heard yet
            asked = self._failure_asked.get(node_id)
            if asked is not None and self._ticks - asked < limit:
                continue  # asked recently: give the log time (and ask again if it was lost)
            if info.status == ACTIVE and silent >= limit:
                log.warning("%s silent for %d ticks: marking it failed", node_id, silent)
                self._failure_asked[node_id] = self._ticks
                self._propose_from_tick(fail_command(node_id, by_detector=True))
            elif (info.status == FAILED and node_id in self.state.detected  # not an operator's failure
                  and silent < 2 and host.peer_heard(node_id)):
                log.warning("%s is back: it rejoins", node_id)
                self._failure_asked[node_id] = self._ticks
                self._propose_from_tick(join_command(cfg, replace(info, status=ACTIVE)))

    def _time_out_copies(self) -> None:
        limit = self.options.copy_timeout_ticks
        if not limit or self.state.config is None:
            return
        pending = {(p, o) for p in range(len(self.state.owners)) for o in self.state.incoming(p)}
        self._incoming_age = {k: self._incoming_age.get(k, 0) + 1 for k in sorted(pending)}
        if not self.is_leader:
            return
        for (p, node), age in self._incoming_age.items():
            if age % limit == 0:  # and again every ``limit`` ticks, in case the proposal was lost
                log.warning("copy of partition %d to %s not confirmed in %d ticks; confirming it", p, node, limit)
                self._propose_from_tick(confirm_command(p, node))

    def _propose_from_tick(self, command: bytes) -> None:
        """A command the facade proposes on its own, from a tick: refused now (a leadership
        transfer, a full backlog, no leader), it is simply asked again at its next due tick, and
        never raises into the driver's tick."""
        try:
            self.propose(command)
        except RaftError as exc:
            log.info("%s: not proposed now (%s); will retry", self.options.node_id, exc)

    def _fire(self, event: Event) -> None:
        if isinstance(event, PartitionChange):
            targets: list[Callable[[Any], Any]] = list(self.hooks.partition_change)
            arg: Any = event
        elif isinstance(event, NodeEvent):
            targets = list(self.hooks.node_join if event.kind == "join" else self.hooks.node_leave)
            arg = event
        else:
            targets = list(self.hooks.rebalance_start if event.kind == "start" else self.hooks.rebalance_complete)
            arg = event
        for hook in targets:
            try:
                hook(arg)
            except Exception:  # noqa: BLE001 - a broken hook must never break the node
                self.hook_errors += 1
                log.exception("hook %r failed on %r", getattr(hook, "__name__", hook), event)

    # ------------------------------------------------------------ commands
    def bootstrap_command(self) -> bytes:
        return bootstrap_command(self.options.cluster_config(), self.options.node_info())

    def join_command(self) -> bytes:
        return join_command(self.options.cluster_config(), self.options.node_info())

    def join_until_active(self) -> bool:
        """What a joining node's driver calls every so often: propose this node's own cluster-state
        join while the cluster state (once it has a config) doesn't list it. Not once it is listed:
        active; leaving (a join would undo the leave); or failed (the leader's failure detector lets
        it back once it hears it). A refused proposal (no leader yet, a leadership transfer) is
        simply asked again at the next call. Returns whether a join was proposed (the driver then
        drains its node)."""
        if self.state.config is None or self.options.node_id in self.state.nodes:
            return False
        try:
            self.propose(self.join_command())
        except RaftError as exc:
            log.info("%s: join not proposed now (%s); will retry", self.options.node_id, exc)
            return False
        return True

    def check_join(self, remote: dict[str, Any]) -> list[str]:
        """Config differences between this node and a cluster's published config (empty: compatible)."""
        return ClusterConfig.from_wire(remote).conflicts(self.options.cluster_config())

    def leave(self) -> Any:
        return self.propose(leave_command(self.options.node_id))

    def mark_failed(self, node_id: str) -> Any:
        return self.propose(fail_command(node_id))

    def rebalance(self) -> Any:
        return self.propose(rebalance_command())

    def confirm_copy(self, partition: Partition | str | int, node_id: str | None = None,
                     epoch: int | None = None) -> Any:
        """Tell the cluster that ``node_id`` (default: this node) now holds ``partition``'s data.
        With ``epoch`` (the partition's ``Partition.epoch`` the copy was made at), the
        confirmation counts only if the placement hasn't changed since: a copy restarted at a new
        placement can't be completed by the confirmation of an earlier one still in flight."""
        return self.propose(self.confirm_copy_command(partition, node_id, epoch))

    def confirm_copy_command(self, partition: Partition | str | int, node_id: str | None = None,
                             epoch: int | None = None) -> bytes:
        return confirm_command(self._number(partition), node_id or self.options.node_id, epoch)

    # ------------------------------------------------------------ hooks
    def on_partition_change(self, fn: Callable[[PartitionChange], Any]) -> None:
        self.hooks.partition_change.append(fn)

    def on_node_join(self, fn: Callable[[NodeEvent], Any]) -> None:
        self.hooks.node_join.append(fn)

    def on_node_leave(self, fn: Callable[[NodeEvent], Any]) -> None:
        self.hooks.node_leave.append(fn)

    def on_rebalance_start(self, fn: Callable[[RebalanceEvent], Any]) -> None:
        self.hooks.rebalance_start.append(fn)

    def on_rebalance_complete(self, fn: Callable[[RebalanceEvent], Any]) -> None:
        self.hooks.rebalance_complete.append(fn)

    # ------------------------------------------------------------ the seed's API
    def _config(self) -> ClusterConfig:
        if self.state.config is None:
            raise RuntimeError("the cluster state is empty: not bootstrapped or not caught up yet")
        return self.state.config

    def _number(self, partition: Partition | str | int) -> int:
        cfg = self._config()
        if isinstance(partition, Partition):
            return partition.number
        if isinstance(partition, int) and not isinstance(partition, bool):
            number = partition
        elif isinstance(partition, str):
            prefix = cfg.hash_config.format.split("%d")[0]
            tail = partition[len(prefix):] if partition.startswith(prefix) else ""
            if not tail.isdigit():
                raise KeyError(f"no partition {partition!r}")
            number = int(tail)
        else:
            raise TypeError(f"a partition is a Partition, an id or a number, got {type(partition).__name__}")
        if not 0 <= number < cfg.partition_count:
            raise KeyError(f"no partition {partition!r} (the cluster has {cfg.partition_count})")
        return number

    def partition(self, number: int) -> Partition:
        cfg = self._config()
        serving = self.state.serving_nodes(number)
        return Partition(
            cfg.hash_config.format % number,
            number,
            serving[0],
            tuple(serving[1:]),
            tuple(self.state.incoming(number)),
            tuple(self.state.outgoing(number)),
            self.state.changed[number],
            tuple(self.state.failed_holders(number)),
        )

    def get_partition(self, key: str | bytes) -> Partition:
        return self.partition(self._config().hash_config.number(key))

    def _node(self, node_id: str) -> NodeInfo:
        return self.state.nodes.get(node_id) or NodeInfo(node_id)

    def get_primary(self, partition: Partition | str | int) -> NodeInfo:
        return self._node(self.partition(self._number(partition)).primary)

    def get_replicas(self, partition: Partition | str | int) -> list[NodeInfo]:
        return [self._node(n) for n in self.partition(self._number(partition)).replicas]

    def get_nodes(self, partition: Partition | str | int) -> list[NodeInfo]:
        p = self.partition(self._number(partition))
        return [self._node(n) for n in (p.primary, *p.replicas)]

    def is_primary(self, partition: Partition | str | int) -> bool:
        return self.partition(self._number(partition)).primary == self.options.node_id

    def is_replica(self, partition: Partition | str | int) -> bool:
        return self.options.node_id in self.partition(self._number(partition)).replicas

    def my_node_id(self) -> str:
        return self.options.node_id

    def partitions_for_node(self, node_id: str | None = None) -> list[Partition]:
        me = node_id or self.options.node_id
        out = []
        for number in range(self._config().partition_count):
            p = self.partition(number)
            if me == p.primary or me in p.replicas:
                out.append(p)
        return out

    def partition_stats(self) -> PartitionStats:
        cfg = self._config()
        primaries = {n: 0 for n in sorted(self.state.nodes)}
        replicas = dict(primaries)
        for number in range(cfg.partition_count):
            p = self.partition(number)
            primaries[p.primary] = primaries.get(p.primary, 0) + 1
            for r in p.replicas:
                replicas[r] = replicas.get(r, 0) + 1
        return PartitionStats(cfg.partition_count, primaries, replicas, self.state.epoch)

    def nodes(self) -> list[NodeInfo]:
        return [self.state.nodes[n] for n in sorted(self.state.nodes)]

    def cluster_info(self) -> dict[str, Any]:
        return self.state.to_dict()
