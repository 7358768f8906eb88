"""The nemesis: applies a scenario's faults to a simulated cluster, at their times.

Targets like ``leader`` or ``random`` are resolved when a fault fires, from
the run's seed; the resolved schedule (concrete node ids) is recorded, so it
can be printed, replayed exactly, shrunk, and later run against real
processes. A fault that can't apply (no leader to kill, nothing to restart)
is recorded as skipped.
"""

from __future__ import annotations

import random
from dataclasses import replace

from clusterkit.cluster_state import ACTIVE, fail_command
from clusterkit.host.replace import replace_step, still_a_member
from clusterkit.raft.errors import RaftError
from clusterkit.raft.storage import MemoryStorage

from . import shapes
from .cluster import SimCluster, SimNode
from .scenario import Fault


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
        self._killed: list[str] = []
        self._paused: list[str] = []
        self._next_id = len(cluster.nodes) + 1

    # ------------------------------------------------------------ scheduling
    def schedule(self, faults: list[Fault], start: float) -> None:
        """Fire each fault ``fault.at`` seconds after ``start``. Faults keep their offsets, so the
        record replays with the very same float times (and so the very same run)."""
        for fault in sorted(faults, key=lambda f: f.at):
            ev = self.env.timeout(max(0.0, start + fault.at - self.env.now))
            ev.callbacks.append(lambda _e, f=fault: self.apply(f))

    def apply(self, fault: Fault) -> None:
        node = self._resolve(fault)
        if node is None and fault.kind not in ("partition", "heal"):
            self._skip(fault)
            return
        done = getattr(self, "_" + fault.kind)(fault, node)
        if done is False:
            self._skip(replace(fault, node=node) if node else fault)  # resolved: it skips again on replay
            return
        resolved = replace(fault, node=node or "")
        if fault.kind == "partition" and done:
            resolved = replace(resolved, shape="", groups=(), cuts=done)
        elif fault.kind == "kill" and isinstance(done, tuple):
            resolved = replace(resolved, keep=done)
        self.applied.append(resolved)
        self.record.append(resolved)
        self.c.trace.event(self.env.now, f"fault {resolved.describe().split('s ', 1)[1]}")

    def _skip(self, fault: Fault) -> None:
        self.skipped.append(fault)
        self.record.append(fault)
        self.c.trace.event(self.env.now, f"skipped {fault.kind} {fault.node}".rstrip())

    def _resolve(self, fault: Fault) -> str | None:
        c, target = self.c, fault.node
        live = c.live()
        if target == "leader":
            return c.leader()
        if target == "follower":
            lead = c.leader()
            others = [n for n in live if n != lead]
            return self.rng.choice(others) if others else None
        if target == "random":
            return self.rng.choice(live) if live else None
        if target == "killed":
            dead = [n for n in self._killed if not c.nodes[n].alive and not c.nodes[n].removed]
            return dead[-1] if dead else None
        if target == "paused":
            paused = [n for n in self._paused if c.nodes[n].paused]
            return paused[-1] if paused else None
        if target == "new":
            while f"n{self._next_id}" in c.nodes:
                self._next_id += 1
            return f"n{self._next_id}"
        if fault.kind == "join":
            return target if target and target not in c.nodes else None
        return target if target in c.nodes else (None if target else "")

    # ------------------------------------------------------------ faults
    def _kill(self, fault: Fault, nid: str) -> bool:
        node = self.c.nodes[nid]
        if not node.alive or node.removed:
            return False
        keep_writes = keep_entries = 0
        if fault.torn and fault.keep:
            keep_writes, keep_entries = fault.keep
            self.c.counters.torn_writes += 1
        elif fault.torn and node.disk.unsynced_writes:
            keep_writes = self.rng.randrange(node.disk.unsynced_writes)
            keep_entries = self.rng.randrange(1, 4)
            self.c.counters.torn_writes += 1
        self._crash(node, keep_writes, keep_entries)
        self._killed.append(nid)
        self.c.counters.kills += 1
        return (keep_writes, keep_entries) if fault.torn else True

    def _crash(self, node: SimNode, keep_writes: int = 0, keep_entries: int = 0) -> None:
        node.host.crash(synced=False, keep_writes=keep_writes, keep_entries=keep_entries)
        node.alive = False
        node.paused = False
        node.draining = False
        node.inbox.clear()
        node.generation += 1

    def _restart(self, fault: Fault, nid: str) -> bool:
        node = self.c.nodes[nid]
        if node.alive or node.removed:
            return False
        node.host.start()
        node.alive = True
        self.c.counters.restarts += 1
        self.c.start_copier(node)
        self.c._kick(node)
        return True

    def _wipe(self, fault: Fault, nid: str) -> bool:
        """The node's disk is lost: it restarts at once, empty, under the same id (as an operator
        who replaced a dead disk would restart it). It must not vote until the leader has replaced
        it (see clusterkit.host.replace); its data is copied back as a new node's would be."""
        c = self.c
        node = c.nodes[nid]
        if node.removed or not self._permanent_removal_ok(nid) or not self._active_member(nid):
            return False  # a lost copy, as a failure is: only when the rest can hold RF copies
        if c.leader() in (None, nid) and len([n for n in c.live() if n != nid]) < 2:
            return False
        if node.alive:
            self._crash(node)
        node.disk = MemoryStorage()
        node.host.storage = node.disk
        node.host.joining = True
        node.host.admitted = False
        if c.data_layer is not None:
            c.data_layer.wipe(node)
        c.monitor.forget(nid)  # what comes back under its id is a new member, from term 0
        c.observer.forget(nid)
        node.host.start()
        node.alive = True
        node.wipes += 1
        c.counters.wipes += 1
        c.start_copier(node)
        c._kick(node)
        self.env.process(self._rejoining(node, node.wipes))
        return True

    def _rejoining(self, node: SimNode, life: int):  # a SimPy process
        """A wiped node's join, as its runner's: it asks until a leader has taken it in (replaced
        its old self, then added it as a learner); then it joins as any new node. ``life``: the
        wipe it follows (a later wipe starts its own)."""
        c = self.c
        address = node.kit.options.raft_addr.encode()
        replaced = False  # its old self is gone: what is a member under its id from now on is this life
        while not node.removed and not node.host.admitted and node.wipes == life:
            lead = c.leader()
            if node.alive and lead is not None and lead != node.id:
                leader = c.nodes[lead]
                raft = leader.host.raft
                assert raft is not None
                if not replaced and still_a_member(leader.host, leader.kit.state, node.id):
                    if replace_step(leader.host, leader.kit.state, node.id):
                        c._kick(leader)
                elif node.id not in raft.voters + raft.learners:
                    replaced = True
                    try:
                        raft.add_learner(node.id, context=address)
                        c._kick(leader)
                    except RaftError:
                        pass
                elif raft.log.committed >= raft.log.last_index():
                    node.host.admit()  # the leader answered its join: taken in
                    c.trace.event(self.env.now, f"{node.id} taken in again after its wipe")
            yield self.env.timeout(0.5)
        if node.wipes == life and not node.removed:
            yield from self._joining(node, life)

    def _pause(self, fault: Fault, nid: str) -> bool:
        node = self.c.nodes[nid]
        if not node.alive or node.paused:
            return False
        node.paused = True
        self._paused.append(nid)
        self.c.counters.pauses += 1
        return True

    def _resume(self, fault: Fault, nid: str) -> bool:
        node = self.c.nodes[nid]
        if not node.paused:
            return False
        self._unpause(node)
        return True

    def _unpause(self, node: SimNode) -> None:
        node.paused = False
        inbox, node.inbox = node.inbox, []
        for data in inbox:
            if node.alive:
                self.c._step(node, data)
        self.c._kick(node)

    def _partition(self, fault: Fault, _nid: str | None) -> tuple[tuple[str, ...], ...] | bool:
        c = self.c
        nodes = sorted(n for n in c.nodes if not c.nodes[n].removed)
        if fault.cuts:
            c.network.blocked = set(fault.cuts)
        elif fault.groups:
            c.network.partition(fault.groups, nodes)
        else:
            shape = fault.shape
            if shape in ("isolate-leader", "one-way-leader"):
                victim = c.leader()
                if victim is None:
                    return False
            else:
                victim = self.rng.choice(nodes)
            if shape in ("isolate", "isolate-leader"):
                cuts = shapes.isolate(nodes, victim)
            elif shape in ("one-way", "one-way-leader"):
                cuts = shapes.one_way(nodes, victim)
            elif shape == "halves":
                cuts = shapes.halves(nodes, self.rng)
            elif shape == "majorities-ring":
                cuts = shapes.majorities_ring(nodes, self.rng)
            else:
                cuts = shapes.bridge(nodes, self.rng)
            c.network.blocked = set(cuts)
        c.counters.partitions += 1
        # Recorded as the one-way links cut, so a replay needs no shape or seed.
        return tuple((a, b) for a, b in sorted(c.network.blocked))

    def _heal(self, fault: Fault, _nid: str | None) -> bool:
        self.c.network.heal()
        self.c.counters.heals += 1
        return True

    def heal_everything(self) -> None:
        """The end of the fault phase: links back, paused nodes resumed, clocks true, disks
        unstalled, killed nodes restarted (those that failed or left stay gone)."""
        c = self.c
        c.network.heal()
        for node in c.nodes.values():
            node.rate = 1.0
            node.stall_until = 0.0
            if node.paused:
                self._unpause(node)
            if not node.alive and not node.removed:
                self._restart(Fault(self.env.now, "restart", node.id), node.id)
        c.trace.event(self.env.now, "healed everything")

    def _skew(self, fault: Fault, nid: str) -> bool:
        self.c.nodes[nid].rate = fault.rate
        self.c.counters.skews += 1
        return True

    def _stall(self, fault: Fault, nid: str) -> bool:
        node = self.c.nodes[nid]
        node.stall_until = max(node.stall_until, self.env.now + fault.seconds)
        self.c.counters.stalls += 1
        return True

    # ------------------------------------------------------------ membership
    def _permanent_removal_ok(self, nid: str) -> bool:
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

    def _active_member(self, nid: str) -> bool:
        """In the leader's cluster state as an active member (not a join still in flight)."""
        lead = self.c.leader()
        info = self.c.nodes[lead].kit.state.nodes.get(nid) if lead is not None else None
        return info is not None and info.status == ACTIVE

    def _join(self, fault: Fault, nid: str) -> bool:
        c = self.c
        node = c._add(nid, MemoryStorage(), joining=True)
        c.counters.joins += 1
        self.env.process(self._joining(node))
        return True

    def _joining(self, node: SimNode, life: int = 0):  # a SimPy process
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

    def _leave(self, fault: Fault, nid: str) -> bool:
        if not self._permanent_removal_ok(nid) or not self.c.nodes[nid].alive:
            return False
        if not self._active_member(nid):
            return False  # not a member yet (its join may still be in flight): nothing to leave
        self.c.nodes[nid].removed = True  # no further faults pick it; it stops once out
        self.c.counters.leaves += 1
        self.env.process(self._leaving(self.c.nodes[nid], graceful=True))
        return True

    def _fail(self, fault: Fault, nid: str) -> bool:
        if not self._permanent_removal_ok(nid) or not self._active_member(nid):
            return False  # (a node whose join is in flight would be made active, dead, by it)
        node = self.c.nodes[nid]
        if node.alive:
            self._crash(node)
        node.removed = node.gone = True
        self.c.counters.failures += 1
        self.env.process(self._leaving(node, graceful=False))
        return True

    def _leaving(self, node: SimNode, graceful: bool):  # a SimPy process
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
            self._crash(node)  # out of both: the process exits
            c.trace.event(self.env.now, f"{node.id} left")
        node.gone = True
