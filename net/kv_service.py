"""The KV store on a real node: a thin asyncio driver around the sans-IO
:class:`~clusterkit.kv.server.KVServer`.

It moves bytes, time and disk syncs, nothing else (quorums, fences and migrations are the core's):

- **One TCP port** (``--kv-addr``/``KV_ADDR``) for node peers and SDK clients: length-prefixed
  msgpack frames (:mod:`.frames`), each frame after the handshake one KV message in the core's
  codec (:mod:`clusterkit.kv.messages`). A node peer opens with the Raft transport's hello (and,
  with a cluster secret, the same HMAC proofs both ways); a client opens with
  ``[CLIENT_HELLO, version, cluster]`` and is answered ``[CLIENT_HELLO, version, node_id]``. As the
  Raft transport does, a node sends to a peer on a connection it dialled and receives on the ones
  it accepted; a client gets its answers on its own connection. A connection that starts with an
  HTTP method instead is handed to the node's HTTP API, so the seed's ``curl
  http://localhost:9080/kv/set`` works on the KV port too.
- **Durability**: the core's :class:`~clusterkit.host.kv_pipeline.KVPipeline` (the simulator's
  too) precedes every batch of server output with one append + ``fdatasync`` of the data's new
  log entries (:class:`.kv_disk.KVLog`, on the sync thread; group commit: while a sync runs, new
  requests are handled and their entries wait for the next one); answers leave only after their
  sync, except those that report only durable data.
- **Time**: the server is ticked every ``tick`` seconds (0.1 s, as in the simulator).
- **Discovery**: the node publishes its KV address in its own entry of the replicated cluster
  state (:class:`~clusterkit.cluster_state.NodeInfo` ``kv_addr``, set by the cluster-state join
  it proposes itself), so every node's ``/cluster`` lists every node's ``kv_addr``, and peers
  send to the address found there and nowhere else: not the user-writable registers (a ``PUT
  /registers/kv%2Faddr%2Fnode-2`` once redirected node-2's traffic), not a peer's hello.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterkit.cluster_state import ACTIVE, join_command
from clusterkit.host.kv_pipeline import KVPipeline
from clusterkit.kv.data import KVData
from clusterkit.kv.messages import (
    Get,
    Message,
    ProtocolError,
    Pull,
    Query,
    Refused,
    Set,
    Store,
    encode,
    encode_batch,
    from_frame,
)
from clusterkit.kv.server import KVServer, ServerConfig
from clusterkit.raft.errors import RaftError, StorageError

from .addr import http_bind, split_addr
from .auth import auth_of
from .frames import (
    ACCEPT,
    is_loopback,
    DIAL,
    HEADER,
    HELLO,
    FrameError,
    FrameReader,
    Transcript,
    auth_frame,
    check_auth,
    check_length,
    decode_body,
    frame,
    hello_frame,
    parse_hello,
)
from .gc_policy import tune_gc
from .kv_disk import KVLog
from .kv_wire import CLIENT_HELLO, CLIENT_VERSION, HELLO_MAX_FRAME, KV_MAX_FRAME
from .sync_thread import SyncThread, ThreadSyncs
from .transport import read_frame

if TYPE_CHECKING:
    from .node import NetNode

log = logging.getLogger("clusterkit.net.kv")

HANDSHAKE_TIMEOUT = 5.0
CONNECT_TIMEOUT = 3.0
MAX_CLIENT_BUFFER = 64 << 20  # a client that doesn't read its answers is cut off past this
BREAK_MIGRATION_ENV = "CLUSTERKIT_KV_BREAK_MIGRATION"  # tests only: confirm copies without pulling
_HTTP_FIRST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # a frame's first byte is 0 (length < 16 MB)


@dataclass(frozen=True)
class KVOptions:
    addr: str  # host:port to listen on (port 0: any free port, published through the registers)
    server: ServerConfig = field(default_factory=ServerConfig)
    tick: float = 0.1
    break_migration: bool = False  # tests only: see BREAK_MIGRATION_ENV
    # TLS on the KV port (runner.TlsFiles.kv_context): clients present no certificate, peers
    # present theirs (checked with the node's CA, and required); peers are dialled with the
    # node's own client context. ``http_tls``: the HTTP API the port hands curl requests to is https.
    ssl: ssl.SSLContext | None = None
    http_tls: bool = False


def encode_frame(msg: Message) -> bytes:
    data = encode(msg)
    return HEADER.pack(len(data)) + data


def encode_frames(msgs: list[Message]) -> list[bytes]:
    """Messages for one destination: one frame for all of them, or one each if that one frame
    would be too large (migration batches of several MiB)."""
    data = encode_batch(msgs)
    if len(data) <= KV_MAX_FRAME // 4 or len(msgs) == 1:
        return [HEADER.pack(len(data)) + data]
    return [encode_frame(m) for m in msgs]


@dataclass
class _Peer:
    id: str
    queue: list[bytes] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    dropped: int = 0


class KVService:
    def __init__(self, node: NetNode, options: KVOptions) -> None:
        self.node = node
        self.options = options
        self.addr = options.addr
        self.server: KVServer | None = None
        self.kvlog: KVLog | None = None
        self._syncer: SyncThread | None = None
        self.broken = options.break_migration
        self._server: asyncio.Server | None = None
        self._peers: dict[str, _Peer] = {}
        self._clients: dict[str, asyncio.StreamWriter] = {}
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._names = count(1)
        self._pipeline: KVPipeline | None = None  # log, sync, send (made at start)
        self._kicked = False  # a pipeline run is due this turn of the loop
        self._failed: BaseException | None = None
        self._running = False
        self.sync_seconds: list[float] = []
        self.frame_errors = 0
        # The https API that HTTP requests on this port go on to: our own, over loopback, so
        # encrypted without checking its certificate (made once: a context loads no CA store).
        self._upstream_ssl: ssl.SSLContext | None = None
        if options.http_tls:
            self._upstream_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self._upstream_ssl.check_hostname = False
            self._upstream_ssl.verify_mode = ssl.CERT_NONE

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        directory = Path(self.node.options.data_dir) / "kv"
        self.kvlog = KVLog(directory)
        entries = await asyncio.to_thread(self.kvlog.load)
        self._syncer = SyncThread(asyncio.get_running_loop(), f"{self.node.id}-kv-sync")
        data = KVData.replay(entries)
        # Request ids must not repeat across restarts (peers remember answers by sender and id):
        # each life draws its own incarnation.
        incarnation = int.from_bytes(os.urandom(4), "big") >> 1
        self.server = KVServer(self.node.kit, data, self.options.server, incarnation=incarnation)
        self.server.answer_early = True  # the pipeline marks what is synced and sends early answers
        self._pipeline = KVPipeline(self.server, self.kvlog, self._route, ThreadSyncs(self._syncer, self._note_sync),
                                    failed=self._fail, name=self.node.id)
        tune_gc()
        host, port = split_addr(self.options.addr)
        bind = "0.0.0.0" if self.options.addr.startswith(":") else host
        self._server = await asyncio.start_server(self._accept, bind, port, limit=1 << 20, ssl=self.options.ssl)
        real_port = self._server.sockets[0].getsockname()[1]
        # ":9080" listens everywhere and is published with the host of this node's Raft address.
        public = split_addr(self.node.options.raft_addr)[0] if self.options.addr.startswith(":") else host
        self.addr = f"{'127.0.0.1' if public in ('0.0.0.0', '') else public}:{real_port}"
        self._running = True
        self._spawn(self._ticker())
        self._spawn(self._publish())
        log.info("%s: KV store (%s) on %s: %d keys replayed from %d log entries", self.node.id,
                 self.options.server.strategy, self.addr, data.keys(), len(entries))

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks) + [p.task for p in self._peers.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._clients.values()):
            writer.close()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self._syncer is not None:
            self._syncer.stop()
        if self.kvlog is not None:
            self.kvlog.close()
        log.info("%s: KV store stopped", self.node.id)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ driving the server
    def _handle(self, src: str, msg: Message) -> None:
        if self.server is None or self._failed is not None:
            self._refuse_down(src, [msg])
            return
        self.server.handle(src, msg)
        self._kick()

    def _refuse_down(self, src: str, msgs: list[Message]) -> None:
        """Requests to a store that can't answer: refused at once (a client waiting out its timeout
        would take "no answer" for "maybe written")."""
        why = "the KV store is starting" if self._failed is None else f"this node's KV log failed: {self._failed}"
        out: list[tuple[str, Message]] = [
            (src, Refused(m.rid, "unavailable", 0, why)) for m in msgs if isinstance(m, (Set, Get, Query, Store))
        ]
        if out:
            self._route(out)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += self.options.tick
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            assert self.server is not None
            try:
                self.server.tick()
                if self.broken:
                    self._confirm_without_copying()
            except Exception:  # noqa: BLE001 - a bug must be seen, and must not stop the ticks
                log.exception("%s: KV tick failed", self.node.id)
            self._kick()

    def _confirm_without_copying(self) -> None:
        """The deliberately broken migration (tests): claim every copy done, pull nothing."""
        kit = self.node.kit
        if kit.state.config is None:
            return
        for p in range(kit.state.config.partition_count):
            if self.node.id in kit.state.incoming(p):
                try:
                    kit.confirm_copy(p)
                    self.node._kick()
                except Exception:  # noqa: BLE001 - no leader now: next tick
                    pass

    def _kick(self) -> None:
        """Log, sync and send once this turn of the loop is over: what every connection handled
        meanwhile joins the same record."""
        if not self._kicked and self._running:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._run_pipeline)

    def _run_pipeline(self) -> None:
        self._kicked = False
        if self._running and self._pipeline is not None:
            self._pipeline.kick()

    def _fail(self, exc: BaseException) -> None:
        """A KV log write or sync failed: never answer what may not be durable."""
        self._failed = exc
        from clusterkit.cli.codes import EXIT_INTERNAL, EXIT_STORAGE_FAILED

        if isinstance(exc, (OSError, StorageError)):
            self.node.storage_error = f"KV log: {type(exc).__name__}: {exc}"
            self.node.halt(EXIT_STORAGE_FAILED, f"the KV log write failed: {exc}")  # logs CRITICAL
        else:  # not the disk: a bug (the traceback goes with the CRITICAL line)
            self.node.halt(EXIT_INTERNAL, f"the KV store's flush failed: {type(exc).__name__}: {exc}", exc)

    def _note_sync(self, seconds: float) -> None:
        self.sync_seconds.append(seconds)
        if len(self.sync_seconds) > 1024:
            del self.sync_seconds[:512]

    def _route(self, out: list[tuple[str, Message]]) -> None:
        grouped: dict[str, list[Message]] = {}
        for dst, msg in out:
            msgs = grouped.get(dst)
            if msgs is None:
                grouped[dst] = [msg]
            else:
                msgs.append(msg)
        for dst, msgs in grouped.items():
            if self._waiters:
                waiter = self._waiters.pop(dst, None)
                if waiter is not None:  # a local request (HTTP): its one answer
                    if not waiter.done():
                        waiter.set_result(msgs[0])
                    continue
            if self.broken:
                msgs = [m for m in msgs if not isinstance(m, Pull)]  # the broken migration never copies anything
                if not msgs:
                    continue
            batch = encode_frames(msgs)
            writer = self._clients.get(dst)
            if writer is not None:
                if writer.transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
                    log.warning("%s: client %s does not read its answers: disconnecting", self.node.id, dst)
                    writer.close()
                    continue
                writer.write(b"".join(batch))
            elif not dst.startswith(("client:", "http:")):
                self._to_peer(dst, batch)

    # ------------------------------------------------------------ local requests (the HTTP routes)
    async def request(self, make: Callable[[int], Message], timeout: float = 10.0) -> Message:
        """Hand the server one client request as a local endpoint; its answer (Result or Refused)."""
        name = f"http:{next(self._names)}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[name] = fut
        try:
            self._handle(name, make(1))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(name, None)

    # ------------------------------------------------------------ discovery
    async def _publish(self) -> None:
        """Keep our KV address in our own entry of the cluster state: once the node is an active
        member, it proposes its join again with ``kv_addr`` set (the same entry otherwise, so the
        state takes it as a retried join that moves the address), until the state says so."""
        while True:
            published = self._publish_once()
            await asyncio.sleep(2.0 if published else 0.3)

    def _publish_once(self) -> bool:
        """Whether the cluster state lists our KV address; if not, propose it (when we can)."""
        kit, host = self.node.kit, self.node.host
        info = kit.state.nodes.get(self.node.id)
        if info is not None and info.kv_addr == self.addr:
            return True
        raft = host.raft if host is not None else None
        if (host is None or raft is None or info is None or info.status != ACTIVE or kit.state.config is None
                or raft.leader is None or self.node.id not in raft.voters + raft.learners):
            return False  # not an active member yet: its own join comes first
        try:
            host.submit(join_command(kit.state.config, replace(info, kv_addr=self.addr)))
            self.node._kick()
        except RaftError as exc:
            log.debug("%s: KV address not proposed yet: %s", self.node.id, exc)
        return False

    def peer_addr(self, node_id: str) -> str | None:
        """Where ``node_id``'s KV store listens, as the cluster state says (None: not known yet)."""
        info = self.node.kit.state.nodes.get(node_id)
        return (info.kv_addr or None) if info is not None else None

    # ------------------------------------------------------------ peers: sending
    def _to_peer(self, dst: str, batch: list[bytes]) -> None:
        peer = self._peers.get(dst)
        if peer is None:
            peer = self._peers[dst] = _Peer(dst)
        if len(peer.queue) > 100_000:
            peer.dropped += len(batch)  # the server retries what matters
            return
        peer.queue.extend(batch)
        peer.wakeup.set()
        if peer.task is None and self._running:
            peer.task = asyncio.get_running_loop().create_task(self._peer_writer(peer))

    async def _peer_writer(self, peer: _Peer) -> None:
        backoff = 0.05
        while self._running:
            await peer.wakeup.wait()
            addr = self.peer_addr(peer.id)
            if not addr:
                peer.dropped += len(peer.queue)
                peer.queue.clear()
                peer.wakeup.clear()
                continue
            writer: asyncio.StreamWriter | None = None
            closed: asyncio.Future[bytes] | None = None
            try:
                reader, writer = await self._dial(addr, peer.id)
                backoff = 0.05
                closed = asyncio.ensure_future(reader.read(1))  # the peer never writes: EOF means gone
                while self._running:
                    if not peer.queue:
                        peer.wakeup.clear()
                        woken = asyncio.ensure_future(peer.wakeup.wait())
                        await asyncio.wait({woken, closed}, return_when=asyncio.FIRST_COMPLETED)
                        woken.cancel()
                    if closed.done():
                        raise ConnectionResetError(f"{peer.id} closed the KV connection")
                    data = b"".join(peer.queue)
                    peer.queue.clear()
                    writer.write(data)
                    await writer.drain()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, FrameError) as exc:
                log.debug("%s: KV connection to %s at %s: %s", self.node.id, peer.id, addr, exc)
                peer.dropped += len(peer.queue)
                peer.queue.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                if closed is not None:
                    closed.cancel()
                if writer is not None:
                    writer.close()

    async def _dial(self, addr: str, peer_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = split_addr(addr)
        tls = self.node.config.client_ssl if self.options.ssl is not None else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls is not None else None),
            CONNECT_TIMEOUT)
        try:
            await asyncio.wait_for(self._dial_handshake(reader, writer, peer_id), HANDSHAKE_TIMEOUT)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _dial_handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_id: str) -> None:
        nonce = os.urandom(16)
        cluster = self.node.options.cluster_name
        writer.write(hello_frame(cluster, self.node.id, self.addr, nonce))
        await writer.drain()
        body, _ = await read_frame(reader, KV_MAX_FRAME)
        hello = parse_hello(body, cluster)
        if hello.node_id != peer_id:
            raise FrameError(f"handshake: dialled {peer_id} but {hello.node_id} answered", "handshake")
        secret = self.node.config.secret
        if secret is not None:
            t = Transcript(self.node.id, hello.node_id, nonce, hello.nonce)
            writer.write(auth_frame(secret, DIAL, t))
            await writer.drain()
            body, _ = await read_frame(reader, KV_MAX_FRAME)
            check_auth(body, secret, ACCEPT, t)

    # ------------------------------------------------------------ receiving
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        who = "?"
        try:
            first = await reader.readexactly(1)
            if first[0] in _HTTP_FIRST:
                await self._proxy_http(first, reader, writer)
                return
            header = first + await reader.readexactly(3)
            length = check_length(header, HELLO_MAX_FRAME)
            body = decode_body(await reader.readexactly(length))
            if body[0] == CLIENT_HELLO:
                who = f"client:{next(self._names)}"
                await self._serve_client(who, body, reader, writer)
            elif body[0] == HELLO:
                who = await self._accept_peer(body, reader, writer)
                await self._read_messages(who, reader)
            else:
                raise FrameError("the first frame must be a hello", "handshake")
        except asyncio.CancelledError:
            pass
        except (FrameError, ProtocolError) as exc:
            self.frame_errors += 1
            log.warning("%s: closed a KV connection from %s: %s", self.node.id, who, exc)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, OSError) as exc:
            log.debug("%s: KV connection from %s closed: %s", self.node.id, who, exc)
        except Exception:  # noqa: BLE001 - a bug closes one connection, never the node
            self.frame_errors += 1
            log.exception("%s: dropping a KV connection from %s", self.node.id, who)
        finally:
            self._clients.pop(who, None)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _accept_peer(self, body: list[Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        cluster = self.node.options.cluster_name
        hello = parse_hello(body, cluster)
        tls = self.options.ssl
        if tls is not None and tls.verify_mode != ssl.CERT_NONE and not writer.get_extra_info("peercert"):
            # (the port takes clients without certificates; a peer node must show its own)
            raise FrameError(f"handshake: {hello.node_id} presented no certificate on the KV port", "tls")
        config = self.node.config
        # Nothing proves a peer without a secret or TLS: then only peers on this machine are heard,
        # unless the operator says otherwise (NodeConfig.allow_remote_peers, --allow-remote-peers).
        if (config.secret is None and tls is None and not config.allow_remote_peers
                and not is_loopback(writer.get_extra_info("peername"))):
            raise FrameError(f"handshake: {hello.node_id} is not on this machine, and without a cluster secret"
                             " only loopback peers are heard (--allow-remote-peers)", "handshake")
        nonce = os.urandom(16)
        writer.write(hello_frame(cluster, self.node.id, self.addr, nonce))
        await writer.drain()
        secret = self.node.config.secret
        if secret is not None:
            t = Transcript(hello.node_id, self.node.id, hello.nonce, nonce)
            auth, _ = await asyncio.wait_for(read_frame(reader, KV_MAX_FRAME), HANDSHAKE_TIMEOUT)
            check_auth(auth, secret, DIAL, t)
            writer.write(auth_frame(secret, ACCEPT, t))
            await writer.drain()
        return hello.node_id

    async def _serve_client(self, name: str, body: list[Any], reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        if len(body) < 3 or body[1] != CLIENT_VERSION or body[2] != self.node.options.cluster_name:
            writer.write(frame([CLIENT_HELLO, CLIENT_VERSION, "", f"refused: this is cluster "
                                f"{self.node.options.cluster_name!r}, protocol {CLIENT_VERSION}"]))
            await writer.drain()
            raise FrameError(f"client hello for {body[1:3]!r}", "handshake")
        problem = self._client_credential_problem(body, writer)
        if problem is not None:
            writer.write(frame([CLIENT_HELLO, CLIENT_VERSION, "", f"refused: {problem}"]))
            await writer.drain()
            raise FrameError(f"client hello refused: {problem}", "auth")
        writer.write(frame([CLIENT_HELLO, CLIENT_VERSION, self.node.id]))
        await writer.drain()
        self._clients[name] = writer
        await self._read_messages(name, reader)

    def _client_credential_problem(self, body: list[Any], writer: asyncio.StreamWriter) -> str | None:
        """A client reads and writes data, so it needs the API's credential (net/auth.py): the
        token as the hello's fourth field, or a certificate the KV port's TLS verified."""
        auth = auth_of(self.node)
        if not auth.required:
            return None
        if len(body) > 3 and auth.token_ok(body[3]):
            return None
        tls = self.options.ssl
        if tls is not None and tls.verify_mode != ssl.CERT_NONE and writer.get_extra_info("peercert"):
            return None
        return "the credential is not valid" if len(body) > 3 else "a credential is required (an API token)"

    async def _read_messages(self, src: str, reader: asyncio.StreamReader) -> None:
        frames = FrameReader(reader, KV_MAX_FRAME)
        while self._running:
            bodies = await frames.frames()
            if self.server is None or self._failed is not None:
                self._refuse_down(src, [m for body in bodies for m in from_frame(body)])
                continue
            server = self.server
            for body in bodies:  # every frame that arrived, then one flush for all of them
                for msg in from_frame(body):
                    server.handle(src, msg)
            self._kick()

    async def _proxy_http(self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """An HTTP request on the KV port (the seed's curl examples): pass it to the node's HTTP API."""
        host, port = http_bind(self.node.options.http_addr)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1" if host == "0.0.0.0" else host, port,
                                                             ssl=self._upstream_ssl)
        up_writer.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                if dst.can_write_eof():
                    try:
                        dst.write_eof()
                    except OSError:
                        pass

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    # ------------------------------------------------------------ stats
    def stats(self) -> dict[str, Any]:
        assert self.server is not None and self.kvlog is not None
        syncs = sorted(self.sync_seconds)
        return {
            **self.server.stats_dict(),
            "kv_addr": self.addr,
            **self.kvlog.stats(),
            "sync_p50_ms": round(1000 * syncs[len(syncs) // 2], 3) if syncs else None,
            "clients": len(self._clients),
            "peer_dropped": {p.id: p.dropped for p in self._peers.values() if p.dropped},
            "frame_errors": self.frame_errors,
            "failed": str(self._failed) if self._failed else None,
        }
