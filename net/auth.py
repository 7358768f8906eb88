"""Who may use a node's HTTP API (and the KV port's clients): the API credential.

With a cluster secret, TLS or an API token configured, every route that changes state or returns
stored data needs a credential: ``Authorization: Bearer <token>`` with the token from
``--api-token-file`` (compared in constant time), or, under TLS with a CA, a client certificate
that CA signed. Health, readiness, the cluster's shape and the counters stay open (:data:`OPEN`),
so load balancers, dashboards and the SDK's topology polling need nothing.

``POST /join`` is the one special case: when the peer transport authenticates (secret or TLS) the
leader runs the peer handshake with the joiner's Raft address before adding it, which proves the
joiner holds the secret or a CA-signed certificate; that proof stands in for the bearer token, so
a cluster with a secret and no token still forms. Without them, /join needs the token like any
other route.

Nodes talk to each other's APIs (forwarding to the leader, joining) with the same token: every
node of a cluster is given the same token file. The node's credential is looked up by node
(:func:`bind`, :func:`auth_of`), so the code that joins and forwards finds it without a new
field on :class:`~.node.NodeConfig`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

# Routes anyone may read: health and readiness (probes), the cluster's shape (the SDK's topology),
# consensus state and counters (dashboards). Everything else needs a credential.
OPEN = frozenset({"/health", "/health/detailed", "/ready", "/cluster", "/nodes", "/partitions", "/metrics",
                  "/kv/stats"})
OPEN_PREFIXES = ("/partitions/", "/consensus/")
JOIN = "/join"
MIN_TOKEN = 16
MAX_TOKEN = 4096
SCHEME = "Bearer"


def read_token(path: str) -> str:
    """The API token in ``path`` (surrounding whitespace dropped); ValueError if it can't be one."""
    raw = Path(path).read_bytes().strip()
    try:
        token = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"the API token in {path} must be ASCII (printable, no spaces)") from None
    if not MIN_TOKEN <= len(token) <= MAX_TOKEN:
        raise ValueError(f"the API token in {path} must be {MIN_TOKEN} to {MAX_TOKEN} characters, not {len(token)}")
    if not all(33 <= ord(c) <= 126 for c in token):  # (it goes into an HTTP header as it is)
        raise ValueError(f"the API token in {path} must be printable ASCII without spaces")
    return token


@dataclass(frozen=True)
class ApiAuth:
    """``token``: the bearer token this node accepts and sends to other nodes (None: no token).
    ``required``: a credential is needed on every route not in :data:`OPEN` (secret, TLS or token
    configured). ``client_certs``: the HTTPS server verifies client certificates with a CA, so
    one is a credential too."""

    token: str | None = None
    required: bool = False
    client_certs: bool = False

    @classmethod
    def configure(cls, token: str | None, *, secret: bool, tls: bool, client_certs: bool = False) -> ApiAuth:
        return cls(token, token is not None or secret or tls, client_certs)

    def headers(self) -> dict[str, str]:
        """What this node adds to its own requests to other nodes' APIs."""
        return {"Authorization": f"{SCHEME} {self.token}"} if self.token is not None else {}

    def token_ok(self, presented: Any) -> bool:
        """``presented`` is this node's token (constant time; a missing or odd value is not)."""
        if self.token is None or not isinstance(presented, str):
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.token.encode())

    def bearer_ok(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() == SCHEME.lower() and self.token_ok(value.strip())

    def problem(self, request: web.Request) -> str | None:
        """Why ``request`` may not go on (None: it may)."""
        if not self.required or is_open(request.path):
            return None
        if self.bearer_ok(request.headers.get("Authorization")):
            return None
        if self.client_certs and request.transport is not None and request.transport.get_extra_info("peercert"):
            return None  # (verified by the TLS handshake against the CA: a certless one has none)
        if "Authorization" in request.headers:
            return "the credential is not valid"
        return "a credential is required: Authorization: Bearer <token from --api-token-file>"

    def describe(self) -> str:
        """The one startup line that says who may use the API."""
        if not self.required:
            return ("the HTTP API is open: anyone who can reach it can read and change data and remove "
                    "members (give every node --api-token-file; see docs/security.md)")
        ways = (["a bearer token"] if self.token is not None else []) + (
            ["a CA-signed client certificate"] if self.client_certs else [])
        if not ways:
            return ("the HTTP API's data and membership routes need a credential, but no --api-token-file "
                    "was given: they answer 401 to everyone (see docs/security.md)")
        return f"the HTTP API's data and membership routes need {' or '.join(ways)}"


def is_open(path: str) -> bool:
    return path in OPEN or path.startswith(OPEN_PREFIXES)


def unauthorized(message: str) -> web.Response:
    return web.json_response({"error": message}, status=401,
                             headers={"WWW-Authenticate": f'{SCHEME} realm="clusterkit"'})


def middleware(auth: ApiAuth, join_proved_by_peer: Callable[[], bool]) -> Any:
    """The aiohttp middleware that keeps out requests without a credential, before any body is read.
    ``join_proved_by_peer``: whether /join's own peer handshake authenticates the joiner now."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        problem = auth.problem(request)
        if problem is not None and not (request.path == JOIN and join_proved_by_peer()):
            return unauthorized(problem)
        return await handler(request)

    return check


def bind(node: Any, auth: ApiAuth) -> None:
    """Make ``auth`` the credential ``node`` checks and presents (kept on the node itself)."""
    node.api_auth = auth


def auth_of(node: Any) -> ApiAuth:
    """The credential bound to ``node`` (an open API when none was)."""
    return getattr(node, "api_auth", None) or ApiAuth()
