"""The KV store on nodes started with ``--tls-cert/--tls-key/--tls-ca`` (a throwaway CA from
``trustme``): the data port speaks TLS to SDK clients and peers alike, peers must show a
certificate, plain TCP gets nothing, and the seed's curl routes on the KV port still work (over
https, handed to the https API). Real processes on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit.net.frames import HEADER, hello_frame
from clusterkit.net.client import KVClient
from clusterkit.net.local import LocalCluster

from .test_net_security import request, tls_files

WAIT = 30.0


@pytest.fixture(scope="module")
def tls_kv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, ssl.SSLContext, Path]]:
    root = tmp_path_factory.mktemp("kvtls")
    flags, client = tls_files(root)
    flags += ["--kv-strategy", "sync", "--partition-count", "16"]
    with LocalCluster(root / "cluster", size=3, extra_args=flags, kv=True,
                      env={"SSL_CERT_FILE": str(root / "ca.pem")}) as c:
        def https(nid: str) -> str:
            return f"https://127.0.0.1:{c.nodes[nid].http_port}"

        def ready() -> bool:
            try:
                status, doc = request(https("node-1") + "/cluster", context=client)
            except (OSError, ValueError):
                return False
            if status != 200:
                return False
            nodes = doc["cluster"]["nodes"]
            parts = doc["cluster"]["partition_map"]["partitions"].values()
            return (sum(1 for n in nodes if n["status"] == "active" and n.get("kv_addr")) == 3
                    and not any(p["incoming"] for p in parts))

        c.start("node-1")
        for nid in ("node-2", "node-3"):
            c.start(nid, join=https("node-1"))
        c.wait(ready, 60, "a 3-node KV store over TLS")
        yield c, client, root


def test_the_sdk_writes_and_reads_over_tls_and_every_copy_holds_the_write(tls_kv) -> None:
    c, client, _root = tls_kv
    seeds = [f"127.0.0.1:{n.http_port}" for n in c.nodes.values()]

    async def run() -> None:
        async with KVClient(seeds, strategy="sync", ssl=client, timeout=10.0) as kv:
            for i in range(20):
                await kv.set(f"tls:{i}", f"v{i}")
            assert [await kv.get(f"tls:{i}") for i in range(20)] == [f"v{i}" for i in range(20)]
            # W=2 of 3: every owner gets it once anti-entropy or the write itself reaches it; the
            # peers' own traffic (repair, migration) runs over the same TLS port
            await kv.set("tls:all", "x", quorum=3)
            held = await kv.holders("tls:all")
            assert len(held) == 3 and all(r is not None and r.value == "x" for r in held.values()), held

    asyncio.run(run())


def test_plain_tcp_to_the_kv_port_gets_no_kv_service(tls_kv) -> None:
    c, _client, _root = tls_kv
    port = c.nodes["node-2"].kv_port
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"\x00\x00\x00\x05hello")  # a frame where a TLS hello belongs
        sock.settimeout(WAIT)
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert not data.startswith(b"\x00")  # never a KV frame back (a TLS alert at most)


def test_a_peer_without_a_certificate_is_refused_but_a_client_is_served(tls_kv) -> None:
    c, client, root = tls_kv
    port = c.nodes["node-3"].kv_port

    async def hello_as_peer(context: ssl.SSLContext) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
        writer.write(hello_frame("clusterkit-cluster", "node-9", "127.0.0.1:1", b"n" * 16))
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(HEADER.size), WAIT)
        finally:
            writer.close()

    certless = ssl.create_default_context(cafile=str(root / "ca.pem"))  # (``client`` presents one)
    assert asyncio.run(hello_as_peer(certless)) == b""  # closed: a node must show its certificate
    with_cert = ssl.create_default_context(cafile=str(root / "ca.pem"))
    with_cert.load_cert_chain(str(root / "cert.pem"), str(root / "key.pem"))
    assert len(asyncio.run(hello_as_peer(with_cert))) == HEADER.size  # the same hello with one: answered

    # the seed's curl routes on the KV port: over https, handed to the node's https API
    status, doc = request(f"https://127.0.0.1:{port}/kv/stats", context=client)
    assert status == 200 and doc["node_id"] == "node-3"
