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
import errno
import logging
import os
import random
import re
import ssl
import time
import uuid
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from clusterkit.cluster_state import ACTIVE, NodeInfo
from clusterkit.facade import ClusterKit, Hooks, Options
from clusterkit.host import NodeHost
from clusterkit.host.composite import Composite
from clusterkit.host.pipeline import Pipeline
from clusterkit.host.registers import TAG, RegisterMap
from clusterkit.host.replace import replace_step, still_a_member
from clusterkit.raft.errors import NotLeader, RaftError
from clusterkit.raft.messages import ConfState, Message
from clusterkit.raft.ready import RaftConfig, Role

from .disk import DiskStorage
from .frames import DEFAULT_MAX_FRAME
from .gc_policy import tune_gc
from .join import request_join
from .faultctl import FaultControl
from .sync_thread import SyncThread, ThreadSyncs
from .transport import BACKOFF_MAX, Transport

log = logging.getLogger("clusterkit.net")

_DISK_CHECK_TICKS = 20  # ticks between checks that the data directory is still there


class NodeHalted(Exception):
    """The node stopped itself for good: ``code`` is the process's exit code (see
    :mod:`clusterkit.cli.codes`), ``reason`` one line saying why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


CLUSTER_ID_FILE = "CLUSTER_ID"  # the cluster's id, made at bootstrap, checked in every peer handshake
UNADMITTED_FILE = "UNADMITTED"
MEMBER_SINCE_FILE = "MEMBER_SINCE"  # the leader's commit index when it took this node in again  # present from an empty start until a leader takes the node in
_CLUSTER_ID = re.compile(r"^[0-9a-f]{32}$")


def _valid_cluster_id(text: str) -> bool:
    return bool(_CLUSTER_ID.fullmatch(text))


def _read_cluster_id(directory: Path) -> str:
    """The cluster id kept in ``directory`` ("" when none: a node from before cluster ids, or a
    fresh one); a file that holds anything else is damage, not an id."""
    path = directory / CLUSTER_ID_FILE
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"{path}: unreadable cluster id: {exc}") from exc
    if not _valid_cluster_id(text):
        raise OSError(f"{path}: not a cluster id (32 hex digits): {text[:40]!r}")
    return text


def _read_incarnation(marker: Path) -> str | None:
    """The incarnation in an UNADMITTED marker (None: no marker, the node was taken in)."""
    try:
        text = marker.read_text("ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"{marker}: unreadable: {exc}") from exc
    return text if _valid_cluster_id(text) else "unknown"


def _read_since(path: Path) -> int:
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"{path}: unreadable: {exc}") from exc
    if not text.isdigit() or len(text) > 18:
        raise OSError(f"{path}: not an index: {text[:40]!r}")
    return int(text)


def _is_fresh(directory: Path) -> bool:
    """Nothing of a node's state in ``directory``: missing, empty, or only what a start that
    crashed before making its log left (the marker files, temporary files)."""
    if not directory.exists():
        return True
    leftovers = {CLUSTER_ID_FILE, UNADMITTED_FILE, MEMBER_SINCE_FILE, "LOCK"}
    return all(p.name in leftovers or p.name.endswith(".tmp") for p in directory.iterdir())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, text: str) -> None:
    """Write ``text`` durably under ``path``: a temporary file, fsynced, renamed, directory fsynced."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _send_all(transport: Transport, messages: list[Message]) -> None:
    for m in messages:
        transport.send(m)


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
    # Without a secret or TLS nothing proves who a peer is: only peers on this machine (loopback)
    # are heard on the Raft and KV ports unless this is set (as Redis's protected mode).
    allow_remote_peers: bool = False
    # Let a test harness cut this node's links, skew its clock and stall its disk through
    # POST /debug/faults (net/faultctl.py). Never on in production.
    fault_injection: bool = False


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
        self._pipeline: Pipeline | None = None  # drains the host's Readies (made at the first kick)
        self._syncer: SyncThread | None = None
        self.faults: FaultControl | None = FaultControl() if self.config.fault_injection else None
        self._stopping = False
        self._leader_since: tuple[int, str] | None = None
        self.incarnation: str | None = None  # this life's id while not taken in (UNADMITTED marker)
        # The leader's commit index when it took this node in after an empty start (0: from the
        # start). Membership events at or below it are of the life before the wipe.
        self.member_since = 0
        self.cluster_id = ""  # made at bootstrap, learned on joining; "" for a node from before ids
        self.api_auth: Any = None  # the API credential it checks and presents (net.auth.bind)
        self.join_state: Any = None  # its joins' backoff and refusal (net.join)
        self._taken_in: dict[str, str] = {}
        self._join_answered = False  # a leader answered our join: it is committed, the log will show it  # leader: node id -> the incarnation whose join it answered
        self.storage_error: str | None = None  # set once a write or sync failed: the node stops serving
        self.halted: NodeHalted | None = None
        self.halt_event = asyncio.Event()  # set with ``halted``: the process running us should exit

    def _member_event(self, event: Any) -> None:
        if event.node.id != self.id:
            return
        host = self.host
        if host is not None and (not host.admitted or host.applying_index <= self.member_since):
            return  # an event of this id's life before its disk was wiped: not about this node
        if event.kind == "join":
            self._was_member = True
            self._leaving = False  # a node that left and joined again (a wiped node's replacement)
        elif event.kind == "leave":
            self._leaving = True  # asked to leave: never rejoin on our own

    # ------------------------------------------------------------ lifecycle
    @property
    def id(self) -> str:
        return self.options.node_id

    async def start(self) -> None:
        tune_gc()
        directory = Path(self.options.data_dir)
        fresh = _is_fresh(directory)
        bootstrap = bool(self.options.bootstrap) and fresh
        seed = int.from_bytes(os.urandom(8), "big")  # real nodes need not replay: fresh randomness
        self.cluster_id = _read_cluster_id(directory)
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
            allow_remote=self.config.allow_remote_peers,
            cluster_id=self.cluster_id,
        )
        if self.faults is not None:
            self.transport.drops = self.faults.drops
        await self.transport.start()
        if bootstrap:
            await self._refuse_a_second_cluster()
        if fresh:
            if not directory.is_dir():
                directory.mkdir(parents=True)
                _fsync_dir(directory.parent)  # else a power cut can lose the new directory
            if bootstrap:
                self.cluster_id = uuid.uuid4().hex
                _write_file(directory / CLUSTER_ID_FILE, self.cluster_id)
                self.transport.cluster_id = self.cluster_id
            else:
                # Not a member until a leader takes it in: if its id still is one, it lost its disk,
                # and must not vote on what it no longer holds (see RaftNode.admitted). The marker
                # holds this life's incarnation, which its join requests carry.
                _write_file(directory / UNADMITTED_FILE, uuid.uuid4().hex)
        self.incarnation = _read_incarnation(directory / UNADMITTED_FILE)
        self.member_since = _read_since(directory / MEMBER_SINCE_FILE)
        admitted = self.incarnation is None
        conf = ConfState(voters=(self.id,)) if bootstrap else None
        self.storage = DiskStorage(directory, conf)
        joining = fresh and not bootstrap
        self.host = NodeHost(
            self.id,
            self.storage,
            Composite(self.kit, {TAG: self.registers}),
            self.raft_config,
            rng=random.Random(seed),
            joining=joining,
            admitted=admitted,
            address=self.options.raft_addr,
            on_event=lambda text: log.info(text),
        )
        self.started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        name = f"{self.id}-raft-sync"
        self._syncer = self.faults.sync_thread(loop, name) if self.faults is not None else SyncThread(loop, name)
        self._tasks.append(loop.create_task(self._ticker()))
        self._tasks.append(loop.create_task(self._membership()))
        self._kick()
        log.info("%s started (%s): raft %s, http %s, data %s%s", self.id,
                 "bootstrap" if bootstrap else "joining" if joining else "restart",
                 self.options.raft_addr, self.options.http_addr, directory,
                 "" if admitted else " (not a voter until the cluster takes it in)")

    async def _refuse_a_second_cluster(self) -> None:
        """BOOTSTRAP on an empty data directory: first listen for an election timeout's worth. A
        node whose peers call it is a member of a cluster that still counts on it (its disk was
        wiped): bootstrapping would make a second cluster under the same name. Stop instead."""
        from clusterkit.cli.codes import EXIT_REFUSED

        assert self.transport is not None
        # Long enough for a leader to call: its heartbeats come every tick once connected, but
        # its dialler waits out a reconnect backoff (up to 1.5 x BACKOFF_MAX) after our old life died.
        await asyncio.sleep(2 * self.config.election_ticks * self.config.tick + 1.5 * BACKOFF_MAX)
        callers = sorted(self.transport.hellos_seen)
        if callers:
            await self.transport.stop()
            raise NodeHalted(EXIT_REFUSED, (
                f"{self.id} was asked to bootstrap on an empty data directory, but {', '.join(callers)} of "
                f"an existing cluster call it (cluster id {self.transport.peer_cluster_id or 'unknown'}): it "
                "will not start a second cluster. Start it with JOIN_ADDR=<a member's HTTP address> and "
                "without BOOTSTRAP: the leader replaces the lost member and it catches up"))

    @property
    def admitted(self) -> bool:
        """False while this node, started on an empty data directory, waits to be taken in."""
        return self.host is not None and self.host.admitted

    def admit(self, cluster_id: str | None = None, since: int = 0) -> None:
        """The leader took this node in (its join was answered): it may vote once promoted. Made
        durable first: the marker goes only after the cluster id is written."""
        self._join_answered = True
        directory = Path(self.options.data_dir)
        if cluster_id and _valid_cluster_id(cluster_id) and cluster_id != self.cluster_id:
            _write_file(directory / CLUSTER_ID_FILE, cluster_id)
            self.cluster_id = cluster_id
            if self.transport is not None:
                self.transport.cluster_id = cluster_id
        if self.host is not None and not self.host.admitted:
            if since > 0:
                _write_file(directory / MEMBER_SINCE_FILE, str(since))
                self.member_since = since
            marker = directory / UNADMITTED_FILE
            marker.unlink(missing_ok=True)
            _fsync_dir(directory)
            self.host.admit()
            self.incarnation = None
            self._leaving = self._was_member = False  # whatever the log said so far was of another life
            log.info("%s: taken in by the cluster: it votes once promoted", self.id)

    async def stop(self) -> None:
        """Stop cleanly: optionally leave the cluster first, then flush and close everything."""
        if self._stopping:
            return
        if self.config.leave_on_stop:
            await self._leave_gracefully()  # still taking messages: the leave goes through the log
        self._stopping = True
        drain = self._sync_pending()
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
            # (after a halt nothing more is written: a full disk would only fail again, and what
            # it holds is all there is)
            self.storage.close(sync=self.halted is None)
        log.info("%s stopped", self.id)

    async def __aenter__(self) -> NetNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ driving the host
    def _on_message(self, msg: Message) -> None:
        if self.host is not None and not self._stopping and self.halted is None:
            self.host.step(msg)
            self._kick()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        ticks = 0
        while self.halted is None:
            next_tick += self.config.tick / (self.faults.clock_rate if self.faults is not None else 1.0)
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            assert self.host is not None
            try:
                self.host.tick()
                ticks += 1
                if ticks % _DISK_CHECK_TICKS == 0:
                    self._check_disk()
            except Exception as exc:  # noqa: BLE001 - stop loudly, never freeze silently
                self._halt_on(exc)
                return
            self._kick()
            if self._waiting:
                self._expire_requests(loop.time())

    def _check_disk(self) -> None:
        """The data directory removed under a running node leaves its open files writable, and the
        node would go on acknowledging writes into deleted files: check that its log is still there."""
        storage = self.storage
        if storage is None or storage.closed:
            return
        log_path = storage.directory / "log"
        if not log_path.exists():
            raise FileNotFoundError(errno.ENOENT, "the data directory's log is gone (directory removed?)",
                                    str(log_path))

    def _kick(self) -> None:
        """Drain the host's Readies once this turn of the loop is over: what arrives meanwhile (the
        rest of a read buffer's frames, this turn's proposals) joins the same Ready."""
        if self._draining or self.host is None:
            return
        self._draining = True
        asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        """The core's Ready pipeline, with this node's transport and its sync thread: while a sync
        runs on the thread, the loop takes messages and proposals and applies what is durable."""
        self._draining = False
        pipeline = self._pipeline
        if pipeline is None:
            host, transport, syncer = self.host, self.transport, self._syncer
            if host is None or transport is None or syncer is None:
                return
            pipeline = self._pipeline = Pipeline(
                host, partial(_send_all, transport), ThreadSyncs(syncer, self._note_fsync),
                held=lambda: self._stopping or self.halted is not None, idle=self._note_role,
                failed=self._halt_on)
        pipeline.kick()

    def _sync_pending(self) -> asyncio.Future[None] | None:
        """The sync under way on the thread, if any (a clean stop lets it finish)."""
        pipeline = self._pipeline
        if pipeline is None or not pipeline.syncing:
            return None
        return pipeline.syncs.pending  # type: ignore[attr-defined]

    def _halt_on(self, exc: BaseException) -> None:
        """A Ready failed to persist or apply. After a failed write or fsync the file's contents are
        unknown (the kernel may have dropped the dirty pages it could not write), so carrying on
        could acknowledge what is not on disk: stop at once, acknowledge nothing more, and let a
        supervisor restart the process on whatever its disk holds (as etcd does on a WAL error)."""
        from clusterkit.cli.codes import EXIT_INTERNAL, EXIT_STORAGE_FAILED
        from clusterkit.raft.errors import StorageError

        if isinstance(exc, (OSError, StorageError)):
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            self.storage_error = f"{type(cause).__name__}: {cause}"
            self.halt(EXIT_STORAGE_FAILED, f"storage failed: {exc}")
        else:
            self.halt(EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {exc}", exc)

    def halt(self, code: int, reason: str, exc: BaseException | None = None) -> None:
        """Stop serving for good: CRITICAL line, /health and /ready 503, no more acknowledgements,
        messages dropped; the process's runner then exits with ``code``."""
        if self.halted is not None:
            return
        self.halted = NodeHalted(code, reason)
        if self.storage_error is None:
            self.storage_error = reason
        log.critical("%s: %s: this node stops (exit code %d) and must be restarted", self.id, reason, code,
                     exc_info=exc)
        if self.host is not None:
            self.host.halt(reason)
        for fut in list(self._waiting):
            if not fut.done():
                fut.set_exception(RaftError(f"unknown: {reason}"))
        self.halt_event.set()

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

    async def add_member(self, node_id: str, raft_addr: str, fresh: bool = False, incarnation: str = "") -> None:
        """On the leader: add ``node_id`` as a Raft learner (idempotent); returns once committed.

        ``fresh``: the node says it started on an empty data directory. If its id is still a voter,
        or still in the cluster state, it lost its disk: it is *replaced*. Its cluster-state entry
        is failed and forgotten (its partitions move to the copies that are left, and it joins
        again as a new node that copies them back), it leaves the Raft voters (so the quorum no
        longer counts a node that forgot what it acknowledged), then it is added back as a learner
        that catches up and is promoted as any new node. ValueError when that can't be done."""
        assert self.host is not None
        deadline = time.monotonic() + self.config.request_timeout
        if fresh and node_id == self.id:
            raise ValueError(f"{node_id} leads this cluster: it can't be replaced while it leads")
        if fresh and incarnation and self._taken_in.get(node_id) == incarnation:
            fresh = False  # replaced already, for this very life of it: its answer was lost
        replacing = replaced = False
        while time.monotonic() < deadline:
            raft = self.host.raft
            if raft is None or not raft.is_leader:
                raise NotLeader(self.id, self.host.leader)
            members = raft.voters + raft.learners
            state = self.kit.state
            if fresh and not replaced and still_a_member(self.host, state, node_id):
                if not replacing:
                    log.warning("%s asks to join with an empty data directory while it is still a member: "
                                "replacing it (its old copies and its vote no longer count)", node_id)
                    replacing = True
                if replace_step(self.host, state, node_id):
                    self._kick()
            elif node_id in members and raft.log.committed >= raft.log.last_index():
                if replacing:
                    log.warning("%s replaced: back as a learner that catches up from the leader", node_id)
                if incarnation:
                    self._taken_in[node_id] = incarnation
                return
            elif node_id not in members:
                replaced = True  # (its old self is out of everything: what is added now is this life)
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
        assert self.host is not None
        host, kit = self.host, self.kit
        raft = host.raft
        if raft is None:
            return
        if not self._joined_raft or not host.admitted:
            # (a node not yet taken in asks until a leader answers it, even once its log shows it:
            # what the log shows may be the membership of its life before its disk was wiped)
            if self.id in raft.voters + raft.learners and host.admitted:
                self._joined_raft = True
            elif self.options.join_addr and not self._join_answered:
                await request_join(self)
                return
            elif self._join_answered:
                return  # the leader added us (committed): wait for the log to bring that here
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
            if info is None and raft.id in raft.voters + raft.learners and raft.log.applied > self.member_since:
                try:
                    raft.remove_node(self.id)  # our data has moved: out of Raft too (a leader hands over)
                    log.info("%s: no longer in the cluster state: leaving the Raft group too", self.id)
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
