"""The KV store's client SDK: a smart client that routes by the cluster's map, and a simple one.

:class:`KVClient` fetches ``/cluster`` from any node (seed HTTP addresses), computes each key's
partition with the cluster's own ``hash_config``, and talks msgpack frames straight to the nodes'
KV ports (the ``kv_addr`` of each node in ``/cluster``). It polls ``/cluster`` with
``If-None-Match`` and refreshes at once when a node answers ``stale`` or a connection breaks.

How a request goes, by the cluster's strategy (``strategy=``, the nodes' ``--kv-strategy``):

- ``sync``: the client coordinates: each read or write is an ABD operation
  (:class:`clusterkit.kv.operation.Operation`, the same code the nodes run) against the partition's
  owners, done on W acknowledgements (R answers for reads, with write-back);
- ``async``: the request goes to the partition's primary, which acknowledges once it has written
  locally and replicates in the background;
- ``server-side``: the request goes to the primary, which runs the quorum operation (any node
  would do: a non-owner forwards).

``smart=False`` makes the simple client: every request goes to one node (any), which routes it.

Outcomes: a read returns the value (None: never written, or deleted); a write returns its
:class:`~clusterkit.kv.records.Record`. :class:`KVFailed` means nothing was written;
:class:`KVUnknown` that the write may or may not have happened (a timeout, a connection lost
after sending): like any distributed store's indeterminate result, retry or read to find out.
A write is never resent by the SDK once it may have been applied, so it can't take effect twice.

Async API: ``async with KVClient([...]) as kv: await kv.set(...)``; :mod:`.blocking` wraps it for
synchronous code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl as ssl_module
from collections.abc import Callable, Coroutine
from itertools import count
from typing import Any

import aiohttp

from clusterkit.kv.messages import Found, Get, Message, Query, Refused, Result, Set, to_doc
from clusterkit.kv.operation import Operation
from clusterkit.kv.quorum import Placement, Quorums
from clusterkit.kv.records import Record, Value
from clusterkit.kv.server import check_request
from clusterkit.kv.strategies import by_name

from ..addr import http_base
from .conn import Conn
from .errors import KVBadRequest, KVError, KVFailed, KVUnknown
from .topology import Topology

log = logging.getLogger("clusterkit.net.client")

NUMBER_CACHE = 1 << 16  # keys whose partition the client remembers (forgotten all at once past that)
_TIMED_OUT = object()  # what the sweeper ends a request's wait with at its deadline


class _Run:
    """One SYNC operation under way: routes its answers to its Operation and sends what that returns.
    An object with bound methods rather than closures, which referred to each other: a reference
    cycle per operation, left to the cyclic collector (8.7 µs of the client's CPU per write)."""

    __slots__ = ("client", "op", "wake", "rid")

    def __init__(self, client: KVClient, op: Operation, wake: asyncio.Future[Any]) -> None:
        self.client, self.op, self.wake = client, op, wake
        self.rid = 0  # the request id routed here (dropped when the operation ends)

    def on_message(self, src: str, msg: Message) -> None:
        op = self.op
        out = op.on_message(src, msg)
        if out:
            self.send(out)
        if (op.outcome is not None or op.stale) and not self.wake.done():
            self.wake.set_result(None)

    def send(self, out: list[tuple[str, Message]]) -> None:
        if not out:
            return
        client, rid = self.client, self.op.rid
        if rid != self.rid:
            handlers = client._handlers
            # Only the current phase's answers are routed: the Operation ignores an earlier one's
            # (the copy that answers after a quorum did), so they needn't reach it.
            handlers.pop(self.rid, None)
            handlers[rid] = self.on_message
            self.rid = rid
        for dst, msg in out:
            client._send(dst, msg)


class KVClient:
    def __init__(
        self,
        seeds: list[str],
        *,
        strategy: str = "sync",
        w: int = 0,
        r: int = 0,
        smart: bool = True,
        cluster_name: str = "clusterkit-cluster",
        timeout: float = 5.0,
        poll: float = 1.0,
        retry: float = 0.25,
        ssl: ssl_module.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        """``ssl``: the nodes run TLS (``--tls-cert``): ``/cluster`` over https and the KV ports
        over TLS, both checked with this context (``ssl.create_default_context(cafile=CA)``).
        ``token``: the API token of the nodes' ``--api-token-file``, presented in every KV
        connection's hello (needed when the nodes have a token, a cluster secret or TLS)."""
        policy = self.policy = by_name(strategy)  # a ValueError naming the choices
        if not seeds:
            raise ValueError("give the HTTP address of at least one node")
        self.seeds = list(seeds)
        self.strategy = strategy
        self.w, self.r = w, r
        self.smart = smart
        self.cluster_name = cluster_name
        self.timeout = timeout
        self.poll = poll
        self.retry = retry
        self.ssl = ssl
        self.token = token
        self.id = f"c{os.urandom(4).hex()}"  # write versions are (counter, this id + serial): unique
        self.topo = Topology()
        self.quorums: Quorums | None = None
        self.refreshes = 0
        self._serials = count(1)
        self._rids = count(1)
        self._handlers: dict[int, Callable[[str, Message], None]] = {}  # rid -> a SYNC operation's router
        # A single-phase request's wait (ASYNC, server-side, the simple client), ended with its one
        # answer, or None if the link it went out on breaks: the future itself, not callbacks
        # wrapping it (two partials per request, alive while it waited).
        self._waiting: dict[int, asyncio.Future[Any]] = {}  # rid -> the request's wait
        self._lost: dict[int, str] = {}  # rid -> the node it was sent to
        # Every request goes to the partition's primary (SERVER-SIDE's primary would forward it
        # there anyway), unless any copy may answer a read.
        self._primary = smart and not policy.reads_from_any_copy
        self._abd_mode = smart and policy.client_quorum  # the client runs each operation itself
        self._conns: dict[str, Conn] = {}
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[bool] | None = None
        self._home: str | None = None  # the simple client's node
        # The last message sent and its document: an operation sends one message to every copy,
        # encoded once.
        self._last_msg: Message | None = None
        self._last_doc: list[Any] = []
        self._numbers: dict[str | bytes, int] = {}  # key -> its partition, under topo.hash
        # Waits, each ended by its answers or, past its time, by one sweeper for all (a timer per
        # wait cost more than the rest of the wait's bookkeeping): a SYNC operation's, to retry; a
        # request's, at its deadline. Just the time, no tuple: an object less per request alive
        # while it waits, for the cyclic collector to go through.
        self._sleepers: dict[asyncio.Future[Any], float] = {}  # -> when
        self._sweeper: asyncio.Task[None] | None = None
        self._refusal = ""  # the last refusal of our hello logged (once, not at every reconnection)

    # ------------------------------------------------------------ lifecycle
    async def start(self, wait: float = 10.0) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3.0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not await self.refresh() or not self.topo.placements:
            if loop.time() > deadline:
                await self.close()
                raise KVError(f"no cluster map from {', '.join(self.seeds)} within {wait} s")
            await asyncio.sleep(0.1)
        self._poller = loop.create_task(self._poll())

    async def close(self) -> None:
        tasks = [c.task for c in self._conns.values()]
        if self._poller is not None:
            tasks.append(self._poller)
        if self._sweeper is not None:
            tasks.append(self._sweeper)
            self._sweeper = None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._conns.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KVClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ the map
    async def refresh(self) -> bool:
        """Fetch /cluster now (concurrent callers share one fetch); True when the map changed."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._fetch())
        return await asyncio.shield(self._refreshing)

    async def _fetch(self) -> bool:
        assert self._session is not None
        candidates = list(dict.fromkeys([*self.seeds, *(n.http_addr for n in self.topo.nodes.values()
                                                        if n.status == "active" and n.http_addr)]))
        for addr in candidates:
            headers = {"If-None-Match": self.topo.etag} if self.topo.etag else {}
            try:
                url = http_base(addr, tls=self.ssl is not None) + "/cluster"
                async with self._session.get(url, headers=headers, ssl=self.ssl if self.ssl is not None else True) as resp:
                    if resp.status == 304:
                        return False
                    if resp.status != 200:
                        continue
                    doc = json.loads(await resp.read())
                    topo = Topology.from_doc(doc, resp.headers.get("ETag"))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError, TypeError) as exc:
                log.debug("no map from %s: %s", addr, exc)
                continue
            if topo.epoch < self.topo.epoch:
                continue  # that node is behind us: ask another
            changed = topo.etag != self.topo.etag
            if topo.hash != self.topo.hash:
                self._numbers.clear()
            self.topo = topo
            self.quorums = self.policy.quorums(topo.rf, self.w, self.r)
            self.refreshes += changed
            for nid, conn in list(self._conns.items()):
                node = topo.nodes.get(nid)
                if node is None or node.kv_addr != conn.addr:
                    conn.task.cancel()
            return changed
        return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a failed poll is retried at the next one
                log.debug("map poll failed", exc_info=True)

    def placement(self, key: str | bytes) -> Placement:
        number = self._numbers.get(key)
        if number is None:  # (an md5 per operation otherwise: keys are used again and again)
            hash_config = self.topo.hash
            assert hash_config is not None, "start() first"
            if len(self._numbers) >= NUMBER_CACHE:
                self._numbers.clear()
            number = self._numbers[key] = hash_config.number(key)
        return self.topo.placements[number]

    # ------------------------------------------------------------ connections
    def _conn(self, node_id: str) -> Conn | None:
        conn = self._conns.get(node_id)
        if conn is not None and not conn.closed:
            return conn
        node = self.topo.nodes.get(node_id)
        if node is None or not node.kv_addr:
            return None
        conn = self._conns[node_id] = Conn(self, node_id, node.kv_addr)
        return conn

    def _send(self, node_id: str, msg: Message) -> bool:
        conn = self._conn(node_id)
        if conn is None:
            return False
        if msg is not self._last_msg:  # (messages are immutable: the same object, the same document)
            self._last_msg, self._last_doc = msg, to_doc(msg)
        conn.send(self._last_doc)
        return True

    def _on_message(self, src: str, msg: Message) -> None:
        rid = msg.rid  # (every KV message has a request id)
        fut = self._waiting.pop(rid, None)
        if fut is not None:  # a single-phase request's one answer
            if not fut.done():
                fut.set_result(msg)
            return
        handler = self._handlers.get(rid)
        if handler is not None:
            handler(src, msg)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Wake every wait that ran past its time (with _TIMED_OUT): a SYNC operation's, to retry
        (it looks at its Operation, not at what woke it); a request's, at its deadline. Every
        retry / 4 seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.retry / 4)
            now = loop.time()
            for fut, when in list(self._sleepers.items()):
                if when <= now and not fut.done():
                    fut.set_result(_TIMED_OUT)

    def _refused(self, node_id: str, why: str) -> None:
        if why != self._refusal:
            self._refusal = why
            log.warning("the KV port of %s %s", node_id, why)

    def _on_conn_lost(self, conn: Conn) -> None:
        if self._conns.get(conn.node_id) is conn:
            del self._conns[conn.node_id]
        for rid, node in list(self._lost.items()):
            if node == conn.node_id:
                del self._lost[rid]
                fut = self._waiting.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)

    def _next_rid(self) -> int:
        return next(self._rids)

    # ------------------------------------------------------------ the API
    def set(self, key: str, value: Value, quorum: int | None = None) -> Coroutine[Any, Any, Record]:
        """Write ``value``; ``quorum`` raises W for this write (the seed's ``set(key, value, quorum=3)``).
        Await it (a plain function returning the write's coroutine: one coroutine less per write)."""
        if value is None:
            raise KVBadRequest("value must not be None (use delete)")
        return self._write(key, value, quorum)

    async def delete(self, key: str, quorum: int | None = None) -> Record:
        """Delete ``key`` (a tombstone with its own version: an older copy can't bring it back)."""
        return await self._write(key, None, quorum)

    async def get(self, key: str) -> Value | None:
        record = await self.get_record(key)
        return record.value if record is not None else None

    async def get_record(self, key: str) -> Record | None:
        self._check(key, None)
        if self._abd_mode:
            op = await self._abd(key, False, None, None)
            return op.result
        answer = await self._request(key, False, None, None)
        return answer.record

    async def _write(self, key: str, value: Value | None, quorum: int | None) -> Record:
        self._check(key, value)
        if quorum is not None:
            self._check_quorum(quorum)
        if self._abd_mode:
            op = await self._abd(key, True, value, quorum)
            assert op.result is not None
            return op.result
        answer = await self._request(key, True, value, quorum)
        assert answer.record is not None
        return answer.record

    def _check_quorum(self, quorum: int) -> None:
        if self.quorums is not None:
            try:
                self.quorums.with_w(quorum)
            except ValueError as exc:
                raise KVBadRequest(str(exc)) from None

    @staticmethod
    def _check(key: Any, value: Any) -> None:
        problem = check_request(key, value)
        if problem is not None:
            raise KVBadRequest(problem)

    # ------------------------------------------------------------ SYNC: the client runs ABD
    async def _abd(self, key: str, write: bool, value: Value | None, quorum: int | None) -> Operation:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        assert self.quorums is not None
        op = Operation(key, self.placement(key), self.quorums.with_w(quorum) if write else self.quorums,
                       f"{self.id}#{next(self._serials)}", self._next_rid, write=write, value=value)
        wake: asyncio.Future[Any] = loop.create_future()
        run = _Run(self, op, wake)
        send = run.send
        self._ensure_sweeper()
        sleepers = self._sleepers
        try:
            send(op.start())
            while op.outcome is None:
                if wake.done():
                    wake = run.wake = loop.create_future()
                # A future the answers (or the sweeper, after self.retry) wake: not wait_for, which
                # would make a task per wait, nor a timer per wait.
                sleepers[wake] = loop.time() + self.retry
                try:
                    await wake
                finally:
                    del sleepers[wake]
                if op.outcome is not None:
                    break
                if loop.time() >= deadline:
                    op.expire()
                    break
                if op.stale:
                    await self.refresh()
                    newer = self.topo.placements.get(op.placement.number)
                    if newer is not None and newer.epoch > op.placement.epoch:
                        send(op.refresh(newer))
                    else:
                        await asyncio.sleep(0.02)  # our map is no newer yet: ask again shortly
                        op.stale = False
                        send(op.retry())
                else:
                    send(op.retry())
        finally:
            self._handlers.pop(run.rid, None)
        if op.outcome == "fail":
            raise KVFailed(f"{key!r}: {op.detail}")
        if op.outcome == "info":
            raise KVUnknown(f"{key!r}: {op.detail}")
        return op

    # ------------------------------------------------------------ ASYNC and SERVER-SIDE: ask a node
    def _target(self, key: str, write: bool, avoid: frozenset[str]) -> str | None:
        if not self.smart:
            live = [n for n in self.topo.nodes.values() if n.kv_addr and n.status == "active"]
            if self._home not in {n.id for n in live}:
                self._home = live[next(self._serials) % len(live)].id if live else None
            return self._home
        here = self.placement(key)
        if write or not self.policy.reads_from_any_copy:
            return here.primary
        # A read any copy may answer (ASYNC): the primary first, then the others, so a dead
        # primary doesn't stall reads until the cluster marks it failed.
        return next((n for n in here.serving if n not in avoid), here.primary)

    async def _request(self, key: str, write: bool, value: Value | None, quorum: int | None) -> Result:
        """A Set (``write``; value None: delete) or a Get, sent to one node, its one answer awaited."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self.timeout
        avoid: frozenset[str] = frozenset()  # nodes that failed this request (an ASYNC read tries another copy)
        self._ensure_sweeper()
        waiting, lost, sleepers = self._waiting, self._lost, self._sleepers
        while True:
            if deadline <= now:
                raise (KVUnknown if write else KVFailed)(f"{key!r}: no answer within {self.timeout} s")
            # (_target's common case inline: a write, or any request but an ASYNC read, goes to the primary)
            target = self.placement(key).primary if self._primary or (write and self.smart) else (
                self._target(key, write, avoid))
            conn: Conn | None = None
            msg: Any = None
            if target is not None and (conn := self._conn(target)) is not None:
                rid = next(self._rids)
                answer: asyncio.Future[Any] = loop.create_future()
                # Its answer (the read loop), a broken link (_on_conn_lost) or the sweeper, at the
                # deadline (not wait_for: a timer and callbacks per request), ends the wait.
                waiting[rid] = answer
                lost[rid] = target
                sleepers[answer] = deadline
                conn.send(to_doc(Set(rid, key, value, quorum) if write else Get(rid, key)))
                try:
                    msg = await answer
                finally:
                    del sleepers[answer]
                    waiting.pop(rid, None)
                    lost.pop(rid, None)
            if msg is _TIMED_OUT:
                raise (KVUnknown if write else KVFailed)(f"{key!r}: no answer within {self.timeout} s")
            if msg is None:  # no connection, or it broke after sending
                if write and conn is not None:
                    raise KVUnknown(f"{key!r}: the connection to {target} broke before the answer")
                self._home = None
                if target is not None:
                    avoid |= {target}
                await self.refresh()
                await asyncio.sleep(0.05)
                now = loop.time()
                continue
            if isinstance(msg, Result):
                if msg.outcome == "ok":
                    return msg
                raise (KVFailed if msg.outcome == "fail" else KVUnknown)(f"{key!r}: {msg.detail}")
            assert isinstance(msg, Refused)
            if msg.reason == "bad_request":
                raise KVBadRequest(msg.detail)
            if msg.reason in ("stale", "not_primary", "not_serving"):
                self._home = None
                await self.refresh()
            await asyncio.sleep(0.02)  # behind, overloaded, unavailable, or a map to catch up with: again
            now = loop.time()

    # ------------------------------------------------------------ direct copies (checks and tools)
    async def holders(self, key: str) -> dict[str, Record | None]:
        """What every owner of ``key``'s partition holds for it now (a Query to each; for checks)."""
        p = self.placement(key)
        loop = asyncio.get_running_loop()
        out: dict[str, Record | None] = {}
        futs: dict[str, asyncio.Future[Message | None]] = {}
        rids = []
        for node in p.owners:
            rid = next(self._rids)
            fut: asyncio.Future[Message | None] = loop.create_future()
            self._handlers[rid] = lambda src, msg, f=fut: f.done() or f.set_result(msg)
            rids.append(rid)
            if self._send(node, Query(rid, p.number, p.epoch, key)):
                futs[node] = fut
        try:
            for node, fut in futs.items():
                try:
                    msg = await asyncio.wait_for(fut, 2.0)
                except asyncio.TimeoutError:
                    continue
                if isinstance(msg, Found):
                    out[node] = msg.record
        finally:
            for rid in rids:
                self._handlers.pop(rid, None)
        return out
