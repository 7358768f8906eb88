"""Sending a request on to another node's HTTP API: what a follower does with a membership or
register request only the leader can take."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from .addr import http_base


async def forward(
    leader_http: str, path: str, payload: dict[str, Any], timeout: float, method: str = "POST",
    ssl_context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send ``payload`` to the leader's HTTP API; its status and JSON answer. ``headers``: the
    node's credential (net/auth.py)."""
    url = http_base(leader_http, tls=ssl_context is not None) + path
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.request(method, url, json=payload, headers=headers,
                                   ssl=ssl_context if ssl_context is not None else True) as resp:
            return resp.status, await resp.json(content_type=None)
