"""Sending a request on to another node's HTTP API: what a follower does with a membership or
register request only the leader can take."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from .addr import http_base


class Unreached(ConnectionError):
    """Nothing of the request reached the leader: it can't have acted on it."""


async def forward(
    leader_http: str, path: str, payload: dict[str, Any], timeout: float, method: str = "POST",
    ssl_context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send ``payload`` to the leader's HTTP API; its status and JSON answer. ``headers``: the
    node's credential (net/auth.py). Raises :class:`Unreached` when no byte of the request was
    sent; any other error means it may have been taken (aiohttp itself sends an idempotent
    method again after a disconnect, so a refused connection can follow a request delivered)."""
    sent = False

    async def headers_sent(*_args: Any) -> None:
        nonlocal sent
        sent = True

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    url = http_base(leader_http, tls=ssl_context is not None) + path
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                         trace_configs=[trace]) as session:
            async with session.request(method, url, json=payload, headers=headers,
                                       ssl=ssl_context if ssl_context is not None else True) as resp:
                return resp.status, await resp.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        if not sent:
            raise Unreached(str(exc)) from exc
        raise
