"""Raft messages between nodes over TCP (optionally TLS): connections, handshake, reconnects.

Each node sends on connections it dials and receives on connections it
accepts: one stream per direction between two nodes, as etcd's rafthttp
does, so neither side ever waits for the other to dial (a learner the
leader just added is reached at once; it answers on its own connection, to
the address the leader's hello gave). A peer's outbound connection is made
when there is something to send, kept, and redialled with jittered
exponential backoff when it breaks; messages queued meanwhile are bounded
and dropped when the queue is full or the peer unreachable (Raft resends).
Writes are coalesced: everything queued for a peer goes out in one write.

Every inbound frame is checked (see :mod:`.frames`): a bad one closes that
connection with a logged reason and a counter per reason; the node keeps
running and nothing it acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from clusterkit.raft.messages import Message

from .addr import split_addr
from .frames import (
    ACCEPT,
    is_loopback,
    DEFAULT_MAX_FRAME,
    DIAL,
    FrameError,
    Transcript,
    auth_frame,
    check_auth,
    check_length,
    decode_body,
    hello_frame,
    parse_hello,
    parse_raft,
    raft_frame,
)

log = logging.getLogger("clusterkit.net.transport")

HANDSHAKE_TIMEOUT = 5.0
CONNECT_TIMEOUT = 3.0
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0


@dataclass
class PeerStats:
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    dropped: int = 0  # queue full, or no address for the peer
    connects: int = 0
    cut: int = 0  # dropped by fault injection (a cut link)


@dataclass
class _Peer:
    id: str
    queue: deque[bytes] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> tuple[list, int]:
    header = await reader.readexactly(4)
    length = check_length(header, max_frame)
    data = await reader.readexactly(length)
    return decode_body(data), length + 4


class Transport:
    def __init__(
        self,
        node_id: str,
        cluster: str,
        listen_addr: str,
        on_message: Callable[[Message], None],
        address_of: Callable[[str], str | None],
        *,
        secret: bytes | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_limit: int = 4096,
        rng: random.Random | None = None,
        allow_remote: bool = False,
        cluster_id: str = "",
    ) -> None:
        """``allow_remote``: hear peers from other machines even though nothing proves who they are
        (no secret, no TLS). With a secret or TLS they are always heard: the handshake proves them."""
        self.node_id = node_id
        self.cluster = cluster
        self.listen_addr = listen_addr
        self.on_message = on_message
        self.address_of = address_of
        self.secret = secret
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.max_frame = max_frame
        self.queue_limit = queue_limit
        self.rng = rng or random.Random()
        self.remote_ok = allow_remote or secret is not None or server_ssl is not None
        self.cluster_id = cluster_id  # ours ("" until made or learned): a peer of another is refused
        self.peer_cluster_id = ""  # the id a peer's hello gave while we had none
        self.hellos_seen: set[str] = set()  # peers that completed a handshake with us
        self.stats: dict[str, PeerStats] = {}
        self.frame_errors: Counter[str] = Counter()  # reason -> connections closed for it
        self.hints: dict[str, str] = {}  # peer -> the raft address its hello gave
        self._peers: dict[str, _Peer] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.Task[None]] = set()
        self._running = False
        # Fault injection (net/faultctl.py): peers whose messages are dropped here, as if the link were cut.
        self.drops: Callable[[str], bool] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        host, port = split_addr(self.listen_addr)
        self._running = True
        # TLS is started in _accept, not here: a failed TLS handshake (a plain-TCP peer, a client
        # without a certificate) is then counted like any other refused connection.
        self._server = await asyncio.start_server(self._accept, host, port)

    async def stop(self) -> None:
        self._running = False
        if self._server is not None:
            self._server.close()
        tasks = [p.task for p in self._peers.values() if p.task is not None] + list(self._inbound)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def peer_stats(self, peer: str) -> PeerStats:
        stats = self.stats.get(peer)
        if stats is None:
            stats = self.stats[peer] = PeerStats()
        return stats

    # ------------------------------------------------------------ sending
    def send(self, msg: Message) -> None:
        """Queue ``msg`` for its destination; never blocks. Dropped when the queue is full."""
        if self.drops is not None and self.drops(msg.dst):
            self.peer_stats(msg.dst).cut += 1
            return
        peer = self._peers.get(msg.dst)
        if peer is None:
            peer = self._peers[msg.dst] = _Peer(msg.dst)
        if len(peer.queue) >= self.queue_limit:
            self.peer_stats(msg.dst).dropped += 1
            return
        peer.queue.append(raft_frame(msg))
        peer.wakeup.set()
        if peer.task is None and self._running:
            peer.task = asyncio.get_running_loop().create_task(self._writer(peer))

    async def _writer(self, peer: _Peer) -> None:
        backoff = BACKOFF_MIN
        stats = self.peer_stats(peer.id)
        while self._running:
            await peer.wakeup.wait()
            addr = self.address_of(peer.id) or self.hints.get(peer.id)
            if not addr:
                stats.dropped += len(peer.queue)
                peer.queue.clear()
                peer.wakeup.clear()
                continue
            writer: asyncio.StreamWriter | None = None
            eof_watch: asyncio.Future[bytes] | None = None
            try:
                reader, writer = await self._dial(addr, peer.id)
                stats.connects += 1
                backoff = BACKOFF_MIN
                # The peer never writes on a connection we dialled: EOF (or anything at all) on it means
                # the connection is gone, e.g. the peer restarted. Without watching for it, frames
                # written to a dead socket "succeed" locally and vanish until a later write fails.
                closed = asyncio.ensure_future(reader.read(1))
                closed.add_done_callback(lambda f, wakeup=peer.wakeup: f.cancelled() or wakeup.set())  # wakes the wait
                eof_watch = closed
                while self._running:
                    if not peer.queue:
                        peer.wakeup.clear()
                        await peer.wakeup.wait()  # new frames, or the connection closed
                    if closed.done():
                        raise ConnectionResetError(f"{peer.id} closed the connection")
                    batch = list(peer.queue)
                    peer.queue.clear()
                    data = b"".join(batch)
                    writer.write(data)  # coalesced: one write for everything queued
                    await writer.drain()
                    stats.messages_sent += len(batch)
                    stats.bytes_sent += len(data)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, FrameError, ssl.SSLError) as exc:
                if isinstance(exc, FrameError):
                    self._frame_error(peer.id, exc)
                else:
                    log.debug("%s: connection to %s at %s: %s", self.node_id, peer.id, addr, exc)
                stats.dropped += len(peer.queue)
                peer.queue.clear()  # Raft resends what matters; stale messages only slow a reconnect
                await asyncio.sleep(backoff * (0.5 + self.rng.random()))
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                if eof_watch is not None:
                    eof_watch.cancel()
                    eof_watch = None
                if writer is not None:
                    writer.close()

    # ------------------------------------------------------------ handshake
    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         dialled: str | None = None):
        """Hellos both ways, then (with a secret) the proofs: the dialler's first, checked before the
        acceptor sends its own, so a stranger gets no proof out of a node. ``dialled``: the peer this
        side dialled (None on an accepted connection). Returns the peer's hello."""
        nonce = os.urandom(16)
        writer.write(hello_frame(self.cluster, self.node_id, self.listen_addr, nonce, self.cluster_id))
        await writer.drain()
        body, _ = await read_frame(reader, self.max_frame)
        hello = parse_hello(body, self.cluster)
        if dialled is not None and hello.node_id != dialled:
            raise FrameError(f"handshake: dialled {dialled} but {hello.node_id} answered", "handshake")
        if hello.cluster_id and self.cluster_id and hello.cluster_id != self.cluster_id:
            # Same name, another cluster (one bootstrapped again beside it, say): never mix them.
            raise FrameError(f"handshake: {hello.node_id} belongs to another cluster of the same name (id "
                             f"{hello.cluster_id}, ours {self.cluster_id}): refused", "cluster-id")
        if self.secret is not None:
            if dialled is not None:
                t = Transcript(self.node_id, hello.node_id, nonce, hello.nonce)
                writer.write(auth_frame(self.secret, DIAL, t))
                await writer.drain()
                body, _ = await read_frame(reader, self.max_frame)
                check_auth(body, self.secret, ACCEPT, t)
            else:
                t = Transcript(hello.node_id, self.node_id, hello.nonce, nonce)
                body, _ = await read_frame(reader, self.max_frame)
                check_auth(body, self.secret, DIAL, t)
                writer.write(auth_frame(self.secret, ACCEPT, t))
                await writer.drain()
        self.hellos_seen.add(hello.node_id)
        if hello.cluster_id and not self.cluster_id:
            self.peer_cluster_id = hello.cluster_id
        return hello

    # ------------------------------------------------------------ receiving
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        peer = "?"
        try:
            if not self.remote_ok and not is_loopback(writer.get_extra_info("peername")):
                self.frame_errors["remote"] += 1
                log.warning("%s: closed a connection from %s: without a cluster secret or TLS only peers on this "
                            "machine are heard (--allow-remote-peers to hear others)", self.node_id,
                            writer.get_extra_info("peername"))
                return
            if self.server_ssl is not None:
                try:
                    await writer.start_tls(self.server_ssl, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
                except (ssl.SSLError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                    self.frame_errors["tls"] += 1
                    log.warning("%s: closed a connection from %s: TLS handshake failed: %s", self.node_id,
                                writer.get_extra_info("peername"), exc or type(exc).__name__)
                    return
            hello = await asyncio.wait_for(self._handshake(reader, writer), HANDSHAKE_TIMEOUT)
            peer = hello.node_id
            if hello.raft_addr:
                self.hints[peer] = hello.raft_addr
            stats = self.peer_stats(peer)
            while self._running:
                body, size = await read_frame(reader, self.max_frame)
                msg = parse_raft(body, peer, self.node_id)
                stats.messages_received += 1
                stats.bytes_received += size
                self.on_message(msg)
        except asyncio.CancelledError:
            pass  # shutting down: end quietly (asyncio would log a cancelled handler as an error)
        except FrameError as exc:
            self._frame_error(peer, exc)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError) as exc:
            log.debug("%s: inbound connection from %s closed: %s", self.node_id, peer, exc)
        except Exception:  # noqa: BLE001 - a handler bug must close one connection, never the node
            self.frame_errors["internal"] += 1
            log.exception("%s: dropping a connection from %s", self.node_id, peer)
        finally:
            writer.close()
            if task is not None:
                self._inbound.discard(task)

    async def _dial(self, addr: str, peer_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to ``addr`` and complete the handshake expecting ``peer_id`` (the caller closes)."""
        host, port = split_addr(addr)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self.client_ssl, server_hostname=host if self.client_ssl else None),
            CONNECT_TIMEOUT,
        )
        try:
            await asyncio.wait_for(self._handshake(reader, writer, dialled=peer_id), HANDSHAKE_TIMEOUT)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    @property
    def authenticates(self) -> bool:
        """Peers must prove something (the cluster secret, a certificate) before they are heard."""
        return self.secret is not None or self.client_ssl is not None

    async def verify_peer(self, node_id: str, addr: str) -> tuple[str | None, bool]:
        """Dial ``addr`` and run the handshake as with any peer, expecting ``node_id``, then hang up.

        For a join: a node is only added once it has shown it can talk to the cluster (knows the
        secret, has a certificate), so a stranger can't put itself in the Raft configuration.
        (None, _) when it passed, else (why not, whether asking again may help: it could not be
        reached, rather than failing the handshake)."""
        writer: asyncio.StreamWriter | None = None
        try:
            _, writer = await self._dial(addr, node_id)
            return None, False
        except FrameError as exc:
            self._frame_error(node_id, exc)
            return str(exc), False
        except asyncio.IncompleteReadError:  # it hung up on our proof: it holds another secret, or none
            self.frame_errors["handshake"] += 1
            return "it closed the connection during the handshake (no cluster secret, or another one)", False
        except (ssl.SSLError, ValueError) as exc:
            return f"no handshake with {addr}: {exc or type(exc).__name__}", False
        except (OSError, asyncio.TimeoutError) as exc:
            return f"could not reach {addr}: {exc or type(exc).__name__}", True
        finally:
            if writer is not None:
                writer.close()

    def _frame_error(self, peer: str, exc: FrameError) -> None:
        self.frame_errors[exc.reason] += 1
        log.warning("%s: closed a connection with %s: %s", self.node_id, peer, exc)
