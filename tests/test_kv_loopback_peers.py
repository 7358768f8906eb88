"""Without a cluster secret, a node's KV port hears peer nodes only from this machine (issue 20,
item 8): a peer hello from another address is closed and counted, the same hello from loopback
is answered, and clients (which the API token covers, not the address) are served from anywhere.

One real node whose KV port listens on every interface; the "remote" peer is this machine's own
non-loopback address (the test is skipped where there is none).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from clusterkit.net.frames import HEADER, frame, hello_frame
from clusterkit.net.frames import is_loopback
from clusterkit.net.kv_service import CLIENT_HELLO, CLIENT_VERSION
from clusterkit.net.local import LocalCluster, free_port

from .test_net_bad_input import WAIT


def _own_address() -> str | None:
    """An address of this machine that is not loopback (None: there is none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # (no packet is sent: this only picks the outgoing interface)
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


ADDRESS = _own_address()
pytestmark = pytest.mark.skipif(ADDRESS is None, reason="no non-loopback address on this machine")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, int]]:
    port = free_port()
    with LocalCluster(tmp_path_factory.mktemp("kv-peers") / "c", size=1, replication_factor=1,
                      extra_args=["--kv-addr", f":{port}"]) as c:  # every interface
        c.start_all()
        c.wait(lambda: c.get("node-1", "/kv/stats")[0] == 200, WAIT, "the KV store")
        yield c, port


def _hello_from(source: str, target: str, port: int, data: bytes) -> bytes | None:
    """Send ``data`` from ``source`` to ``target:port``; the first frame header answered, or None
    if the node closed the connection instead."""
    with socket.socket() as s:
        s.settimeout(WAIT)
        s.bind((source, 0))
        s.connect((target, port))
        s.sendall(data)
        try:
            header = s.recv(HEADER.size)
        except ConnectionResetError:
            return None
        return header or None


def test_a_peer_hello_from_another_address_is_closed_and_loopback_is_answered(node) -> None:
    c, port = node
    before = c.get("node-1", "/kv/stats")[1]["frame_errors"]
    hello = hello_frame("clusterkit-cluster", "node-9", "127.0.0.1:1", b"n" * 16)
    assert ADDRESS is not None
    assert _hello_from(ADDRESS, ADDRESS, port, hello) is None
    assert c.get("node-1", "/kv/stats")[1]["frame_errors"] == before + 1
    assert "only loopback peers are heard" in c.logs("node-1")
    assert _hello_from("127.0.0.1", "127.0.0.1", port, hello) is not None


def test_a_client_is_served_from_another_address(node) -> None:
    _c, port = node
    assert ADDRESS is not None
    answer = _hello_from(ADDRESS, ADDRESS, port, frame([CLIENT_HELLO, CLIENT_VERSION, "clusterkit-cluster"]))
    assert answer is not None


def test_is_loopback() -> None:
    assert is_loopback(("127.0.0.1", 1)) and is_loopback(("::1", 1, 0, 0)) and is_loopback(("::ffff:127.0.0.2", 1))
    assert not is_loopback(("192.0.2.2", 1)) and not is_loopback(None) and not is_loopback(("nonsense", 1))
