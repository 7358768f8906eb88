"""A real node: the core's node host driven by asyncio, over TCP, on a durable disk.

This driver only moves bytes, time and disk syncs, like the simulator: the
host runs the Ready loop. Ticks come from the event loop's clock; messages
from :class:`~.transport.Transport`; a Ready's sync runs in a worker thread
(``fsync`` would block the loop), and while it runs the node keeps taking
messages and proposals, which the next Ready carries: group commit, one
fsync per batch, before that batch's messages go out.

Membership, as the seed describes it: the first node bootstraps (it is the
only voter and proposes the cluster-state bootstrap once it leads); another
node asks any node to ``POST /join`` (a non-leader forwards to the leader),
is added as a Raft learner with its address, catches up, and then proposes
its own cluster-state join. A node restarted on its data directory carries
on where it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from clusterkit.cluster_state import ACTIVE, NodeInfo
from clusterkit.facade import ClusterKit, Hooks, Options
from clusterkit.host import NodeHost
from clusterkit.host.composite import Composite
from clusterkit.host.registers import TAG, RegisterMap
from clusterkit.raft.errors import NotLeader, RaftError
from clusterkit.raft.messages import ConfState, Message
from clusterkit.raft.ready import RaftConfig, Role

from .disk import DiskStorage
from .frames import DEFAULT_MAX_FRAME
from .gc_policy import tune_gc
from .sync_thread import SyncThread
from .transport import Transport

log = logging.getLogger("clusterkit.net")


def _resolve(fut: asyncio.Future[Any], request: Any) -> None:
    """A host request's done-callback: hand it to the future its caller awaits (unless that gave up)."""
    if not fut.done():
        fut.set_result(request)


@dataclass(frozen=True)
class NodeConfig:
    """How a real node runs, beyond the facade's Options."""

    tick: float = 0.05  # seconds per Raft tick: heartbeats every tick, elections after 10 to 20 (0.5-1 s)
    election_ticks: int = 10
    fail_after: float = 3.0  # the leader marks a node silent this long failed (0: never)
    secret: bytes | None = None
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    max_frame: int = DEFAULT_MAX_FRAME
    leave_on_stop: bool = False
    request_timeout: float = 5.0
    # A node with no application data has nothing to copy: it confirms the partitions it is
    # given at once. An application that copies data (the KV store) turns this off and confirms
    # each copy when it is done.
    auto_confirm: bool = True


def node_options(options: Options, config: NodeConfig) -> Options:
    """The facade's options for a real node: failure detection in ticks of this node's clock."""
    fail_ticks = round(config.fail_after / config.tick) if config.fail_after else 0
    return replace(options, fail_after_ticks=fail_ticks).resolved()


class NetNode:
    def __init__(
        self,
        options: Options,
        config: NodeConfig | None = None,
        hooks: Hooks | None = None,
        kit: ClusterKit | None = None,
    ) -> None:
        """``kit``: the facade this node serves (the application's object); made here when not given."""
        self.config = config or NodeConfig()
        self.options = node_options(options, self.config)
        self._leaving = False  # this node was asked to leave: it doesn't rejoin by itself
        self._was_member = False  # the log has our cluster-state join (replayed after a restart too)
        self._joined_raft = False  # in the Raft group (bootstrap, restart, or added after POST /join)
        self.kit = kit if kit is not None else ClusterKit(self.options, hooks=hooks)
        # Our own membership as the log tells it, in log order (a state read every half second can
        # miss a short-lived status: a leave whose copies are confirmed at once).
        self.kit.on_node_join(self._member_event)
        self.kit.on_node_leave(self._member_event)
        self.registers = RegisterMap()
        self.raft_config = RaftConfig(election_ticks=self.config.election_ticks,
                                      voter_down_ticks=max(30, 3 * self.config.election_ticks))
        self.storage: DiskStorage | None = None
        self.host: NodeHost | None = None
        self.transport: Transport | None = None
        self.started_at = 0.0
        self.elections = 0
        self.last_election: float | None = None
        self.fsync_seconds: list[float] = []  # recent sync durations, for metrics
        self._tasks: list[asyncio.Task[Any]] = []
        # Requests awaited with the default timeout -> their deadline (loop time), oldest first.
        self._waiting: dict[asyncio.Future[Any], float] = {}
        self._proposing: list[tuple[bytes, asyncio.Future[Any]]] = []  # this loop turn's, for one batch
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._syncer: SyncThread | None = None
        self._stopping = False
        self._leader_since: tuple[int, str] | None = None
        self.storage_error: str | None = None  # set once a write or sync failed: the node stops serving

    def _member_event(self, event: Any) -> None:
        if event.node.id != self.id:
            return
        if event.kind == "join":
            self._was_member = True
        elif event.kind == "leave":
            self._leaving = True  # asked to leave: never rejoin on our own

    # ------------------------------------------------------------ lifecycle
    @property
    def id(self) -> str:
        return self.options.node_id

    async def start(self) -> None:
        tune_gc()
        directory = Path(self.options.data_dir)
        fresh = not directory.exists() or not any(directory.iterdir())
        bootstrap = bool(self.options.bootstrap) and fresh
        conf = ConfState(voters=(self.id,)) if bootstrap else None
        self.storage = DiskStorage(directory, conf)
        joining = fresh and not bootstrap
        seed = int.from_bytes(os.urandom(8), "big")  # real nodes need not replay: fresh randomness
        self.host = NodeHost(
            self.id,
            self.storage,
            Composite(self.kit, {TAG: self.registers}),
            self.raft_config,
            rng=random.Random(seed),
            joining=joining,
            address=self.options.raft_addr,
            on_event=lambda text: log.info(text),
        )
        self.transport = Transport(
            self.id,
            self.options.cluster_name,
            self.options.raft_addr,
            self._on_message,
            lambda peer: self.host.addresses.get(peer) if self.host is not None else None,
            secret=self.config.secret,
            server_ssl=self.config.server_ssl,
            client_ssl=self.config.client_ssl,
            max_frame=self.config.max_frame,
            rng=random.Random(seed + 1),
        )
        await self.transport.start()
        self.started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._syncer = SyncThread(loop, f"{self.id}-raft-sync")
        self._tasks.append(loop.create_task(self._ticker()))
        self._tasks.append(loop.create_task(self._membership()))
        self._kick()
        log.info("%s started (%s): raft %s, http %s, data %s", self.id,
                 "bootstrap" if bootstrap else "joining" if joining else "restart",
                 self.options.raft_addr, self.options.http_addr, directory)

    async def stop(self) -> None:
        """Stop cleanly: optionally leave the cluster first, then flush and close everything."""
        if self._stopping:
            return
        if self.config.leave_on_stop:
            await self._leave_gracefully()  # still taking messages: the leave goes through the log
        self._stopping = True
        drain = self._drain_task
        if drain is not None and not drain.done():
            # Let the Ready under way finish (its sync may be on the syncer's thread): the host's
            # own stop below then writes and syncs what is left, never beside that thread.
            await asyncio.wait({drain}, timeout=max(5.0, self.config.request_timeout))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._syncer is not None:
            self._syncer.stop()
            self._syncer = None
        if self.transport is not None:
            await self.transport.stop()
        if self.host is not None and self.host.raft is not None:
            self.host.stop()
        if self.storage is not None:
            self.storage.close()
        log.info("%s stopped", self.id)

    async def __aenter__(self) -> NetNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ driving the host
    def _on_message(self, msg: Message) -> None:
        if self.host is not None and not self._stopping:
            self.host.step(msg)
            self._kick()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += self.config.tick
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            assert self.host is not None
            self.host.tick()
            self._kick()
            if self._waiting:
                self._expire_requests(loop.time())

    def _kick(self) -> None:
        if self._draining or self.host is None or not self.host.has_ready():
            return
        self._draining = True
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.append(self._drain_task)

    async def _drain(self) -> None:
        host, storage, transport, syncer = self.host, self.storage, self.transport, self._syncer
        assert host is not None and storage is not None and transport is not None and syncer is not None
        try:
            while not self._stopping and (rd := host.begin()) is not None:
                if rd.must_sync():
                    t0 = time.perf_counter()
                    # A leader's appends go out now, while its own disk syncs them: the followers
                    # write them meanwhile (the core counts the leader's own copy once synced).
                    for m in rd.take_early_messages():
                        transport.send(m)
                    # On the syncer's thread: the loop keeps taking messages and proposals meanwhile,
                    # and applies the entries an earlier sync already made durable.
                    record = storage.prepare_sync()
                    syncing = syncer.run(storage.sync if record is None else partial(storage.write_record, record))
                    host.apply_stable(rd)
                    await syncing
                    if record is not None:
                        storage.finish_sync(record)
                    self._note_fsync(time.perf_counter() - t0)
                for m in host.finish(rd):
                    transport.send(m)
                self._note_role()
        finally:
            self._draining = False
            self._tasks = [t for t in self._tasks if not t.done()]
        if not self._stopping:
            self._kick()  # whatever arrived during the last sync

    def _note_fsync(self, seconds: float) -> None:
        self.fsync_seconds.append(seconds)
        if len(self.fsync_seconds) > 1024:
            del self.fsync_seconds[:512]

    def _note_role(self) -> None:
        raft = self.host.raft if self.host is not None else None
        if raft is not None and raft.role is Role.LEADER and self._leader_since != (raft.term, self.id):
            self._leader_since = (raft.term, self.id)
            self.elections += 1
            self.last_election = time.time()  # the host logs the event itself

    # ------------------------------------------------------------ requests
    async def propose(self, data: bytes, timeout: float | None = None) -> Any:
        """Propose on this node, which must lead (NotLeader otherwise); the entry's result.

        The proposals made in one turn of the event loop go to the host together, as one batch
        (one Raft append, one Proposal list), just after it: a leader with many writers in flight
        then spends per write little more than its entry. What one proposal alone would be refused
        for (not the leader, a bad or oversized entry) is raised here at once, as before."""
        host = self.host
        assert host is not None
        raft = host.raft
        if raft is None or not raft.is_leader:
            raise NotLeader(self.id, raft.leader if raft is not None else None)
        host.check_proposal(data)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        queued = self._proposing
        queued.append((data, done))
        if len(queued) == 1:
            loop.call_soon(self._propose_queued)
        if timeout is not None and timeout != self.config.request_timeout:
            return (await self._wait(done, timeout)).result
        waiting = self._waiting  # _wait's default-timeout path, inline: this runs for every write
        waiting[done] = loop.time() + self.config.request_timeout
        try:
            proposal = await done
        finally:
            waiting.pop(done, None)
        if not proposal.ok:
            raise RaftError(proposal.error or "request failed")
        return proposal.result

    def _propose_queued(self) -> None:
        """Hand the proposals queued this turn to the host as one batch; if the batch is refused
        (leadership lost, backlog full), each on its own, so each caller gets its own answer."""
        queued, self._proposing = self._proposing, []
        queued = [(data, fut) for data, fut in queued if not fut.done()]  # a cancelled caller: dropped
        host = self.host
        if not queued:
            return
        if host is None or self._stopping:
            for _, fut in queued:
                fut.set_exception(NotLeader(self.id, None))
            return
        try:
            proposals = host.propose_batch([data for data, _ in queued])
        except (RaftError, TypeError, ValueError):
            for data, fut in queued:
                try:
                    host.propose(data).add_done_callback(partial(_resolve, fut))
                except (RaftError, TypeError, ValueError) as exc:
                    fut.set_exception(exc)
        else:
            for proposal, (_, fut) in zip(proposals, queued):
                proposal.add_done_callback(partial(_resolve, fut))
        self._kick()

    async def linearizable_read(self, timeout: float | None = None) -> int:
        """Wait until this node may serve a linearizable read; the read index."""
        assert self.host is not None
        read = await self._until_done(self.host.read(), timeout)
        return read.index

    async def _until_done(self, request: Any, timeout: float | None) -> Any:
        """Drive the host and wait for a host request (proposal or read) to end; RaftError if it failed."""
        self._kick()
        done = asyncio.get_running_loop().create_future()
        request.add_done_callback(partial(_resolve, done))
        return await self._wait(done, timeout)

    async def _wait(self, done: asyncio.Future[Any], timeout: float | None) -> Any:
        """Wait for ``done`` to hold the ended host request; RaftError if it failed."""
        loop = asyncio.get_running_loop()
        if timeout is None or timeout == self.config.request_timeout:
            # No timer of its own (a timer handle, a heap push and a cancel for every request): the
            # ticker expires these, oldest first, within a tick of their deadline.
            waiting = self._waiting
            waiting[done] = loop.time() + self.config.request_timeout
            try:
                ended = await done
            finally:
                waiting.pop(done, None)
        else:
            timer = loop.call_later(timeout, lambda: done.done() or done.set_exception(asyncio.TimeoutError()))
            try:
                ended = await done
            finally:
                timer.cancel()
        if not ended.ok:
            raise RaftError(ended.error or "request failed")
        return ended

    def _expire_requests(self, now: float) -> None:
        """Time out the requests waiting with the default timeout whose deadline has passed. They
        were added in deadline order (one timeout for all), so the oldest come first."""
        waiting = self._waiting
        expired = []
        for fut, deadline in waiting.items():
            if deadline > now:
                break
            expired.append(fut)
        for fut in expired:
            del waiting[fut]
            if not fut.done():
                fut.set_exception(asyncio.TimeoutError())

    async def add_member(self, node_id: str, raft_addr: str) -> None:
        """On the leader: add ``node_id`` as a Raft learner (idempotent); returns once committed."""
        assert self.host is not None
        deadline = time.monotonic() + self.config.request_timeout
        while time.monotonic() < deadline:
            raft = self.host.raft
            if raft is None or not raft.is_leader:
                raise NotLeader(self.id, self.host.leader)
            if node_id in raft.voters + raft.learners and raft.log.committed >= raft.log.last_index():
                return
            if node_id not in raft.voters + raft.learners:
                try:
                    raft.add_learner(node_id, context=raft_addr.encode())
                    self._kick()
                except RaftError:
                    pass  # another change in flight: try again shortly
            await asyncio.sleep(self.config.tick)
        raise TimeoutError(f"{node_id} was not added within {self.config.request_timeout} s")

    async def remove_member(self, node_id: str) -> None:
        assert self.host is not None and self.host.raft is not None
        raft = self.host.raft
        if not raft.is_leader:
            raise NotLeader(self.id, self.host.leader)
        if node_id in raft.voters + raft.learners:
            raft.remove_node(node_id)
            self._kick()

    # ------------------------------------------------------------ membership
    def leader_info(self) -> NodeInfo | None:
        """The leader as the cluster state knows it (its HTTP address, to forward requests to)."""
        leader = self.host.leader if self.host is not None else None
        if leader is None:
            return None
        return self.kit.state.nodes.get(leader) or NodeInfo(leader, raft_addr=self.host.addresses.get(leader, ""))

    async def _membership(self) -> None:
        """Bootstrap the cluster state once leading; or ask to join; then keep our entry active."""
        assert self.host is not None
        self._joined_raft = bool(self.host.raft is not None and (self.host.raft.voters or self.host.raft.learners))
        while True:
            await asyncio.sleep(self.config.tick * 5)
            try:
                await self._membership_step()
            except Exception:  # noqa: BLE001 - a bug here must be seen, and must not stop the node
                log.exception("%s: membership step failed", self.id)

    async def _membership_step(self) -> None:
        from .join import request_join

        assert self.host is not None
        host, kit = self.host, self.kit
        raft = host.raft
        if raft is None:
            return
        if not self._joined_raft:
            if self.id in raft.voters + raft.learners:
                self._joined_raft = True
            elif self.options.join_addr:
                await request_join(self)
                return
        state = kit.state
        if state.config is None:
            if self.options.bootstrap and raft.is_leader:
                try:
                    host.propose(kit.bootstrap_command())
                    self._kick()
                except RaftError:
                    pass
            return
        info = state.nodes.get(self.id)
        if info is None and self._was_member:
            self._leaving = True  # we were a member and are gone: we left
        if self._leaving:
            if info is None and raft.id in raft.voters + raft.learners:
                try:
                    raft.remove_node(self.id)  # our data has moved: out of Raft too (a leader hands over)
                    self._kick()
                except RaftError:
                    pass
            return
        if self.config.auto_confirm and info is not None and info.status == ACTIVE:
            for p in range(len(state.owners)):
                if self.id in state.incoming(p):
                    try:
                        kit.confirm_copy(p)
                        self._kick()
                    except RaftError:
                        pass
        if kit.join_until_active():
            self._kick()

    async def _leave_gracefully(self) -> None:
        """Leave the cluster state (our data moves away first), then Raft (handing leadership over)."""
        self._leaving = True
        deadline = time.monotonic() + 4 * self.config.request_timeout
        while time.monotonic() < deadline:
            info = self.kit.state.nodes.get(self.id)
            if info is None:
                break
            if info.status == ACTIVE:
                try:
                    self.kit.leave()
                    self._kick()
                except RaftError:
                    pass
            await asyncio.sleep(0.2)
        raft = self.host.raft if self.host is not None else None
        if raft is not None and self.id in raft.voters + raft.learners:
            try:
                raft.remove_node(self.id)
                self._kick()
            except RaftError:
                pass
            end = time.monotonic() + self.config.request_timeout
            while time.monotonic() < end and raft.id in raft.voters + raft.learners and not raft.removed:
                await asyncio.sleep(0.1)
        log.info("%s left the cluster", self.id)

    # ------------------------------------------------------------ status
    def health_problem(self) -> str | None:
        """Why this node must not be called healthy (its storage failed, it was removed from the
        cluster), or None. /health and /ready answer 503 with it."""
        if self.storage_error is not None:
            return f"storage failed: {self.storage_error}"
        if self.removed:
            return "removed from the cluster: this node is no longer a member"
        return None

    @property
    def removed(self) -> bool:
        raft = self.host.raft if self.host is not None else None
        return self._leaving and (raft is None or raft.removed or self.id not in self.kit.state.nodes)

    def status(self) -> dict[str, Any]:
        raft = self.host.raft if self.host is not None else None
        out: dict[str, Any] = {"node_id": self.id, "up": raft is not None}
        if raft is not None:
            out.update(raft.status())
            out.pop("progress", None)
            out["removed"] = raft.removed  # out of the Raft group for good (it left)
        return out
