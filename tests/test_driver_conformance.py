"""Driver conformance: the same cases over the three drivers of the one Ready pipeline.

memnet (clusterkit.mem), the SimPy simulator (clusterkit.sim) and the asyncio TCP node
(clusterkit.net) each supply only a transport, a disk, a clock and a sync runner around the
core's :class:`~clusterkit.host.pipeline.Pipeline`. Every case below runs on each of them through
a small adapter with one vocabulary: propose, run until, stall a disk, crash, restart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from clusterkit.facade import Options
from clusterkit.host import NodeHost
from clusterkit.host.pipeline import Pipeline
from clusterkit.host.registers import RegisterMap, put_command
from clusterkit.mem.network import MemNetwork
from clusterkit.net.disk import DiskStorage
from clusterkit.net.local import free_port
from clusterkit.net.node import NetNode, NodeConfig
from clusterkit.net.sync_thread import SyncThread
from clusterkit.raft.ready import RaftConfig
from clusterkit.sim.cluster import SimCluster
from clusterkit.sim.nemesis import Nemesis

IDS = ["node-1", "node-2", "node-3"]
SNAPSHOTS = {"snapshot_threshold": 20, "snapshot_trailing": 2}


class Driver(Protocol):
    def host(self, nid: str) -> NodeHost: ...

    def pipeline(self, nid: str) -> Pipeline: ...

    def registers(self, nid: str) -> RegisterMap: ...

    def leader(self) -> str | None: ...

    def propose(self, key: str, value: str) -> None: ...

    def stream(self, n: int) -> None: ...

    def run_until(self, cond: Callable[[], bool], budget: float) -> bool: ...

    def stall(self, nid: str) -> None: ...

    def unstall(self, nid: str) -> None: ...

    def crash(self, nid: str) -> None: ...

    def durable_last_index(self, nid: str) -> int: ...

    def restart(self, nid: str) -> None: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ memnet
class MemDriver:
    def __init__(self) -> None:
        self.net = MemNetwork(IDS, seed=3, config=RaftConfig(election_ticks=6, **SNAPSHOTS),
                              machine=lambda nid: RegisterMap())
        self.net.elect()

    def host(self, nid: str) -> NodeHost:
        return self.net.nodes[nid]

    def pipeline(self, nid: str) -> Pipeline:
        return self.net.pipelines[nid]

    def registers(self, nid: str) -> RegisterMap:
        return self.net.nodes[nid].machine  # type: ignore[return-value]

    def leader(self) -> str | None:
        return self.net.leader()

    def propose(self, key: str, value: str) -> None:
        lead = self.net.leader()
        assert lead is not None
        self.net.nodes[lead].propose(put_command(key, value))
        self.net.process(lead)

    def stream(self, n: int) -> None:
        # One hop of messages per proposal: each is taken by the Ready the acks of the last one
        # bring (new entries to sync, and committed ones already durable).
        for i in range(n):
            lead = self.net.leader()
            assert lead is not None
            self.net.nodes[lead].propose(put_command(f"s{i % 7}", str(i)))
            if not self.net.inflight:
                self.net.process(lead)
            for _ in range(len(self.net.inflight)):
                self.net.deliver(0)

    def run_until(self, cond: Callable[[], bool], budget: float) -> bool:
        return self.net.run_until(cond, int(budget * 20))

    def stall(self, nid: str) -> None:
        self.net.stall(nid)

    def unstall(self, nid: str) -> None:
        self.net.unstall(nid)

    def crash(self, nid: str) -> None:
        self.net.crash(nid)

    def durable_last_index(self, nid: str) -> int:
        return self.net.nodes[nid].storage.last_index()  # (after a crash: what the disk holds)

    def restart(self, nid: str) -> None:
        self.net.restart(nid)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ the simulator
class SimDriver:
    def __init__(self) -> None:
        self.c = SimCluster(IDS, seed=5, raft_config=RaftConfig(**SNAPSHOTS))
        self.nemesis = Nemesis(self.c)
        assert self.run_until(lambda: self.c.leader() is not None, 10.0)

    def host(self, nid: str) -> NodeHost:
        return self.c.nodes[nid].host

    def pipeline(self, nid: str) -> Pipeline:
        pipeline = self.c.nodes[nid].pipeline
        assert pipeline is not None
        return pipeline

    def registers(self, nid: str) -> RegisterMap:
        return self.c.nodes[nid].registers

    def leader(self) -> str | None:
        return self.c.leader()

    def propose(self, key: str, value: str) -> None:
        lead = self.c.leader()
        assert lead is not None
        node = self.c.nodes[lead]
        node.host.propose(put_command(key, value))
        self.c._kick(node)

    def stream(self, n: int) -> None:
        for i in range(n):
            self.propose(f"s{i % 7}", str(i))
            self.c.run(self.c.env.now + 0.0002)  # faster than a sync: proposals arrive during one

    def run_until(self, cond: Callable[[], bool], budget: float) -> bool:
        end = self.c.env.now + budget
        while not cond() and self.c.env.now < end:
            self.c.run(self.c.env.now + 0.01)
        return cond()

    def stall(self, nid: str) -> None:
        self.c.nodes[nid].stall_until = self.c.env.now + 3600.0

    def unstall(self, nid: str) -> None:
        self.c.nodes[nid].stall_until = 0.0

    def crash(self, nid: str) -> None:
        self.nemesis.crash(self.c.nodes[nid])

    def durable_last_index(self, nid: str) -> int:
        return self.c.nodes[nid].disk.last_index()

    def restart(self, nid: str) -> None:
        self.nemesis.restart(self.c.nodes[nid])

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ the TCP node
class GatedSyncThread(SyncThread):
    """A sync thread whose disk can be stalled (the gate closed) and killed (the work never runs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        super().__init__(loop, name)
        self.gate = threading.Event()
        self.gate.set()
        self.dead = False

    def run(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        def gated() -> None:
            self.gate.wait(30.0)
            if not self.dead:
                fn()

        return super().run(gated)


class NetDriver:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.options = {
            nid: Options(node_id=nid, http_addr=f"127.0.0.1:{free_port()}", raft_addr=f"127.0.0.1:{free_port()}",
                         bootstrap=nid == IDS[0], data_dir=str(root / nid))
            for nid in IDS
        }
        self.nodes: dict[str, NetNode] = {}
        self.threads: dict[str, GatedSyncThread] = {}
        self.loop.run_until_complete(self._form())

    async def _start(self, nid: str) -> NetNode:
        node = NetNode(self.options[nid], NodeConfig(fail_after=0.0))
        node.raft_config = replace(node.raft_config, **SNAPSHOTS)
        await node.start()
        # The disk's syncs through a gate (before the first Ready's pipeline is made, or into it).
        assert node._syncer is not None
        node._syncer.stop()
        node._syncer = self.threads[nid] = GatedSyncThread(asyncio.get_running_loop(), f"{nid}-gated")
        if node._pipeline is not None:
            node._pipeline.syncs.thread = node._syncer  # type: ignore[attr-defined]
        self.nodes[nid] = node
        return node

    async def _form(self) -> None:
        first = await self._start(IDS[0])
        assert await self._until(lambda: first.host.is_leader, 10.0), "node-1 did not elect itself"
        for nid in IDS[1:]:
            node = await self._start(nid)
            await first.add_member(nid, self.options[nid].raft_addr)
            node.admit()
        assert await self._until(lambda: len(first.host.raft.voters) == 3, 20.0), "learners not promoted"

    async def _until(self, cond: Callable[[], bool], budget: float) -> bool:
        deadline = asyncio.get_running_loop().time() + budget
        while not cond():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def host(self, nid: str) -> NodeHost:
        host = self.nodes[nid].host
        assert host is not None
        return host

    def pipeline(self, nid: str) -> Pipeline:
        pipeline = self.nodes[nid]._pipeline
        assert pipeline is not None
        return pipeline

    def registers(self, nid: str) -> RegisterMap:
        return self.nodes[nid].registers

    def leader(self) -> str | None:
        found = [nid for nid, n in self.nodes.items() if n.host is not None and n.host.is_leader]
        return found[0] if found else None

    def propose(self, key: str, value: str) -> None:
        async def propose() -> None:
            lead = self.leader()
            assert lead is not None
            self.host(lead).propose(put_command(key, value))
            self.nodes[lead]._kick()

        self.loop.run_until_complete(propose())

    def stream(self, n: int) -> None:
        async def writes() -> None:
            lead = self.leader()
            assert lead is not None
            for start in range(0, n, 25):  # batches in flight while the last one syncs
                await asyncio.gather(*(self.nodes[lead].propose(put_command(f"s{i % 7}", str(i)))
                                       for i in range(start, min(n, start + 25))))

        self.loop.run_until_complete(writes())

    def run_until(self, cond: Callable[[], bool], budget: float) -> bool:
        return self.loop.run_until_complete(self._until(cond, budget * 4))

    def stall(self, nid: str) -> None:
        self.threads[nid].gate.clear()

    def unstall(self, nid: str) -> None:
        self.threads[nid].gate.set()

    def crash(self, nid: str) -> None:
        """SIGKILL, in process: nothing more is written, the sync under way never returns."""
        node, thread = self.nodes[nid], self.threads[nid]
        thread.dead = True
        node._stopping = True
        assert node.host is not None and node.transport is not None and node.storage is not None
        node.host.halt("killed")

        async def kill() -> None:
            for task in node._tasks:
                task.cancel()
            await asyncio.gather(*node._tasks, return_exceptions=True)
            await node.transport.stop()

        self.loop.run_until_complete(kill())
        thread.gate.set()
        thread.stop()
        node.storage.close(sync=False)

    def durable_last_index(self, nid: str) -> int:
        with DiskStorage(self.options[nid].data_dir) as disk:
            return disk.last_index()

    def restart(self, nid: str) -> None:
        # What the others queued for it while it was down is lost with its connections (else their
        # stale appends, sent before a compaction, would catch it up without the snapshot).
        for node in self.nodes.values():
            peer = node.transport._peers.get(nid) if node.transport is not None else None
            if peer is not None:
                peer.queue.clear()
        self.loop.run_until_complete(self._start(nid))

    def close(self) -> None:
        async def stop() -> None:
            for node in self.nodes.values():
                if not node._stopping:
                    await node.stop()

        try:
            self.loop.run_until_complete(stop())
        finally:
            for thread in self.threads.values():
                thread.dead = True
                thread.gate.set()
            self.loop.close()


@pytest.fixture(params=["memnet", "sim", "net"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    made: Any = {"memnet": MemDriver, "sim": SimDriver, "net": lambda: NetDriver(tmp_path)}[request.param]()
    try:
        yield made
    finally:
        made.close()


def _follower(d: Driver) -> str:
    lead = d.leader()
    return next(nid for nid in IDS if nid != lead)


def _applied_everywhere(d: Driver, key: str, value: str, nodes: list[str] = IDS) -> bool:
    return all(d.host(nid).up and d.registers(nid).get(key) == value for nid in nodes)


# ------------------------------------------------------------------ the cases
def test_a_cluster_elects_commits_and_every_follower_applies_what_the_leader_committed(driver: Driver) -> None:
    d = driver
    lead = d.leader()
    assert lead is not None
    for i in range(5):
        d.propose(f"k{i}", f"v{i}")
    assert d.run_until(lambda: _applied_everywhere(d, "k4", "v4"), 5.0)
    leader_raft = d.host(lead).raft
    assert leader_raft is not None
    committed = leader_raft.log.committed
    assert d.run_until(lambda: all(d.host(nid).applied_index >= committed for nid in IDS), 5.0)
    for nid in IDS:
        assert [d.registers(nid).get(f"k{i}") for i in range(5)] == [f"v{i}" for i in range(5)]
    assert all(d.pipeline(nid).stats.syncs > 0 for nid in IDS)


def test_committed_entries_apply_while_the_disk_syncs_later_ones(driver: Driver) -> None:
    d = driver
    d.stream(200)
    assert d.run_until(lambda: _applied_everywhere(d, "s3", "199" if 199 % 7 == 3 else "192"), 5.0)
    early = {nid: d.pipeline(nid).stats.applied_while_syncing for nid in IDS}
    assert sum(early.values()) > 0, early
    assert any(d.pipeline(nid).stats.early_sent > 0 for nid in IDS)  # the leader's appends, before its sync


def _crash_mid_sync(d: Driver) -> tuple[str, int, int]:
    """A follower's disk stalls with entries written and not synced; the others commit them; it
    crashes. (follower, its stable index then, its last index then)."""
    d.propose("before", "1")
    assert d.run_until(lambda: _applied_everywhere(d, "before", "1"), 5.0)
    victim = _follower(d)
    d.stall(victim)
    d.propose("during", "2")
    others = [nid for nid in IDS if nid != victim]
    pipeline = d.pipeline(victim)

    def mid_sync() -> bool:
        raft = d.host(victim).raft
        return (_applied_everywhere(d, "during", "2", others) and pipeline.syncing and raft is not None
                and raft.log.last_index() > raft.log.stable)

    assert d.run_until(mid_sync, 5.0)
    raft = d.host(victim).raft
    assert raft is not None
    stable, last = raft.log.stable, raft.log.last_index()
    d.crash(victim)
    d.unstall(victim)
    return victim, stable, last


def test_a_crash_mid_sync_loses_only_what_was_not_synced(driver: Driver) -> None:
    d = driver
    victim, stable, last = _crash_mid_sync(d)
    durable = d.durable_last_index(victim)
    assert stable <= durable < last  # the synced log kept, the record under way lost
    assert not d.host(victim).up


def test_a_restarted_node_recovers_from_its_disk_and_catches_up(driver: Driver) -> None:
    d = driver
    victim, _, _ = _crash_mid_sync(d)
    d.propose("while-down", "3")
    assert d.run_until(lambda: _applied_everywhere(d, "while-down", "3", [n for n in IDS if n != victim]), 5.0)
    d.restart(victim)
    assert d.run_until(lambda: _applied_everywhere(d, "while-down", "3"), 10.0)
    assert d.registers(victim).get("before") == "1" and d.registers(victim).get("during") == "2"


def test_a_node_far_behind_installs_the_leaders_snapshot(driver: Driver) -> None:
    d = driver
    victim = _follower(d)
    d.crash(victim)
    for i in range(60):  # past the snapshot threshold: the leader compacts what the victim lacks
        d.propose(f"far{i % 5}", str(i))
    lead = d.leader()
    assert lead is not None
    assert d.run_until(lambda: d.host(lead).snapshots_taken > 0, 10.0)
    d.restart(victim)
    assert d.run_until(lambda: _applied_everywhere(d, "far4", "59"), 10.0)
    assert d.host(victim).snapshots_installed >= 1
