"""Clients in virtual time: reads and writes of replicated registers, recorded as a history.

Each client is a SimPy process that talks to one node at a time (a short
hop each way, outside the partitioned network, as Jepsen's clients do) and
records every operation as ``invoke`` then ``ok``, ``fail`` (it certainly
did not happen) or ``info`` (it may have), in the checkers' JSON-lines form
with virtual timestamps. Writes are proposed on the node, which must lead;
reads are linearizable reads (ReadIndex) served where the client asked.
Values are unique, so the checker can tell every write apart.
"""

from __future__ import annotations

import random
from typing import Any

from clusterkit.host.registers import put_command
from clusterkit.raft.errors import NotLeader, RaftError

from .cluster import SimCluster, SimNode
from .scenario import Workload

HOP = 0.0002  # client <-> node, each way


class Clients:
    def __init__(self, cluster: SimCluster, workload: Workload, stop_at: float) -> None:
        self.c = cluster
        self.env = cluster.env
        self.rng = random.Random(f"clients/{cluster.seed}")  # its own stream, as the nemesis has
        self.w = workload
        self.stop_at = stop_at
        self.history: list[dict[str, Any]] = []
        self.counts = {"ok": 0, "fail": 0, "info": 0}

    def start(self) -> None:
        for pid in range(self.w.clients):
            self.env.process(self._client(pid))

    def _record(self, pid: int, kind: str, f: str, key: str, value: str | None) -> None:
        self.history.append(
            {"process": pid, "type": kind, "f": f, "key": key, "value": value, "time": round(self.env.now, 6)}
        )
        if kind != "invoke":
            self.counts[kind] += 1
        self.c.trace.event(self.env.now, f"client {pid} {kind} {f} {key} {value}")

    def _client(self, pid: int):  # a SimPy process
        if self.w.rate <= 0:
            return
        per_client = self.w.rate / self.w.clients
        live = self.c.live()
        target = live[pid % len(live)] if live else None
        serial = 0
        while True:
            yield self.env.timeout(self.rng.expovariate(per_client))
            if self.env.now >= self.stop_at:
                return
            live = self.c.live()
            if target not in live:
                target = self.rng.choice(live) if live else None
            if target is None:
                continue
            key = f"k{self.rng.randrange(self.w.keys)}"
            value: str | None = None
            if self.rng.random() < self.w.write_ratio:
                serial += 1
                value = f"{pid}.{serial}"
            kind, hint = yield from self.operation(pid, self.c.nodes[target], key, value)
            if hint is not None and hint in self.c.nodes:
                target = hint  # the node named the leader: ask it next
            elif kind != "ok":
                target = None  # pick another node next time

    def operation(self, pid: int, node: SimNode, key: str, value: str | None):  # a SimPy generator
        """One recorded operation: a put of ``value``, or a get when it is None. Returns (how it
        ended, the leader the node named, if any)."""
        if value is not None:
            self._record(pid, "invoke", "put", key, value)
            kind, hint = yield from self._put(node, key, value)
            self._record(pid, kind, "put", key, value)
        else:
            self._record(pid, "invoke", "get", key, None)
            kind, value_read, hint = yield from self._get(node, key)
            self._record(pid, kind, "get", key, value_read)
        return kind, hint

    def _wait(self, request: Any):
        """Wait for a request to end or the client's timeout; True if it ended in time."""
        done = self.env.event()
        request.add_done_callback(lambda _r: done.succeed() if not done.triggered else None)
        yield done | self.env.timeout(self.w.timeout)
        return done.triggered

    def _unreachable(self, node: SimNode) -> bool:
        return not node.alive

    def _put(self, node: SimNode, key: str, value: str):
        yield self.env.timeout(HOP)
        if self._unreachable(node):
            return "fail", None  # connection refused: nothing happened
        if node.paused:
            yield self.env.timeout(self.w.timeout)
            return "info", None  # the request sits in a stopped process's socket: it may run later
        try:
            proposal = node.host.propose(put_command(key, value))
        except NotLeader as exc:
            yield self.env.timeout(HOP)
            return "fail", exc.leader
        except RaftError:
            return "fail", None
        self.c._kick(node)
        ended = yield from self._wait(proposal)
        if not ended:
            return "info", None
        yield self.env.timeout(HOP)
        if proposal.ok:
            return "ok", None
        return ("fail" if (proposal.error or "").startswith("lost") else "info"), None

    def _get(self, node: SimNode, key: str):
        yield self.env.timeout(HOP)
        if self._unreachable(node) or node.paused:
            if node.paused:
                yield self.env.timeout(self.w.timeout)
            return "fail", None, None  # a read that never answered changed nothing
        try:
            read = node.host.read()
        except NotLeader as exc:
            return "fail", None, exc.leader
        except RaftError:
            return "fail", None, None
        seen: list[str] = []
        read.add_done_callback(lambda r: seen.append(node.registers.get(key)) if r.ok else None)
        self.c._kick(node)
        ended = yield from self._wait(read)
        if not ended or not read.ok:
            return "fail", None, None
        yield self.env.timeout(HOP)
        return "ok", seen[0], None
