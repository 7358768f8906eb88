"""Joining a cluster: ask any node (``POST /join``); a non-leader forwards to the leader.

The request carries the joiner's node info and cluster config. The leader
checks the config (a node of another shape is refused with the difference
named), adds the joiner as a Raft learner with its raft address, and
answers once that change has committed. The joiner then catches up and
proposes its own cluster-state join (see :meth:`NetNode._membership`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from .node import NetNode

log = logging.getLogger("clusterkit.net")


def http_base(addr: str, tls: bool = False) -> str:
    """``:8080`` -> ``http://127.0.0.1:8080``; ``localhost:8080`` -> ``http://localhost:8080``
    (``https://`` on a TLS cluster); an address given with its scheme is kept."""
    if addr.startswith(("http://", "https://")):
        return addr.rstrip("/")
    host, _, port = addr.rpartition(":")
    return f"{'https' if tls else 'http'}://{host or '127.0.0.1'}:{port}"


def join_request(node: NetNode) -> dict[str, Any]:
    return {"node": node.options.node_info().to_wire(), "config": node.options.cluster_config().to_wire()}


async def request_join(node: NetNode) -> bool:
    """One attempt to join through ``join_addr``; True once the cluster accepted us."""
    tls = node.config.client_ssl
    url = http_base(node.options.join_addr, tls=tls is not None) + "/join"
    timeout = aiohttp.ClientTimeout(total=node.config.request_timeout + 2)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # On a TLS cluster the node's client context verifies the API's certificate with the CA.
            async with session.post(url, json=join_request(node), ssl=tls if tls is not None else True) as resp:
                body = await resp.json(content_type=None)
                if resp.status == 200:
                    log.info("%s: joined through %s", node.id, node.options.join_addr)
                    return True
                log.warning("%s: join through %s refused (%d): %s", node.id, url, resp.status, body.get("error"))
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        log.warning("%s: join through %s failed: %s", node.id, url, exc or type(exc).__name__)
    await asyncio.sleep(1.0)
    return False


async def forward(
    leader_http: str, path: str, payload: dict[str, Any], timeout: float, method: str = "POST",
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send ``payload`` to the leader's HTTP API; its status and JSON answer."""
    url = http_base(leader_http, tls=ssl_context is not None) + path
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.request(method, url, json=payload,
                                   ssl=ssl_context if ssl_context is not None else True) as resp:
            return resp.status, await resp.json(content_type=None)
