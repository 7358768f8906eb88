"""Joining, as an unlucky operator meets it: a join the cluster refuses for good ends the node with
one line and EXIT_REFUSED (it used to ask again forever); an address that doesn't answer is asked
again with a growing, jittered, capped backoff and few log lines (it was every 1.25 s, a warning
each time); a node removed with /leave says so when restarted, and exits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clusterkit.cli.codes import EXIT_REFUSED
from clusterkit.facade import Options
from clusterkit.net import join
from clusterkit.net.join import JoinBackoff, request_join
from clusterkit.net.local import LocalCluster, free_port, http_json
from clusterkit.net.node import NodeConfig

NODE_ENV = ("NODE_ID", "HTTP_ADDR", "RAFT_ADDR", "JOIN_ADDR", "BOOTSTRAP", "DATA_DIR", "LOG_LEVEL",
            "PARTITION_COUNT", "REPLICATION_FACTOR", "CLUSTER_NAME")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in NODE_ENV}


# ------------------------------------------------------------------ backoff
def test_the_join_backoff_doubles_from_a_quarter_second_to_its_cap_with_jitter() -> None:
    backoff = JoinBackoff(rng=random.Random(7))
    delays = [backoff.failed() for _ in range(12)]
    highs = [min(10.0, 0.25 * 2**i) for i in range(12)]
    assert all(high / 2 <= d <= high for d, high in zip(delays, highs)), delays
    assert highs[-1] == 10.0 and max(delays) <= 10.0
    assert len(set(delays)) == len(delays)  # jittered: no two nodes ask in lockstep
    backoff.reset()
    assert backoff.failed() <= 0.25


def test_the_join_backoff_logs_the_first_failure_then_at_most_every_30_seconds() -> None:
    backoff = JoinBackoff()
    assert [backoff.should_log(t) for t in (0.0, 1.0, 29.9, 30.0, 31.0, 59.9, 60.0)] == [
        True, False, False, True, False, False, True]


class _Node:
    """What request_join reads of a node."""

    def __init__(self, join_addr: str, tmp: Path) -> None:
        self.options = Options(node_id="node-9", http_addr=f"127.0.0.1:{free_port()}",
                               raft_addr=f"127.0.0.1:{free_port()}", join_addr=join_addr,
                               data_dir=str(tmp)).resolved()
        self.config = NodeConfig(request_timeout=1.0)
        self.admitted = True  # a restarted member (not a fresh start): its joins are not "fresh"
        self.incarnation: str | None = None

    @property
    def id(self) -> str:
        return self.options.node_id

    def admit(self, cluster_id: str | None = None, since: int = 0) -> None:
        self.admitted = True


def test_an_address_that_does_not_answer_is_asked_again_with_backoff_and_one_log_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:  # count the pacing instead of waiting it out
        delays.append(seconds)

    monkeypatch.setattr(join, "_sleep", no_wait)
    node = _Node(f"127.0.0.1:{free_port()}", tmp_path)  # nothing listens there

    async def attempts() -> list[bool]:
        return [await request_join(node) for _ in range(10)]  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO, logger="clusterkit.net"):
        assert asyncio.run(attempts()) == [False] * 10
    assert [d <= min(10.0, 0.25 * 2**i) for i, d in enumerate(delays)] == [True] * 10
    assert delays[-1] >= 10.0 / 2  # grown to the cap (the old loop waited 1 s every time)
    lines = [r.getMessage() for r in caplog.records if "join through" in r.getMessage()]
    assert len(lines) == 1 and "retrying with backoff" in lines[0], lines


# ------------------------------------------------------------------ a final refusal
@pytest.fixture
def refusing_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """A stand-in for a cluster's /join that answers every request with the given status."""
    status, reason = request.param
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": reason}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _node_cmd(node_id: str, join_addr: str, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clusterkit", "node", "--node-id", node_id,
            "--http-addr", f"127.0.0.1:{free_port()}", "--raft-addr", f"127.0.0.1:{free_port()}",
            "--join-addr", join_addr, "--data-dir", str(data_dir), *extra]


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize("refusing_server", [
    (409, "node id node-2 is already in use by 127.0.0.1:9002"),
    (409, "node-2 can't join: partition_count 32 != 16"),
    (403, "node-2 can't join: no peer handshake with it at 127.0.0.1:9002: it closed the connection"),
], indirect=True, ids=["409-duplicate", "409-config", "403-handshake"])
def test_a_join_refused_for_good_exits_with_one_line_and_asks_once(
        tmp_path: Path, refusing_server: tuple[str, list[str]]) -> None:
    addr, seen = refusing_server
    done = subprocess.run(_node_cmd("node-2", addr, tmp_path / "d"), capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert done.returncode == EXIT_REFUSED, done.stderr
    line = _one_error_line(done.stderr)
    assert line.startswith("clusterkit node: error: node-2 was refused by the cluster at ")
    assert seen == ["/join"]  # asked once, never again


@pytest.mark.parametrize("refusing_server", [(503, "no leader known yet: try again")], indirect=True)
def test_a_join_answered_503_is_asked_again(tmp_path: Path, refusing_server: tuple[str, list[str]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    addr, seen = refusing_server

    async def no_wait(seconds: float) -> None:
        pass

    monkeypatch.setattr(join, "_sleep", no_wait)
    node = _Node(addr, tmp_path)

    async def attempts() -> list[bool]:
        return [await request_join(node) for _ in range(3)]  # type: ignore[arg-type]

    assert asyncio.run(attempts()) == [False] * 3
    assert seen == ["/join"] * 3 and join.join_refused(node) is None  # type: ignore[arg-type]


def test_a_node_of_another_shape_is_refused_by_a_real_cluster_and_exits(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", size=1, partition_count=16) as c:
        c.start_all()
        done = subprocess.run(_node_cmd("node-2", c.nodes["node-1"].http, tmp_path / "d",
                                        "--partition-count", "32"),
                              capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == EXIT_REFUSED, done.stderr
    line = _one_error_line(done.stderr)
    assert "(409)" in line and "node-2 can't join" in line


# ------------------------------------------------------------------ removed, then restarted
def test_a_node_removed_with_leave_says_so_on_restart_and_exits(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", size=3) as c:
        c.start_all()
        status, _ = http_json(c.nodes["node-1"].url + "/leave", "POST", {"node_id": "node-3"})
        assert status == 200
        c.wait(lambda: c.get("node-3", "/consensus/stats")[1].get("removed") is True, 30, "node-3 to leave Raft")
        assert c.terminate("node-3") == 0
        node = c.start("node-3")
        assert node.process is not None
        assert node.process.wait(timeout=60) == EXIT_REFUSED
        restart = c.logs("node-3").split("started (restart)", 1)[1]
    line = _one_error_line(restart)
    assert line.startswith("clusterkit node: error: node-3 was removed from the cluster and is no longer a member")
    assert str(c.nodes["node-3"].data_dir) in line and "JOIN_ADDR" in line
