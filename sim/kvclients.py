"""KV clients in virtual time: each strategy's clients, routed as its ``route`` says, recorded as a history.

A client is an endpoint on the simulated network with one operation at a
time. SYNC (and ALL) clients are smart: they keep a copy of the partition map (taken
from a node, as a real client GETs ``/cluster``), run each operation as
ABD themselves (:class:`~clusterkit.kv.operation.Operation`) against the
owners, and refresh the map when a copy says it is stale. SERVER-SIDE
clients send each request to one node, which routes it. ASYNC clients send
to the partition's primary from their map. Every operation is recorded as
``invoke`` then ``ok``/``fail``/``info`` for the linearizability checker;
every acknowledged write's version is kept, to count losses at the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from clusterkit.kv.messages import Get, Message, Refused, Result, Set
from clusterkit.kv.operation import Operation
from clusterkit.kv.quorum import Placement
from clusterkit.kv.strategies import Route
from clusterkit.kv.records import Version

from .cluster import SimCluster
from .kvhost import SimKV
from .scenario import Workload

RETRY = 0.05  # a SYNC client asks silent copies again after this long


@dataclass
class _Client:
    name: str
    map: dict[int, Placement] = field(default_factory=dict)
    epoch: int = -1
    rid: int = 0
    op: Operation | None = None
    answer: Message | None = None
    wake: Any = None  # the SimPy event the client waits on
    target: str | None = None


class KVClients:
    def __init__(self, cluster: SimCluster, kv: SimKV, workload: Workload, stop_at: float) -> None:
        self.c = cluster
        self.kv = kv
        self.env = cluster.env
        self.rng = random.Random(f"kvclients/{cluster.seed}")
        self.w = workload
        self.stop_at = stop_at
        self.strategy = kv.config.policy
        self.history: list[dict[str, Any]] = []
        self.counts = {"ok": 0, "fail": 0, "info": 0}
        self.acked: list[tuple[str, Version, float]] = []  # every acknowledged write: key, version, when
        self._rids = count(1)
        self.clients = [_Client(f"client-{i}") for i in range(workload.clients)]

    def start(self) -> None:
        for client in self.clients:
            self.kv.endpoints[client.name] = lambda src, msg, cl=client: self._receive(cl, src, msg)
            self.env.process(self._run(client))

    # ------------------------------------------------------------ the map
    def _fetch_map(self, client: _Client) -> bool:
        """GET /cluster from a live node (which may itself be behind)."""
        live = [n for n in self.c.live() if self.c.nodes[n].kit.state.config is not None]
        if not live:
            return False
        kit = self.c.nodes[self.rng.choice(live)].kit
        if kit.state.epoch <= client.epoch:
            return False
        client.epoch = kit.state.epoch
        client.map = {p: Placement.of(kit.partition(p)) for p in range(kit.state.config.partition_count)}
        return True

    def _number(self, key: str) -> int | None:
        for node in self.c.nodes.values():
            if node.kit.state.config is not None:
                return node.kit.state.config.hash_config.number(key)
        return None

    # ------------------------------------------------------------ history
    def _record(self, pid: int, kind: str, f: str, key: str, value: str | None) -> None:
        self.history.append({"process": pid, "type": kind, "f": f, "key": key, "value": value,
                             "time": round(self.env.now, 6)})
        if kind != "invoke":
            self.counts[kind] += 1
        self.c.trace.event(self.env.now, f"client {pid} {kind} {f} {key} {value}")

    # ------------------------------------------------------------ running
    def _run(self, client: _Client):  # a SimPy process
        if self.w.rate <= 0:
            return
        pid = int(client.name.rsplit("-", 1)[1])
        per_client = self.w.rate / self.w.clients
        serial = 0
        while True:
            yield self.env.timeout(self.rng.expovariate(per_client))
            if self.env.now >= self.stop_at:
                return
            key = f"k{self.rng.randrange(self.w.keys)}"
            value: str | None = None
            f = "get"
            if self.rng.random() < self.w.write_ratio:
                if self.rng.random() < 0.1:
                    f = "delete"
                else:
                    serial += 1
                    f, value = "put", f"{pid}.{serial}"
            self._record(pid, "invoke", f, key, value)
            if self.strategy.client_quorum:
                kind, read = yield from self._sync_op(client, key, f, value)
            else:
                kind, read = yield from self._request(client, key, f, value)
            self._record(pid, kind, f, key, read if f == "get" else value)

    def _receive(self, client: _Client, src: str, msg: Message) -> None:
        op = client.op
        if op is not None:
            for dst, m in op.on_message(src, msg):
                self.kv.send(client.name, dst, m)
            if op.outcome is not None or op.stale:
                self._wake(client)
        elif getattr(msg, "rid", None) == client.rid:
            client.answer = msg
            self._wake(client)

    def _wake(self, client: _Client) -> None:
        if client.wake is not None and not client.wake.triggered:
            client.wake.succeed()

    def _sync_op(self, client: _Client, key: str, f: str, value: str | None):
        """ABD from the client, against the owners its map names."""
        number = self._number(key)
        if number is None or (not client.map and not self._fetch_map(client)):
            return "fail", None
        q = self.strategy.quorums(self.c.replication_factor)
        op = Operation(key, client.map[number], q, f"{client.name}#{next(self._rids)}", lambda: next(self._rids),
                       write=f != "get", value=value)
        client.op = op
        deadline = self.env.now + self.w.timeout
        for dst, m in op.start():
            self.kv.send(client.name, dst, m)
        while op.outcome is None and self.env.now < deadline:
            client.wake = self.env.event()
            yield client.wake | self.env.timeout(min(RETRY, deadline - self.env.now))
            if op.outcome is not None:
                break
            if op.stale:
                sends = op.refresh(client.map[number]) if self._fetch_map(client) else []
            else:
                sends = op.retry()
            for dst, m in sends:
                self.kv.send(client.name, dst, m)
        client.op = None
        op.expire()
        if op.outcome == "ok" and op.write and op.record is not None:
            self.acked.append((key, op.record.version, self.env.now))
        read = op.result.value if op.outcome == "ok" and f == "get" and op.result is not None else None
        return op.outcome, read

    def _request(self, client: _Client, key: str, f: str, value: str | None):
        """To any node (SERVER-SIDE), sticky until it fails us; or to the primary in our map (ASYNC)."""
        by_map = self.strategy.route is Route.PRIMARY
        if by_map:
            number = self._number(key)
            if number is None or (not client.map and not self._fetch_map(client)):
                return "fail", None
            target = client.map[number].primary
        else:
            live = self.c.live()
            if client.target not in live:
                client.target = self.rng.choice(live) if live else None
            target = client.target
        if target is None:
            return "fail", None
        client.rid = next(self._rids)
        client.answer = None
        msg: Message = Get(client.rid, key) if f == "get" else Set(client.rid, key, value)
        self.kv.send(client.name, target, msg)
        client.wake = self.env.event()
        yield client.wake | self.env.timeout(self.w.timeout)
        answer, client.rid = client.answer, 0
        if isinstance(answer, Result):
            if answer.outcome == "ok" and f != "get" and answer.record is not None:
                self.acked.append((key, answer.record.version, self.env.now))
            read = answer.record.value if f == "get" and answer.record is not None else None
            if answer.outcome != "ok":
                client.target = None
            return answer.outcome, read
        client.target = None
        if isinstance(answer, Refused):
            if answer.reason in ("stale", "not_primary"):
                self._fetch_map(client)
            return "fail", None  # refused: nothing was done
        if by_map:
            self._fetch_map(client)  # a silent primary: our map may be behind
        return ("info" if f != "get" else "fail"), None  # no answer: a write may have happened
