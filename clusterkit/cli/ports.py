"""``--base-port N`` for ``cluster up`` and ``demo``: known addresses instead of random ones.

Node i (from 1) listens on N + 3(i-1) (HTTP), N + 3(i-1) + 1 (Raft) and N + 3(i-1) + 2 (KV), so
``--base-port 8080`` puts node-1's API on 8080, node-2's on 8083, node-3's on 8086. Ports below
1024 need root and are refused; so is a base that leaves no room for every node under 65,536.
"""

from __future__ import annotations

import socket

from .args import bounded_int

MIN_BASE_PORT = 1024
MAX_PORT = 65535
PORTS_PER_NODE = 3  # HTTP, Raft, KV: the same as clusterkit.net.local.PORTS_PER_NODE

base_port = bounded_int(MIN_BASE_PORT, MAX_PORT)


def room_problem(base: int, nodes: int) -> str | None:
    """Why ``nodes`` nodes don't fit from ``base`` (None: they do)."""
    last = base + PORTS_PER_NODE * nodes - 1
    if last > MAX_PORT:
        return (f"--base-port {base}: {nodes} node(s) take ports {base} to {last} ({PORTS_PER_NODE} each), "
                f"past {MAX_PORT}; use a base of at most {MAX_PORT - PORTS_PER_NODE * nodes + 1}")
    return None


def taken(base: int, nodes: int) -> int | None:
    """The first of the nodes' ports something on this machine already listens on (None: all free)."""
    for port in range(base, base + PORTS_PER_NODE * nodes):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return port
    return None
