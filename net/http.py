"""The seed's HTTP API, served by aiohttp, over a :class:`~.node.NetNode`.

Routes and JSON names follow the Go ClusterKit: ``/cluster`` (with
``hash_config``; an ETag from the cluster-state epoch, so every change
invalidates it; HEAD; ``If-None-Match`` answers 304), ``/nodes``,
``/partitions``, ``/partitions/stats``, ``/partitions/key?key=``,
``/consensus/leader``, ``/consensus/stats``, ``/health``, ``/ready``,
``/health/detailed``, ``/metrics`` (Prometheus text), ``POST /join`` and
``POST /leave``. A bad parameter or body is a 400 with a JSON ``error``. Every node entry carries
both shapes: ours (``http_addr``, ``raft_addr``, ``kv_addr``) and the seed's (``ip``, ``port``,
``services``; see :func:`seed_node_fields`), so the Go examples' clients route by it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from clusterkit.cluster_state import FAILED, ClusterConfig, CommandError, NodeInfo, leave_command
from clusterkit.host.registers import put_command
from clusterkit.raft.errors import NotLeader, RaftError

from .auth import ApiAuth, auth_of, middleware
from .faultctl import add_routes as add_fault_routes
from .http_body import BadBody, parse_json, size_guard
from .addr import http_base, port_of
from .forward import Unreached, forward
from .metrics import NodeMetrics

if TYPE_CHECKING:
    from .node import NetNode

log = logging.getLogger("clusterkit.net.http")
MAX_BODY = 64 << 10  # join and leave bodies are small: refuse anything larger at the door
MAX_KEY = 4096
API_KEY: web.AppKey["Api"] = web.AppKey("api")


def seed_node_fields(info: NodeInfo) -> dict[str, Any]:
    """A node as the Go ClusterKit's clients read it (its ``Node``: ``ip``, ``port``, ``services``):
    ``ip`` is the HTTP API address as given (``:8080``, as the seed's ``HTTPAddr``), ``port`` its
    port, and ``services["kv"]`` the KV port, where the seed's clients send ``/kv/*`` (it hands
    HTTP requests to the API). Published next to our own ``http_addr`` and ``kv_addr``."""
    return {"ip": info.api_addr, "port": port_of(info.api_addr),
            "services": {"kv": info.kv_addr} if info.kv_addr else {}}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, sort_keys=True), status=status, content_type="application/json",
                        headers=headers)


class Api:
    def __init__(self, node: NetNode, auth: ApiAuth | None = None) -> None:
        self.node = node
        self.auth = auth if auth is not None else auth_of(node)
        self.metrics = NodeMetrics(node)

    # ------------------------------------------------------------ cluster views
    def _etag(self) -> str:
        # (a node's KV address is in its cluster-state entry: a change of one is a new epoch)
        return f'"{self.node.options.cluster_name}-{self.node.kit.state.epoch}"'

    def cluster_doc(self) -> dict[str, Any]:
        state = self.node.kit.state
        cfg = state.config
        doc: dict[str, Any] = {
            "cluster": {
                "id": self.node.options.cluster_name,
                "name": self.node.options.cluster_name,
                "epoch": state.epoch,
                "nodes": [self._node_doc(state.nodes[n]) for n in sorted(state.nodes)],
                "partition_map": {"partitions": self._partitions()},
                "config": cfg.to_wire() if cfg is not None else None,
            },
            "hash_config": cfg.hash_config.to_dict() if cfg is not None else None,
        }
        return doc

    def _node_doc(self, info: NodeInfo) -> dict[str, Any]:
        doc = {"id": info.id, "name": info.name, "raft_addr": info.raft_addr, "http_addr": info.api_addr,
               "zone": info.zone, "status": info.status, **seed_node_fields(info)}
        if info.kv_addr:  # written only by the node's own join, never by a client (net/kv_service.py)
            doc["kv_addr"] = info.kv_addr
        return doc

    def _partitions(self) -> dict[str, Any]:
        kit = self.node.kit
        if kit.state.config is None:
            return {}
        out = {}
        for number in range(kit.state.config.partition_count):
            p = kit.partition(number)
            out[p.id] = {"id": p.id, "primary_node": p.primary, "replica_nodes": list(p.replicas),
                         "incoming": list(p.incoming), "outgoing": list(p.outgoing), "failed": list(p.failed),
                         "epoch": p.epoch}
        return out

    async def cluster(self, request: web.Request) -> web.StreamResponse:
        etag = self._etag()
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers, content_type="application/json")
        return _json(self.cluster_doc(), headers=headers)

    async def nodes(self, request: web.Request) -> web.Response:
        state = self.node.kit.state
        return _json({"nodes": [self._node_doc(state.nodes[n]) for n in sorted(state.nodes)], "epoch": state.epoch})

    async def partitions(self, request: web.Request) -> web.Response:
        return _json({"partitions": self._partitions(), "epoch": self.node.kit.state.epoch})

    async def partition_stats(self, request: web.Request) -> web.Response:
        kit = self.node.kit
        if kit.state.config is None:
            return _error(503, "the cluster state is empty: not bootstrapped or not caught up yet")
        stats = kit.partition_stats()
        return _json({"total_partitions": stats.total_partitions, "partitions_per_node": stats.partitions_per_node,
                      "replicas_per_node": stats.replicas_per_node, "epoch": stats.epoch})

    async def partition_for_key(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        if key is None or key == "":
            return _error(400, "missing query parameter: key")
        if len(key) > MAX_KEY:
            return _error(400, f"key longer than {MAX_KEY} characters")
        kit = self.node.kit
        if kit.state.config is None:
            return _error(503, "the cluster state is empty: not bootstrapped or not caught up yet")
        p = kit.get_partition(key)
        return _json({"key": key, "partition": p.id, "partition_number": p.number,
                      "primary": self._node_doc(kit.get_primary(p)),
                      "replicas": [self._node_doc(n) for n in kit.get_replicas(p)],
                      "incoming": list(p.incoming)})

    # ------------------------------------------------------------ consensus
    async def leader(self, request: web.Request) -> web.Response:
        node = self.node
        raft = node.host.raft if node.host is not None else None
        info = node.leader_info()
        return _json({
            "leader_id": info.id if info else None,
            "leader_raft_addr": info.raft_addr if info else None,
            "leader_http_addr": info.api_addr if info else None,
            "is_leader": bool(raft and raft.is_leader),
            "term": raft.term if raft else 0,
            "elected_at": node.last_election if raft and raft.is_leader else None,
        })

    async def consensus_stats(self, request: web.Request) -> web.Response:
        node = self.node
        st = node.status()
        transport = node.transport
        st.update({
            "elections_won": node.elections,
            "dropped_proposals": node.host.raft.dropped_proposals if node.host and node.host.raft else 0,
            "frame_errors": dict(transport.frame_errors) if transport else {},
            "peers": {p: s.__dict__ for p, s in sorted(transport.stats.items())} if transport else {},
            "uptime_seconds": round(time.monotonic() - node.started_at, 3),
        })
        return _json(st)

    # ------------------------------------------------------------ health
    async def health(self, request: web.Request) -> web.Response:
        problem = self.node.health_problem()
        if problem is not None:
            return _json({"status": "unhealthy", "reason": problem, "node_id": self.node.id}, status=503)
        up = self.node.host is not None and self.node.host.raft is not None
        return _json({"status": "healthy" if up else "down", "node_id": self.node.id}, status=200 if up else 503)

    def _readiness(self) -> tuple[bool, str]:
        problem = self.node.health_problem()
        if problem is not None:
            return False, problem
        host = self.node.host
        raft = host.raft if host is not None else None
        if raft is None:
            return False, "not running"
        if raft.leader is None:
            return False, "no leader known"
        if self.node.kit.state.config is None:
            return False, "the cluster state is not bootstrapped or not caught up"
        if raft.log.applied < raft.log.committed:
            return False, f"applying: {raft.log.applied} of {raft.log.committed}"
        return True, "ready"

    async def ready(self, request: web.Request) -> web.Response:
        ok, why = self._readiness()
        return _json({"ready": ok, "reason": why, "node_id": self.node.id}, status=200 if ok else 503)

    async def health_detailed(self, request: web.Request) -> web.Response:
        ok, why = self._readiness()
        node = self.node
        state = node.kit.state
        mine = node.kit.partitions_for_node() if state.config is not None else []
        return _json({
            "node_id": node.id,
            "ready": ok,
            "reason": why,
            "raft": node.status(),
            "cluster": {"epoch": state.epoch, "nodes": len(state.nodes), "migrating": state.migrating},
            "partitions": {"primary": sum(1 for p in mine if p.primary == node.id),
                           "replica": sum(1 for p in mine if node.id in p.replicas)},
            "hook_errors": node.kit.hook_errors,
            "uptime_seconds": round(time.monotonic() - node.started_at, 3),
        })

    async def metrics_route(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # ------------------------------------------------------------ membership
    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        try:
            doc = parse_json(await request.read(), b"{}")
        except BadBody as exc:
            raise _Bad(str(exc)) from None
        if not isinstance(doc, dict):
            raise _Bad("the body must be a JSON object")
        return doc

    async def _to_leader(self, request: web.Request, path: str, doc: dict[str, Any],
                         method: str = "POST") -> web.Response:
        info = self.node.leader_info()
        if info is None or not info.api_addr or info.id == self.node.id:
            return _error(503, "no leader known yet: try again")
        tls = self.node.config.client_ssl
        base = http_base(info.api_addr, tls=tls is not None or request.secure)  # a TLS cluster serves https
        try:
            # (with this node's own token: every node of a cluster is given the same one)
            status, answer = await forward(base, path, doc, self.node.config.request_timeout, method, tls,
                                           headers=self.auth.headers())
        except Unreached as exc:  # no byte of it was sent: the leader never saw it
            return _error(503, f"the leader {info.id} did not answer: {exc or type(exc).__name__}")
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError, ValueError) as exc:
            # Sent, and the answer lost (the leader died or stalled): it may have appended the
            # request, and a new leader may commit it. Not a failure: unknown.
            return _error(504, f"outcome unknown, it may still happen: the leader {info.id} took the request "
                          f"and its answer was lost ({exc or type(exc).__name__})")
        return _json(answer, status=status)

    async def join(self, request: web.Request) -> web.Response:
        try:
            doc = await self._body(request)
            info = NodeInfo.from_wire(doc.get("node"))
            config = ClusterConfig.from_wire(doc.get("config"))
        except _Bad as exc:
            return _error(400, str(exc))
        except CommandError as exc:
            return _error(400, str(exc))
        if not info.raft_addr:
            return _error(400, "node.raft_addr is required")
        node = self.node
        if node.host is None or node.host.raft is None or not node.host.raft.is_leader:
            return await self._to_leader(request, "/join", doc)
        mine = node.options.cluster_config()
        problems = mine.conflicts(config)
        if problems:
            return _error(409, f"{info.id} can't join: " + "; ".join(problems))
        known = node.kit.state.nodes.get(info.id)
        if known is not None and known.raft_addr and known.raft_addr != info.raft_addr and known.status == "active":
            return _error(409, f"node id {info.id} is already in use by {known.raft_addr}")
        transport = node.transport
        # Dial the joiner first, whatever the security: a node that can't complete the handshake
        # (another secret, another cluster of the same name) must not enter the configuration.
        if transport is not None:
            problem, transient = await transport.verify_peer(info.id, info.raft_addr)
            if problem is not None and transient:  # not up yet, say: asking again may help
                return _error(503, f"{info.id} can't join yet: {problem}")
            if problem is not None:
                return _error(403, f"{info.id} can't join: no peer handshake with it at {info.raft_addr}: {problem}")
        fresh, incarnation = doc.get("fresh", False), doc.get("incarnation", "")
        if type(fresh) is not bool or type(incarnation) is not str or len(incarnation) > 64:
            return _error(400, "fresh must be a boolean and incarnation a string of at most 64 characters")
        try:
            await node.add_member(info.id, info.raft_addr, fresh=fresh, incarnation=incarnation)
        except NotLeader:
            return await self._to_leader(request, "/join", doc)
        except TimeoutError as exc:
            return _error(503, str(exc))
        except ValueError as exc:
            return _error(409, str(exc))
        since = node.host.raft.log.committed if node.host is not None and node.host.raft is not None else 0
        return _json({"ok": True, "node_id": info.id, "leader": node.id, "cluster_id": node.cluster_id,
                      "since": since})

    async def leave(self, request: web.Request) -> web.Response:
        try:
            doc = await self._body(request)
        except _Bad as exc:
            return _error(400, str(exc))
        node_id = doc.get("node_id", request.query.get("node_id", self.node.id))
        if type(node_id) is not str or not node_id:
            return _error(400, "node_id must be a non-empty string")
        node = self.node
        if node.host is None or node.host.raft is None or not node.host.raft.is_leader:
            return await self._to_leader(request, "/leave", {"node_id": node_id})
        state = node.kit.state
        if node_id not in state.nodes:
            return _error(404, f"no node {node_id!r} in the cluster")
        was_failed = state.nodes[node_id].status == FAILED
        try:
            result = await node.propose(leave_command(node_id))
        except (RaftError, asyncio.TimeoutError) as exc:
            return _error(503, f"leave not committed: {exc or type(exc).__name__}")
        if not result.ok:
            return _error(409, f"leave refused: {result.error}")
        # (a failed node's leave drops its copies: it is forgotten at once)
        return _json({"ok": True, "node_id": node_id, "status": "removed" if was_failed else "leaving"})


    # ------------------------------------------------------------ the replicated registers
    async def register_get(self, request: web.Request) -> web.Response:
        """A linearizable read of one register (ReadIndex on the leader, confirmed by a quorum)."""
        key = request.match_info["key"]
        if len(key) > MAX_KEY:
            return _error(400, f"key longer than {MAX_KEY} characters")
        try:
            index = await self.node.linearizable_read()
        except (RaftError, asyncio.TimeoutError) as exc:
            return _error(503, f"no linearizable read possible now: {exc or type(exc).__name__}")
        return _json({"key": key, "value": self.node.registers.get(key), "index": index})

    async def register_put(self, request: web.Request) -> web.Response:
        """Write one register through the log; answered once the write has applied on the leader."""
        key = request.match_info["key"]
        if len(key) > MAX_KEY:
            return _error(400, f"key longer than {MAX_KEY} characters")
        try:
            doc = await self._body(request)
        except _Bad as exc:
            return _error(400, str(exc))
        value = doc.get("value")
        if type(value) is not str:
            return _error(400, "the body must be {\"value\": \"...\"} with a string value")
        node = self.node
        if node.host is None or node.host.raft is None or not node.host.raft.is_leader:
            return await self._to_leader_put(request, key, doc)
        try:
            await node.propose(put_command(key, value))
        except NotLeader:
            return await self._to_leader_put(request, key, doc)
        except RaftError as exc:
            # "lost": certain that it did not happen (an entry of a later term committed past it);
            # anything else (its entry truncated, the node stopped): unknown, it may still commit.
            if str(exc).startswith("lost"):
                return _error(503, str(exc))
            return _error(504, f"outcome unknown, the write may still happen: {exc}")
        except asyncio.TimeoutError:
            return _error(504, "not committed in time: it may still happen")
        return _json({"ok": True, "key": key, "value": value})

    async def _to_leader_put(self, request: web.Request, key: str, doc: dict[str, Any]) -> web.Response:
        # (quoted: a key with "/" in it, sent as it is, would name another route)
        return await self._to_leader(request, f"/registers/{quote(key, safe='')}", doc, method="PUT")


class _Bad(ValueError):
    pass


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown routes and methods as JSON; a handler bug as a 500 that keeps the node running."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except Exception:  # noqa: BLE001 - one request's failure must never take the node down
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error (logged on the node)")


def make_app(node: NetNode, auth: ApiAuth | None = None) -> web.Application:
    """``auth``: who may use the data and membership routes (default: the node's, see net/auth.py)."""
    api = Api(node, auth)

    def join_proved_by_peer() -> bool:  # the leader's peer handshake with the joiner is its credential
        return node.transport is not None and node.transport.authenticates

    guard = middleware(api.auth, join_proved_by_peer)
    app = web.Application(middlewares=[_errors, guard, size_guard], client_max_size=MAX_BODY)
    app[API_KEY] = api
    r = app.router
    r.add_get("/cluster", api.cluster)  # add_get answers HEAD too (allow_head)
    r.add_get("/nodes", api.nodes)
    r.add_get("/partitions", api.partitions)
    r.add_get("/partitions/stats", api.partition_stats)
    r.add_get("/partitions/key", api.partition_for_key)
    r.add_get("/consensus/leader", api.leader)
    r.add_get("/consensus/stats", api.consensus_stats)
    r.add_get("/health", api.health)
    r.add_get("/health/detailed", api.health_detailed)
    r.add_get("/ready", api.ready)
    r.add_get("/metrics", api.metrics_route)
    r.add_post("/join", api.join)
    r.add_post("/leave", api.leave)
    r.add_get("/registers/{key}", api.register_get)
    r.add_put("/registers/{key}", api.register_put)
    faults = getattr(node, "faults", None)  # (on only with --fault-injection)
    if faults is not None:
        add_fault_routes(app, faults)
    return app
