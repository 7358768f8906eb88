"""The nemesis: applies a scenario's faults to a simulated cluster, at their times.

Each fault kind is a module of :mod:`clusterkit.sim.faults`; this is the
simulated world they act on: target resolution, and the steps kinds share
(crash a node, restart it, resume it, a node's join and leave). Targets like
``leader`` or ``random`` are resolved when a fault fires, from the run's
seed; the resolved schedule (concrete node ids) is recorded, so it can be
printed, replayed exactly, shrunk, and run against real processes. A fault
that can't apply (no leader to kill, nothing to restart) is recorded as
skipped.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from clusterkit.cluster_state import ACTIVE, fail_command
from clusterkit.raft.errors import RaftError

from .cluster import SimCluster, SimNode
from .faults import KINDS, Fault, kind_of
from .faults.targets import resolve


class Nemesis:
    def __init__(self, cluster: SimCluster) -> None:
        self.c = cluster
        self.env = cluster.env
        # Its own stream: choosing targets and shapes must not shift the network's or the clients'
        # draws, so a schedule replayed with its resolved targets gives the very same run.
        self.rng = random.Random(f"nemesis/{cluster.seed}")
        self.applied: list[Fault] = []  # resolved: what really happened
        self.skipped: list[Fault] = []
        # Every fault in the order it fired, resolved where it applied and as given where it was
        # skipped: replayed as a script, it gives the very same run (the skipped ones skip again).
        self.record: list[Fault] = []
        self.killed: list[str] = []  # targets of "killed" and "paused", newest last
        self.paused: list[str] = []
        self._next_id = len(cluster.nodes) + 1
        self._scratch: dict[str, dict[str, Any]] = {}

    def scratch(self, kind: str) -> dict[str, Any]:
        """A kind's own bookkeeping for this run (kinds are shared, stateless objects)."""
        return self._scratch.setdefault(kind, {})

    # ------------------------------------------------------------ scheduling
    def schedule(self, faults: list[Fault], start: float) -> None:
        """Fire each fault ``fault.at`` seconds after ``start``. Faults keep their offsets, so the
        record replays with the very same float times (and so the very same run)."""
        for fault in sorted(faults, key=lambda f: f.at):
            ev = self.env.timeout(max(0.0, start + fault.at - self.env.now))
            ev.callbacks.append(lambda _e, f=fault: self.apply(f))

    def apply(self, fault: Fault) -> None:
        kind = kind_of(fault.kind)
        node = self._resolve(fault)
        if node is None or (not node and (kind.targets or kind.by_id)):
            self._skip(fault)
            return
        resolved = kind.apply(self, fault, node)
        if resolved is None:
            self._skip(replace(fault, node=node) if node else fault)  # resolved: it skips again on replay
            return
        self.c.counters.bump(kind.counter)
        self.applied.append(resolved)
        self.record.append(resolved)
        self.c.trace.event(self.env.now, f"fault {resolved.describe().split('s ', 1)[1]}")

    def _skip(self, fault: Fault) -> None:
        self.skipped.append(fault)
        self.record.append(fault)
        self.c.trace.event(self.env.now, f"skipped {fault.kind} {fault.node}".rstrip())

    def _resolve(self, fault: Fault) -> str | None:
        c = self.c
        return resolve(fault, live=c.live(), leader=c.leader, rng=self.rng,
                       killed=[n for n in self.killed if not c.nodes[n].alive and not c.nodes[n].removed],
                       paused=[n for n in self.paused if c.nodes[n].paused], new_id=self._new_id,
                       exists=lambda n: n in c.nodes)

    def _new_id(self) -> str:
        while f"n{self._next_id}" in self.c.nodes:
            self._next_id += 1
        return f"n{self._next_id}"

    def heal_everything(self) -> None:
        """The end of the fault phase: every kind undoes what it left (links back, paused nodes
        resumed, clocks true, disks unstalled, killed nodes restarted; those that failed or left
        stay gone), cluster-wide first, then node by node: its conditions, then its process."""
        kinds = list(KINDS.values())
        for kind in kinds:
            kind.heal_all(self)
        for node in list(self.c.nodes.values()):
            for kind in kinds:
                kind.settle(self, node)
            for kind in kinds:
                kind.revive(self, node)
        self.c.trace.event(self.env.now, "healed everything")

    # ------------------------------------------------------------ steps the kinds share
    def crash(self, node: SimNode, keep_writes: int = 0, keep_entries: int = 0) -> None:
        node.host.crash(synced=False, keep_writes=keep_writes, keep_entries=keep_entries)
        node.alive = False
        node.paused = False
        node.draining = False
        node.inbox.clear()
        node.generation += 1

    def restart(self, node: SimNode) -> None:
        node.host.start()
        node.alive = True
        self.c.start_copier(node)
        self.c._kick(node)

    def unpause(self, node: SimNode) -> None:
        node.paused = False
        inbox, node.inbox = node.inbox, []
        for data in inbox:
            if node.alive:
                self.c._step(node, data)
        self.c._kick(node)

    # ------------------------------------------------------------ membership
    def removal_ok(self, nid: str) -> bool:
        """Never take away for good so many nodes that the rest can't hold RF copies, nor so many
        Raft voters that the live ones can't form a quorum (only a leader can replace voters, so
        a group that loses its majority for good stays down: no harness should ask for that)."""
        c = self.c
        remaining = [n for n in c.nodes if not c.nodes[n].removed and n != nid]
        if len(remaining) < max(3, c.replication_factor):
            return False
        lead = c.leader()
        raft = c.nodes[lead].host.raft if lead is not None else None
        if raft is None:
            return False  # no leader to replace voters: wait
        # A data layer keeps each write on W of RF copies: it survives one permanent loss at a
        # time, once the copies are back to RF (a second loss while the first is still being
        # re-replicated can take every copy of a write, with any quorum protocol). So with one,
        # a node is lost for good only when the map is settled and earlier losses are marked.
        if c.data_layer is not None:
            state = c.nodes[lead].kit.state
            pending = [n for n in c.nodes if c.nodes[n].gone and n in state.nodes
                       and state.nodes[n].status == ACTIVE]
            if state.migrating or pending:
                return False
        # Both the newest configuration and the committed one (the newest may be undone by a new
        # leader) must keep a live quorum.
        for voters in (raft.voters, raft.committed_conf_state().voters):
            # (a wiped node not yet taken in again is a voter that can't vote: not live)
            live = [v for v in voters if v != nid and v in c.nodes and not c.nodes[v].removed
                    and c.nodes[v].host.admitted]
            if len(live) < len(voters) // 2 + 1:
                return False
        return True

    def active_member(self, nid: str) -> bool:
        """In the leader's cluster state as an active member (not a join still in flight)."""
        lead = self.c.leader()
        info = self.c.nodes[lead].kit.state.nodes.get(nid) if lead is not None else None
        return info is not None and info.status == ACTIVE

    def joining(self, node: SimNode, life: int = 0) -> Generator[Any, Any, None]:  # a SimPy process
        """As a joining node's runner would, for as long as it runs: ask the leader to add it as a
        Raft learner whenever the leader's membership lacks it (an uncommitted add can be undone
        by a new leader), and submit its cluster-state join once its facade has the cluster's
        config, until it is an active member."""
        c = self.c
        address = node.kit.options.raft_addr.encode()
        while not node.removed and node.wipes == life:  # (a wipe starts a life, and its own join)
            lead = c.leader()
            raft = c.nodes[lead].host.raft if lead is not None else None
            if node.alive and raft is not None and node.id not in raft.voters + raft.learners:
                try:
                    raft.add_learner(node.id, context=address)
                    c._kick(c.nodes[lead])
                except RaftError:
                    pass
            if node.alive and node.kit.join_until_active():
                c._kick(node)
            yield self.env.timeout(1.0)

    def leaving(self, node: SimNode, graceful: bool) -> Generator[Any, Any, None]:  # a SimPy process
        """Out of the cluster state (leave, or marked failed by the leader), then out of Raft."""
        c = self.c
        while True:
            lead = c.leader()
            if lead is not None:
                state = c.nodes[lead].kit.state
                info = state.nodes.get(node.id)
                # A leaving node stays a copy source until its data has moved: wait until it is gone.
                if info is None or (not graceful and info.status != ACTIVE):
                    break
                try:
                    if graceful and node.alive:
                        if info.status == ACTIVE:
                            node.kit.leave()
                        c._kick(node)
                    else:
                        c.submit(fail_command(node.id, by_detector=False))
                except RaftError:
                    pass
            yield self.env.timeout(1.0)
        while True:
            lead = c.leader()
            raft = c.nodes[lead].host.raft if lead is not None else None
            if raft is not None:
                if node.id not in raft.voters + raft.learners:
                    break
                if lead != node.id:
                    try:
                        raft.remove_node(node.id)
                        c._kick(c.nodes[lead])
                    except RaftError:
                        pass
                else:
                    try:
                        raft.transfer_leadership()
                        c._kick(node)
                    except RaftError:
                        pass
            yield self.env.timeout(0.5)
        if node.alive:
            self.crash(node)  # out of both: the process exits
            c.trace.event(self.env.now, f"{node.id} left")
        node.gone = True
