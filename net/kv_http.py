"""The seed's KV routes on a node's HTTP API (and, through the KV port's HTTP hand-off, on the KV port):

``POST /kv/set`` (JSON ``{"key": ..., "value": ..., "quorum": W}``; quorum optional),
``POST /kv/replicate`` (the seed smart client's ``SetWithReplication``: the same body, a quorum
write), ``GET /kv/get?key=``, ``POST /kv/delete?key=``, ``GET /kv/stats`` and
``GET /kv/migrate?partition=`` (what this node holds of a partition). Each request is handed to the
node's :class:`~clusterkit.kv.server.KVServer` as a client request, which routes or coordinates it
as its strategy says. A write that succeeded answers the seed's ``"status"`` (``"ok"``, or
``"deleted"`` for a delete) alongside our fields. Bad keys, oversized values and malformed bodies
are a 400 with a JSON ``error``; an operation that failed is a 503 (nothing written) and one whose
outcome is unknown a 504 (it may have been written).
"""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from typing import Any

from aiohttp import web

from clusterkit.kv.messages import Get, Message, Refused, Result, Set
from clusterkit.kv.records import Record
from clusterkit.kv.server import check_request
from clusterkit.kv.strategies import STRATEGIES

from .http_body import BadBody, read_json
from .kv_service import KVService

KV_SERVICE: web.AppKey[KVService] = web.AppKey("kv_service")
MAX_LIST = 1000
MAX_QUORUM = 16  # the largest replication factor a node takes (clusterkit node --replication-factor)


def _strict_key(request: web.Request) -> str | None:
    """The ``key`` query parameter, decoded strictly: ``%ff`` is not valid UTF-8 and is refused
    (decoded leniently, different byte keys would all become U+FFFD: one key)."""
    pairs = urllib.parse.parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True, errors="strict")
    return next((v for k, v in pairs if k == "key"), None)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _value_doc(record: Record | None) -> dict[str, Any]:
    if record is None or record.value is None:
        return {"value": None, "found": False, "version": [record.version.counter, record.version.writer] if record else None}
    value: Any = record.value
    doc: dict[str, Any] = {"found": True, "version": [record.version.counter, record.version.writer]}
    if isinstance(value, bytes):
        doc["value"], doc["encoding"] = base64.b64encode(value).decode(), "base64"
    else:
        doc["value"] = value
    return doc


def _answer(key: str, msg: Message, write: bool, status: str = "ok") -> web.Response:
    """``status``: the seed's word for a write that succeeded (``ok``; a delete's is ``deleted``)."""
    if isinstance(msg, Refused):
        status = 400 if msg.reason == "bad_request" else 503
        return _error(status, msg.detail or f"refused: {msg.reason}", reason=msg.reason, key=key)
    assert isinstance(msg, Result)
    if msg.outcome == "fail":
        return _error(503, f"not done: {msg.detail or 'no quorum'}", outcome="fail", key=key)
    if msg.outcome == "info":
        return _error(504, f"outcome unknown (it may have been written): {msg.detail}", outcome="info", key=key)
    doc = {"key": key, **_value_doc(msg.record)}
    if write:
        doc["ok"], doc["status"] = True, status
        return web.json_response(doc)
    return web.json_response(doc, status=200 if doc["found"] else 404)


class KVRoutes:
    def __init__(self, service: KVService) -> None:
        self.service = service

    async def _run(self, key: str, msg_for: Any, write: bool, status: str = "ok") -> web.Response:
        try:
            answer = await self.service.request(msg_for)
        except asyncio.TimeoutError:
            return _error(504, "no answer in time: the outcome is unknown", outcome="info", key=key)
        return _answer(key, answer, write, status)

    async def _set_body(self, request: web.Request) -> tuple[str, Any, int | None] | web.Response:
        """``{"key": ..., "value": ..., "quorum": W}`` checked (key, value, quorum), or the 400 to send."""
        try:
            doc = await read_json(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(400, f"the body is larger than {request.app._client_max_size} bytes")  # noqa: SLF001
        except BadBody as exc:
            return _error(400, str(exc))
        if not isinstance(doc, dict):
            return _error(400, 'the body must be a JSON object: {"key": "...", "value": "..."}')
        key, value, quorum = doc.get("key"), doc.get("value"), doc.get("quorum")
        if value is None:
            return _error(400, "value is required (use POST /kv/delete?key= to delete)")
        problem = check_request(key, value)
        if problem is not None:
            return _error(400, problem)
        if quorum is not None and (type(quorum) is not int or not 1 <= quorum <= MAX_QUORUM):
            return _error(400, f"quorum must be a whole number from 1 to {MAX_QUORUM}")
        return key, value, quorum

    async def set(self, request: web.Request) -> web.Response:
        body = await self._set_body(request)
        if isinstance(body, web.Response):
            return body
        key, value, quorum = body
        return await self._run(key, lambda rid: Set(rid, key, value, quorum), write=True)

    async def replicate(self, request: web.Request) -> web.Response:
        """The seed smart client's ``SetWithReplication`` posts ``{"key", "value"}`` here to each
        owner and counts the 200s: each is answered once a quorum of the owners holds the value (W,
        or the body's ``quorum``), so a 200 never claims copies that don't exist. Under ``async`` (a
        strategy that acknowledges before replicating) a write is acknowledged by the primary
        alone, which is no quorum write: refused (409)."""
        strategy = STRATEGIES[self.service.options.server.strategy]
        if strategy.acks_before_replicating:
            return _error(409, f"this cluster runs the {strategy} strategy, where a write is acknowledged by the "
                               "primary alone: no quorum write to offer (use POST /kv/set, or run --kv-strategy sync)")
        return await self.set(request)

    async def get(self, request: web.Request) -> web.Response:
        try:
            key = _strict_key(request)
        except UnicodeDecodeError:
            return _error(400, "key must be valid UTF-8 once percent-decoded")
        problem = check_request(key)
        if problem is not None:
            return _error(400, "missing query parameter: key" if key is None else problem)
        return await self._run(key, lambda rid: Get(rid, key), write=False)  # type: ignore[arg-type]

    async def delete(self, request: web.Request) -> web.Response:
        try:
            key = _strict_key(request)
        except UnicodeDecodeError:
            return _error(400, "key must be valid UTF-8 once percent-decoded")
        if key is None:
            try:
                doc = await read_json(request, b"{}")
            except BadBody:
                doc = {}
            key = doc.get("key") if isinstance(doc, dict) else None
        problem = check_request(key)
        if problem is not None:
            return _error(400, "missing query parameter: key" if key is None else problem)
        return await self._run(key, lambda rid: Set(rid, key, None),  # type: ignore[arg-type]
                               write=True, status="deleted")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.stats())

    async def migrate(self, request: web.Request) -> web.Response:
        """What this node holds of one partition, and where the cluster says it is going."""
        kit = self.service.node.kit
        server = self.service.server
        cfg = kit.state.config
        if cfg is None or server is None:
            return _error(503, "the cluster state is empty: not bootstrapped or not caught up yet")
        text = request.query.get("partition")
        if text is None:
            return _error(400, "missing query parameter: partition (a number or an id like partition-3)")
        try:
            number = kit._number(int(text) if text.isdigit() else text)  # noqa: SLF001 - the facade's parser
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, str(exc.args[0] if exc.args else exc))
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "limit must be a whole number")
        limit = max(0, min(limit, MAX_LIST))
        p = kit.partition(number)
        records = server.data.parts.get(number, {})
        items, _done = server.data.scan(number, None, limit) if limit else ([], True)
        return web.json_response({
            "node_id": self.service.node.id,
            "partition": p.id,
            "partition_number": number,
            "epoch": p.epoch,
            "primary": p.primary,
            "replicas": list(p.replicas),
            "incoming": list(p.incoming),
            "outgoing": list(p.outgoing),
            "serving": self.service.node.id in (p.primary, *p.replicas),
            "copying_in": number in server.stats_dict()["migrating"],
            "keys": sum(1 for r in records.values() if not r.deleted),
            "tombstones": sum(1 for r in records.values() if r.deleted),
            "items": [{"key": k, **_value_doc(r)} for k, r in items],
        })


def add_kv_routes(app: web.Application, service: KVService) -> None:
    routes = KVRoutes(service)
    app[KV_SERVICE] = service
    r = app.router
    r.add_post("/kv/set", routes.set)
    r.add_post("/kv/replicate", routes.replicate)
    r.add_get("/kv/get", routes.get)
    r.add_post("/kv/delete", routes.delete)
    r.add_get("/kv/stats", routes.stats)
    r.add_get("/kv/migrate", routes.migrate)
