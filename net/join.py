"""Joining a cluster: ask any node (``POST /join``); a non-leader forwards to the leader.

The request carries the joiner's node info and cluster config. The leader
checks the config (a node of another shape is refused with the difference
named), adds the joiner as a Raft learner with its raft address, and
answers once that change has committed. The joiner then catches up and
proposes its own cluster-state join (see :meth:`NetNode._membership`).

A refusal that asking again can't change (409: the id is taken or the config differs; 403: the
peer handshake was refused; 401: no credential) is final: :class:`JoinRefused` is handed to
whoever watches the node (:func:`on_join_refused`; ``clusterkit node`` exits with one line and
``EXIT_REFUSED``) and the node asks no more. Anything else (no answer, no leader yet) is asked
again after an exponential, jittered and capped backoff, logged once and then at most every
:attr:`JoinBackoff.log_every` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from clusterkit.facade import Options

from .addr import http_base
from .auth import auth_of

log = logging.getLogger("clusterkit.net")


class Joiner(Protocol):
    """What joining needs of a node (:class:`~.node.NetNode` is one): the node imports this
    module, never the other way round."""

    id: str
    options: Options
    config: Any  # its NodeConfig: client_ssl (a TLS cluster) and request_timeout
    incarnation: str | None
    join_state: Any  # where this module keeps the node's backoff and refusal

    @property
    def admitted(self) -> bool: ...

    def admit(self, cluster_id: str | None = None, since: int = 0) -> None: ...


def join_request(node: Joiner) -> dict[str, Any]:
    """``fresh``: this node started on an empty data directory and has not been taken in since. If
    its id is still a member, it lost its disk: the leader replaces it instead of counting its vote."""
    return {"node": node.options.node_info().to_wire(), "config": node.options.cluster_config().to_wire(),
            "fresh": not node.admitted, "incarnation": node.incarnation or ""}


# Answers that asking again won't change: a credential missing (401), the peer handshake refused
# (403), the id taken or the cluster's shape different (409).
REFUSED = frozenset({401, 403, 409})


class NotAMember(Exception):
    """This node can't be a member as it is: the cluster refused it, or removed it. Retrying can't
    help until the operator changes something (the id, the config, the secret or certificate, or
    the data directory). ``clusterkit node`` exits with one line and ``EXIT_REFUSED``."""


class JoinRefused(NotAMember):
    """The cluster refused this node's join (401, 403 or 409)."""

    def __init__(self, node_id: str, via: str, status: int, reason: str) -> None:
        self.node_id, self.via, self.status, self.reason = node_id, via, status, reason
        super().__init__(f"{node_id} was refused by the cluster at {via} ({status}): {reason}")


class NodeRemoved(NotAMember):
    """The node's own log says it was removed from the cluster (``POST /leave``): restarted on
    that data directory it can never serve again."""

    def __init__(self, node_id: str, data_dir: str) -> None:
        self.node_id, self.data_dir = node_id, data_dir
        super().__init__(f"{node_id} was removed from the cluster and is no longer a member: to rejoin, "
                         f"delete its data directory ({data_dir}) and start it again with JOIN_ADDR set")


@dataclass
class JoinBackoff:
    """Pacing of join attempts that failed for a reason that may pass (no answer, no leader yet):
    exponential from ``first`` to ``cap`` seconds, each delay drawn from its upper half (jitter,
    so nodes started together don't ask in lockstep). The first failure is logged, then at most
    one line every ``log_every`` seconds, saying how many attempts failed meanwhile."""

    first: float = 0.25
    cap: float = 10.0
    log_every: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    unlogged: int = 0
    logged_at: float | None = None

    def failed(self) -> float:
        """Count a failure; the delay before the next attempt."""
        high = min(self.cap, self.first * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return self.rng.uniform(high / 2, high)

    def should_log(self, now: float) -> bool:
        """True for the first failure and then at most every ``log_every`` seconds."""
        if self.logged_at is None or now - self.logged_at >= self.log_every:
            self.logged_at = now
            return True
        self.unlogged += 1
        return False

    def reset(self) -> None:
        self.failures = self.unlogged = 0
        self.logged_at = None


@dataclass
class _JoinState:
    backoff: JoinBackoff = field(default_factory=JoinBackoff)
    refused: JoinRefused | None = None
    listeners: list[Callable[[JoinRefused], None]] = field(default_factory=list)


_sleep = asyncio.sleep  # (a test counts the delays instead of waiting them)


def _state(node: Joiner) -> _JoinState:
    """The node's join state, kept on the node itself (made at its first join)."""
    state = getattr(node, "join_state", None)
    if state is None:
        state = _JoinState()
        node.join_state = state
    return state


def join_backoff(node: Joiner) -> JoinBackoff:
    """The node's join backoff (to read, or to tune in a test)."""
    return _state(node).backoff


def on_join_refused(node: Joiner, callback: Callable[[JoinRefused], None]) -> None:
    """Call ``callback`` once if the cluster refuses ``node`` for good (at once if it already has)."""
    state = _state(node)
    if state.refused is not None:
        callback(state.refused)
    else:
        state.listeners.append(callback)


def join_refused(node: Joiner) -> JoinRefused | None:
    return _state(node).refused


async def request_join(node: Joiner) -> bool:
    """One attempt to join through ``join_addr``; True once the cluster accepted us. A failed
    attempt waits its backoff before returning; after a final refusal no request is sent again."""
    state = _state(node)
    backoff = state.backoff
    if state.refused is not None:
        await _sleep(backoff.cap)  # whoever runs the node stops it; nothing to ask meanwhile
        return False
    tls = node.config.client_ssl
    url = http_base(node.options.join_addr, tls=tls is not None) + "/join"
    timeout = aiohttp.ClientTimeout(total=node.config.request_timeout + 2)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # On a TLS cluster the node's client context verifies the API's certificate with the CA.
            async with session.post(url, json=join_request(node), ssl=tls if tls is not None else True,
                                    headers=auth_of(node).headers()) as resp:  # (the cluster's API token)
                body = await resp.json(content_type=None)
                error = body.get("error") if isinstance(body, dict) else None
                if resp.status == 200:
                    after = f" after {backoff.failures} failed attempts" if backoff.failures else ""
                    log.info("%s: joined through %s%s", node.id, node.options.join_addr, after)
                    backoff.reset()
                    cluster_id = body.get("cluster_id") if isinstance(body, dict) else None
                    since = body.get("since") if isinstance(body, dict) else None
                    node.admit(cluster_id if type(cluster_id) is str else None,
                               since if type(since) is int and 0 <= since < 1 << 62 else 0)
                    return True
                if resp.status in REFUSED:
                    _refused(node, state, JoinRefused(node.id, url, resp.status, str(error or resp.reason)))
                    return False
                problem = f"refused ({resp.status}): {error}"
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        problem = f"failed: {exc or type(exc).__name__}"
    delay = backoff.failed()
    if backoff.should_log(asyncio.get_running_loop().time()):
        more = f" ({backoff.unlogged} more failed attempts since the last line)" if backoff.unlogged else ""
        backoff.unlogged = 0
        log.warning("%s: join through %s %s%s; retrying with backoff (up to %g s)", node.id, url, problem,
                    more, backoff.cap)
    await _sleep(delay)
    return False


def _refused(node: Joiner, state: _JoinState, exc: JoinRefused) -> None:
    state.refused = exc
    listeners, state.listeners = state.listeners, []
    if not listeners:  # nobody to stop the node: say it here, once
        log.error("%s; it will not ask again", exc)
    for callback in listeners:
        callback(exc)
