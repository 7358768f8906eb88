"""Hostile HTTP bodies at a live node (issue 20, item 10): deep nesting, malformed requests,
bodies announced larger than anything the API takes.

One real ``python -m clusterkit node`` with the KV store serves the module; every wait is bounded
by ``WAIT``. The rate limiter's arithmetic is checked with a fake clock, in process.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from clusterkit.net.http_body import MAX_DEPTH, BadBody, parse_json
from clusterkit.net.local import LocalCluster
from clusterkit.net.log_limit import RateLimited

from .test_net_bad_input import WAIT, closed_by_peer

NESTED = b'{"a":' * 5000


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("http-input") / "cluster", size=1, kv=True,
                      replication_factor=1) as c:
        c.start_all()
        c.wait(lambda: c.get("node-1", "/kv/stats")[0] == 200, WAIT, "the KV store")
        yield c


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; the node's answer (headers and body), read up to its
    Content-Length or the node's close, whichever comes first (a node may keep reading the rest
    of a refused body a while before closing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if sep and lengths and len(body) >= int(lengths[0]):
                break
        return out


def _post(method: str, path: str, body: bytes, extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    return head.encode() + body


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(("method", "path"), [("POST", "/kv/set"), ("PUT", "/registers/k"), ("POST", "/join"),
                                              ("POST", "/leave"), ("POST", "/kv/delete"), ("POST", "/kv/replicate")])
def test_deeply_nested_json_is_a_400_on_every_route_that_reads_a_body(node: LocalCluster, method: str,
                                                                       path: str) -> None:
    answer = _raw(node.nodes["node-1"].http_port, _post(method, path, NESTED))
    assert _status(answer) == 400, answer[:300]
    assert b"nested" in answer or b"key" in answer  # (/kv/delete without a key says the key is missing)
    assert node.get("node-1", "/health")[0] == 200
    assert "RecursionError" not in node.logs("node-1")


def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(node: LocalCluster) -> None:
    # Only the headers go out: a node that waited for 8 MiB would never answer.
    n = node.nodes["node-1"]
    for port in (n.http_port, n.kv_port):  # the KV port hands HTTP on to the API
        for method, path in (("POST", "/kv/set"), ("POST", "/kv/replicate"), ("PUT", "/registers/k"),
                             ("POST", "/join")):
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {8 << 20}\r\nConnection: close\r\n\r\n"
            answer = _raw(port, head.encode())
            assert _status(answer) in (400, 413), (port, path, answer[:300])
            assert b"8388608" not in answer or b"larger" in answer or b"Large" in answer


def test_a_kv_hello_announcing_megabytes_is_closed_before_its_body_is_read(node: LocalCluster) -> None:
    with socket.create_connection(("127.0.0.1", node.nodes["node-1"].kv_port), timeout=WAIT) as s:
        s.sendall(struct.pack(">I", 32 << 20) + b"\x00" * 1024)
        assert closed_by_peer(s)
    assert node.get("node-1", "/health")[0] == 200


def _rss_mib(c: LocalCluster) -> float:
    process = c.nodes["node-1"].process
    assert process is not None
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _send_big(port: int, head: bytes, size: int) -> None:
    """``head`` then ``size`` bytes, until the node stops taking them; what it answers is ignored."""
    chunk = b"x" * (1 << 20)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(head)
            for _ in range(size >> 20):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
    except OSError:
        pass  # refused or cut off early: what a bounded node does


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the node's RSS from /proc")
def test_eight_mib_bodies_and_hellos_leave_the_nodes_memory_as_it_was(node: LocalCluster) -> None:
    """Issue 20: RSS went from 45 to 139 MB after 8 MiB bodies and stayed. A KV hello announcing
    32 MiB is cut off at its header (the node buffered every byte of it before: 8 connections
    holding 8 MiB each were +64 MiB), and HTTP bodies are refused at their declared length."""
    n = node.nodes["node-1"]
    before = _rss_mib(node)
    chunk = b"x" * (1 << 20)
    held: list[socket.socket] = []
    try:
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", n.kv_port), timeout=WAIT)
            held.append(s)
            try:
                s.sendall(struct.pack(">I", 32 << 20))
                for _ in range(8):
                    s.sendall(chunk)
            except OSError:
                pass  # cut off: what a bounded node does
        assert node.get("node-1", "/health")[0] == 200  # (the node has read whatever it was going to)
        assert _rss_mib(node) - before < 32, (before, _rss_mib(node))
    finally:
        for s in held:
            s.close()
    size = 8 << 20
    head = f"POST /kv/set HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda port: _send_big(port, head, size), [n.http_port, n.kv_port] * 16))
    assert node.get("node-1", "/health")[0] == 200
    assert _rss_mib(node) - before < 48, (before, _rss_mib(node))


def test_malformed_requests_log_no_traceback_and_few_lines(node: LocalCluster) -> None:
    port = node.nodes["node-1"].http_port
    before = node.logs("node-1")
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
           b"POST /kv/set HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
           b"POST /kv/set HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"]
    for i in range(60):
        assert _status(_raw(port, bad[i % 3])) == 400
    assert node.get("node-1", "/health")[0] == 200
    new = node.logs("node-1")[len(before):]
    assert "Traceback" not in new
    lines = [line for line in new.splitlines() if "Error handling request" in line]
    # One line per kind of error per 10 s (three kinds here), not one per request.
    assert 1 <= len(lines) <= 9, lines
    assert all(" WARNING " in line for line in lines), lines


# ------------------------------------------------------------------ in process
def test_parse_json_refuses_depth_past_the_bound_but_not_brackets_in_strings() -> None:
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(BadBody, match="nested"):
        parse_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    with pytest.raises(BadBody, match="nested"):
        parse_json(NESTED)
    text = b'{"value": "' + b"[{" * 5000 + b'\\"[["}'
    assert parse_json(text)["value"].startswith("[{")
    for bad in (b"{not json", b"\xff\xfe", b'{"a": 1'):
        with pytest.raises(BadBody, match="not JSON"):
            parse_json(bad)


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - a record with exc_info, as aiohttp logs it
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                                 ("127.0.0.1",), sys.exc_info())


def test_rate_limited_lets_one_line_per_kind_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    limit = RateLimited(interval=10.0, clock=lambda: now[0])
    first = _record(ValueError("bad header\nmore"))
    assert limit.filter(first)
    assert first.exc_info is None and first.levelname == "WARNING"
    assert first.getMessage() == "Error handling request from 127.0.0.1: ValueError: bad header"
    assert limit.filter(_record(KeyError("other kind")))  # another kind has its own budget
    results: list[Any] = [limit.filter(_record(ValueError("x"))) for _ in range(5)]
    assert results == [False] * 5
    now[0] = 10.0
    later = _record(ValueError("y"))
    assert limit.filter(later)
    assert "(5 more like it in the last 10 s not logged)" in later.getMessage()
