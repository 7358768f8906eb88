"""A cluster of real node processes on loopback: for ``clusterkit cluster up``, tests, benchmarks, demos.

Every node is its own ``python -m clusterkit node`` process with its own data
directory and free loopback ports; :class:`LocalCluster` starts them (node 1
bootstraps, the others join through it), waits until they are ready with
bounded waits, kills (SIGKILL) and restarts them, and reaps every process it
started, even when the caller fails.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback port free now, for a node to bind a moment later. Taken below the kernel's
    ephemeral range (where it picks ports for outgoing connections, which would race the node for
    it), at random, so processes starting clusters at once rarely try the same one."""
    low, high = _below_ephemeral()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _below_ephemeral() -> tuple[int, int]:
    """[10000, start of the ephemeral range), or [10000, 32768) when the range can't be read."""
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32768
    return (10000, start) if start > 11000 else (10000, 32768)


PORTS_PER_NODE = 3  # HTTP, Raft, KV: consecutive from LocalCluster.base_port
SECRET_FILE = "cluster-secret"
API_TOKEN_FILE = "api-token"


def _credential(path: Path) -> str:
    """The random credential in ``path``, made (owner-only) if it isn't there yet."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")  # 256 bits, printable: fits a header as it is
    return path.read_text().strip()


@dataclass
class LocalNode:
    node_id: str
    http_port: int
    raft_port: int
    data_dir: Path
    log_path: Path
    kv_port: int = 0  # reserved with the others, so no node's port-0 bind can take it
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 5.0,
              token: str | None = None) -> tuple[int, Any]:
    """One HTTP request; (status, decoded JSON or None). Connection errors are status 0.
    ``token``: the nodes' API token, sent as ``Authorization: Bearer``."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException):
        return 0, None  # (HTTPException: something other than an HTTP server answered)


@dataclass
class LocalCluster:
    root: Path
    size: int = 3
    cluster_name: str = "clusterkit-cluster"
    partition_count: int = 16
    replication_factor: int = 3
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    kv: bool = False  # each node serves the KV store on its own reserved port (KV_ADDR)
    # A cluster secret and an API token, made in ``root`` (or kept from an earlier run there) and
    # given to every node: what `cluster up` and the demo run (see docs/security.md).
    secure: bool = False
    # Node i (from 1) listens on base_port + 3(i-1) (HTTP), + 1 (Raft) and + 2 (KV); None: free ports.
    base_port: int | None = None
    nodes: dict[str, LocalNode] = field(default_factory=dict)
    token: str | None = None  # the API token when secure: pass it to http_json and the SDK

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.secure:
            self.token = _credential(self.root / API_TOKEN_FILE)
            _credential(self.root / SECRET_FILE)
            self.env = {"CLUSTER_SECRET_FILE": str(self.root / SECRET_FILE),
                        "API_TOKEN_FILE": str(self.root / API_TOKEN_FILE), **self.env}
        for i in range(1, self.size + 1):
            self._new_node(f"node-{i}")

    def _new_node(self, node_id: str) -> LocalNode:
        if self.base_port is not None:
            first = self.base_port + PORTS_PER_NODE * len(self.nodes)
            http, raft, kv = first, first + 1, first + 2
        else:
            http, raft, kv = free_port(), free_port(), free_port()
        node = LocalNode(node_id, http, raft, self.root / node_id / "data", self.root / f"{node_id}.log", kv)
        self.nodes[node_id] = node
        return node

    # ------------------------------------------------------------ processes
    def start(self, node_id: str, join: str | None = None) -> LocalNode:
        node = self.nodes[node_id]
        if node.alive:
            return node
        first = next(iter(self.nodes))
        join_addr = join if join is not None else ("" if node_id == first else self.nodes[first].http)
        env = {
            **os.environ,
            **self.env,
            "NODE_ID": node_id,
            "HTTP_ADDR": node.http,
            "RAFT_ADDR": f"127.0.0.1:{node.raft_port}",
            "JOIN_ADDR": join_addr,
            "DATA_DIR": str(node.data_dir),
            "CLUSTER_NAME": self.cluster_name,
            "PARTITION_COUNT": str(self.partition_count),
            "REPLICATION_FACTOR": str(self.replication_factor),
        }
        env.pop("BOOTSTRAP", None)
        if self.kv:
            env["KV_ADDR"] = f"127.0.0.1:{node.kv_port}"
        log = node.log_path.open("ab")
        node.process = subprocess.Popen(
            [sys.executable, "-m", "clusterkit", "node", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
        )
        log.close()
        return node

    def add_node(self, join_through: str | None = None) -> LocalNode:
        node = self._new_node(f"node-{len(self.nodes) + 1}")
        self.start(node.node_id, join=self.nodes[join_through or next(iter(self.nodes))].http)
        return node

    def start_all(self, timeout: float = 30.0) -> None:
        ids = list(self.nodes)
        self.start(ids[0])
        self.wait(lambda: self.leader() == ids[0], timeout, "the first node to lead")
        for nid in ids[1:]:
            self.start(nid)
        self.wait(lambda: self.active_members() == set(ids), timeout, "every node to join")

    def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.alive:
            assert node.process is not None
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)

    def terminate(self, node_id: str, timeout: float = 15.0) -> int:
        node = self.nodes[node_id]
        if node.process is None:
            return 0
        if node.alive:
            node.process.send_signal(signal.SIGTERM)
        try:
            return node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            node.process.kill()
            return node.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM everyone, SIGKILL whoever doesn't exit in time: nothing is left running."""
        for nid in self.nodes:
            node = self.nodes[nid]
            if node.alive:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for nid in self.nodes:
            self.terminate(nid)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ views
    def get(self, node_id: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return http_json(self.nodes[node_id].url + path, timeout=timeout, token=self.token)

    def leader(self) -> str | None:
        """The leader every live node that answers agrees on (None when they disagree or none is known)."""
        seen = set()
        for nid, node in self.nodes.items():
            if not node.alive:
                continue
            status, doc = self.get(nid, "/consensus/leader", timeout=2.0)
            if status != 200:
                return None
            seen.add(doc.get("leader_id"))
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def active_members(self) -> set[str]:
        lead = self.leader()
        if lead is None:
            return set()
        status, doc = self.get(lead, "/nodes")
        if status != 200:
            return set()
        return {n["id"] for n in doc["nodes"] if n["status"] == "active"}

    def kv_settled(self, via: str = "node-1") -> bool:
        """Every node publishes its KV address and no partition is still being copied."""
        status, doc = self.get(via, "/cluster")
        return status == 200 and sum(1 for n in doc["cluster"]["nodes"] if n.get("kv_addr")) == len(self.nodes) \
            and not any(p["incoming"] for p in doc["cluster"]["partition_map"]["partitions"].values())

    def wait(self, cond: Any, timeout: float, what: str, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            dead = [nid for nid, n in self.nodes.items() if n.process is not None and n.process.poll() not in (None, -9)]
            if dead:
                raise RuntimeError(f"node(s) {dead} exited; logs in {self.root}")
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}; logs in {self.root}")

    def logs(self, node_id: str) -> str:
        return self.nodes[node_id].log_path.read_text(errors="replace")
