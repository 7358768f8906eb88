"""The HTTP API's credential (issue 20, item 6), on real node processes on loopback.

A cluster made as ``cluster up`` makes it (a secret and an API token, ``LocalCluster(secure=True)``)
answers 401 with a JSON error and ``WWW-Authenticate: Bearer`` to every data or membership route
asked without the token or with a wrong one, changes nothing, and keeps the open routes open.
With the token, a follower forwards to the leader (with its own copy of the token), the KV port's
HTTP hand-off works, and the SDK reads and writes; without it the SDK's KV connections are
refused. A token-only cluster (no secret, no TLS) needs the token on /join too: a node given the
same token file joins, one without is refused. Under TLS with a CA, a client certificate is a
credential and a certless client is refused (tests/test_net_security.py's TLS cluster).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterkit.net.client import KVClient, KVError
from clusterkit.net.local import LocalCluster, free_port, http_json
from clusterkit.net.auth import ApiAuth, is_open, read_token

from .test_net_security import request, tls  # noqa: F401 - tls: the TLS cluster fixture, used here too

WAIT = 30.0
OPEN_ROUTES = ["/health", "/ready", "/health/detailed", "/cluster", "/nodes", "/partitions", "/partitions/stats",
               "/partitions/key?key=a", "/consensus/leader", "/consensus/stats", "/metrics", "/kv/stats"]
# (method, path, body): every route that changes state or returns stored data
GUARDED = [("POST", "/leave", {"node_id": "node-3"}), ("GET", "/kv/migrate?partition=0", None),
           ("PUT", "/registers/k", {"value": "stolen"}), ("GET", "/registers/k", None),
           ("POST", "/kv/set", {"key": "k", "value": "stolen"}), ("GET", "/kv/get?key=k", None),
           ("POST", "/kv/delete?key=k", None), ("POST", "/kv/replicate", {"key": "k", "value": "stolen"})]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("auth") / "cluster", size=3, kv=True, secure=True) as c:
        c.start_all()
        c.wait(lambda: _kv_ready(c), WAIT, "every node's KV store")
        yield c


def _kv_ready(c: LocalCluster) -> bool:
    status, doc = c.get("node-1", "/cluster")
    if status != 200:
        return False
    parts = doc["cluster"]["partition_map"]["partitions"].values()
    return sum(1 for n in doc["cluster"]["nodes"] if n.get("kv_addr")) == len(c.nodes) and not any(
        p["incoming"] for p in parts)


def _raw(port: int, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        is_json = resp.headers.get_content_type() == "application/json"
        return resp.status, dict(resp.headers), json.loads(raw or b"null") if is_json else raw
    finally:
        conn.close()


def test_without_the_token_every_guarded_route_is_a_401_and_nothing_changes(secure: LocalCluster) -> None:
    c = secure
    for nid, node in c.nodes.items():
        for port in (node.http_port, node.kv_port):  # the KV port hands HTTP on to the API
            for method, path, body in GUARDED:
                for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"},
                                {"Authorization": f"Basic {c.token}"}):
                    status, head, doc = _raw(port, method, path, body, headers)
                    assert status == 401, (nid, port, method, path, headers, status, doc)
                    assert head.get("WWW-Authenticate", "").startswith("Bearer"), head
                    assert isinstance(doc["error"], str) and "\n" not in doc["error"]
    # Nothing happened: node-3 is still a member and no register or key was written.
    assert {n["id"] for n in c.get("node-1", "/nodes")[1]["nodes"] if n["status"] == "active"} == set(c.nodes)
    assert c.get("node-1", "/registers/k")[1]["value"] != "stolen"
    assert c.get("node-1", "/kv/get?key=k")[0] == 404


def test_the_open_routes_need_no_credential(secure: LocalCluster) -> None:
    for path in OPEN_ROUTES:
        status, _, _ = _raw(secure.nodes["node-2"].http_port, "GET", path)
        assert status == 200, path


def test_with_the_token_a_follower_forwards_and_the_kv_port_serves(secure: LocalCluster) -> None:
    c = secure
    lead = c.leader()
    follower = next(n for n in c.nodes if n != lead)
    url = c.nodes[follower].url
    assert http_json(url + "/registers/greeting", "PUT", {"value": "hi"}, WAIT, token=c.token)[0] == 200
    assert http_json(c.nodes[lead].url + "/registers/greeting", timeout=WAIT, token=c.token)[1]["value"] == "hi"
    kv = f"http://127.0.0.1:{c.nodes[follower].kv_port}"
    assert http_json(kv + "/kv/set", "POST", {"key": "user:1", "value": "Ann"}, WAIT, token=c.token)[0] == 200
    status, doc = http_json(kv + "/kv/get?key=user:1", timeout=WAIT, token=c.token)
    assert status == 200 and doc["value"] == "Ann"
    assert http_json(url + "/kv/migrate?partition=0", timeout=WAIT, token=c.token)[0] == 200


def test_the_sdk_needs_the_token(secure: LocalCluster) -> None:
    c = secure
    seeds = [n.http for n in c.nodes.values()]

    async def run() -> None:
        async with KVClient(seeds, strategy="sync", token=c.token, timeout=10.0) as kv:
            await kv.set("sdk:1", "one")
            assert await kv.get("sdk:1") == "one"
        async with KVClient(seeds, strategy="sync", timeout=1.0, token="a-wrong-token-0123456789") as kv:
            with pytest.raises(KVError):
                await kv.set("sdk:2", "two")
            with pytest.raises(KVError):
                await kv.get("sdk:1")

    asyncio.run(run())
    assert http_json(c.nodes["node-1"].url + "/kv/get?key=sdk:2", timeout=WAIT, token=c.token)[0] == 404


def test_a_token_only_cluster_joins_with_the_token_and_refuses_a_node_without(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a-token-shared-by-every-node\n")
    with LocalCluster(tmp_path / "c", size=2, env={"API_TOKEN_FILE": str(token)}) as c:
        c.token = "a-token-shared-by-every-node"
        c.start_all()  # node-2's POST /join carried the token (no secret: /join needs it)
        assert "the HTTP API's data and membership routes need a bearer token" in c.logs("node-1")
        with LocalCluster(tmp_path / "other", size=3) as other:  # no token file
            stranger = other.start("node-3", join=c.nodes["node-1"].http)
            other.wait(lambda: "(401)" in other.logs("node-3"), WAIT, "node-3 to be refused")
            logs = other.logs("node-3")
            # Without any credential configured, one startup line says the API is open.
            assert sum("WARNING" in line and "the HTTP API is open" in line for line in logs.splitlines()) == 1
            assert stranger.node_id not in {n["id"] for n in c.get("node-1", "/nodes")[1]["nodes"]}
            raft = c.get("node-1", "/consensus/stats")[1]
            assert "node-3" not in raft["voters"] + raft["learners"]


def test_a_secret_without_a_token_forms_by_peer_proof_and_closes_the_data_routes(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a cluster secret of 32 characters\n")
    with LocalCluster(tmp_path / "c", size=2, env={"CLUSTER_SECRET_FILE": str(secret)}) as c:
        c.start_all()  # node-2's /join has no token: the leader's handshake with it is the proof
        assert c.active_members() == {"node-1", "node-2"}
        assert http_json(c.nodes["node-2"].url + "/registers/k", "PUT", {"value": "v"}, WAIT)[0] == 401
        assert "answer 401 to everyone" in c.logs("node-1")


def test_under_tls_a_client_certificate_is_a_credential_and_certless_clients_are_refused(tls) -> None:  # noqa: F811
    c, client, root = tls
    base = f"https://127.0.0.1:{c.nodes['node-2'].http_port}"
    certless = ssl.create_default_context(cafile=str(root / "ca.pem"))
    assert request(base + "/registers/tls-auth", "PUT", {"value": "x"}, certless)[0] == 401
    assert request(base + "/health", context=certless)[0] == 200
    # node-2 forwards to the leader presenting its own certificate.
    assert request(base + "/registers/tls-auth", "PUT", {"value": "y"}, client)[0] == 200
    assert request(base + "/registers/tls-auth", context=client)[1]["value"] == "y"


# ------------------------------------------------------------------ in process
def test_an_in_process_node_takes_an_api_token(tmp_path: Path) -> None:
    from clusterkit.facade import Options
    from clusterkit.net import ClusterKit

    token = "an-in-process-token-0123"
    options = Options(node_id="node-1", http_addr=f"127.0.0.1:{free_port()}", raft_addr=f"127.0.0.1:{free_port()}",
                      data_dir=str(tmp_path / "d"))
    url = f"http://{options.http_addr}/registers/k"

    async def run() -> list[int]:
        async with ClusterKit(options, api_token=token) as ck:
            await ck.wait_ready()
            loop = asyncio.get_running_loop()
            return [(await loop.run_in_executor(None, lambda t=t: http_json(url, "PUT", {"value": "v"}, WAIT, t)))[0]
                    for t in (None, "wrong-token-0123456789", token)]

    assert asyncio.run(run()) == [401, 401, 200]


def test_read_token_takes_printable_ascii_of_a_sane_length(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("  0123456789abcdef-token \n")
    assert read_token(str(good)) == "0123456789abcdef-token"
    for name, text, words in (("short", "short", "16 to"), ("space", "0123456789 abcdefgh", "printable"),
                              ("utf8", "0123456789abcdefé", "ASCII")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=words):
            read_token(str(path))


def test_the_token_check_and_the_open_routes() -> None:
    auth = ApiAuth.configure("0123456789abcdef", secret=False, tls=False)
    assert auth.required and auth.headers() == {"Authorization": "Bearer 0123456789abcdef"}
    assert auth.bearer_ok("Bearer 0123456789abcdef") and auth.bearer_ok("bearer 0123456789abcdef")
    assert not auth.bearer_ok("Bearer 0123456789abcdeF") and not auth.bearer_ok(None)
    assert not auth.token_ok(None) and not auth.token_ok(12345)
    assert ApiAuth.configure(None, secret=True, tls=False).required
    assert not ApiAuth.configure(None, secret=False, tls=False).required
    assert all(is_open(p.split("?")[0]) for p in OPEN_ROUTES)
    assert not any(is_open(p.split("?")[0]) for _, p, _ in GUARDED)
    assert not is_open("/join") and not is_open("/partitionsX")


def test_the_cli_refuses_a_bad_token_file_or_peer_flag_in_one_line(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too-short\n")
    cases = [(["--api-token-file", str(short)], {}, 2, "16 to"),
             (["--api-token-file", str(tmp_path / "missing")], {}, 3, "missing"),
             ([], {"ALLOW_REMOTE_PEERS": "maybe"}, 2, "true or false")]
    for flags, env, code, words in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "clusterkit", "node", "--node-id", "n1", "--http-addr", f"127.0.0.1:{free_port()}",
             "--data-dir", str(tmp_path / "data"), *flags],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            env={**{k: v for k, v in os.environ.items() if k not in ("JOIN_ADDR", "API_TOKEN_FILE")}, **env},
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code and len(lines) == 1 and words in lines[0], (flags, env, proc.stderr)
        assert not (tmp_path / "data").exists()  # refused before touching anything
