"""The cluster secret and TLS, on real node processes on loopback.

A cluster started with ``--cluster-secret-file`` forms and commits; a node
with another secret never becomes a member; a raw connection without the
secret (no proof, a wrong proof, or a proof a node was tricked into
computing) is closed and counted, and can't inject a Raft message. A cluster
started with ``--tls-cert/--tls-key/--tls-ca`` (a throwaway CA from
``trustme``) forms and commits over TLS, serves its HTTP API over https, and
closes (and counts) a plain-TCP connection to its Raft port.

Each cluster is shared by its tests (module-scoped fixtures); ``LocalCluster``
as a context manager reaps every process it started.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from clusterkit.cli.codes import EXIT_REFUSED
from clusterkit.net.frames import AUTH, DIAL, HELLO, RAFT, Transcript, auth_frame
from clusterkit.net.local import LocalCluster, free_port, http_json

from .test_net_bad_input import WAIT, closed_by_peer, hello, pack, recv_frame, stats_errors

SECRET = b"correct horse battery staple, 32b"
TOKEN = "an-api-token-for-the-secret-cluster"  # with a secret, the data routes need a credential
CLUSTER = "clusterkit-cluster"


def _put(url: str, key: str, value: str, context: ssl.SSLContext | None = None,
         token: str | None = None) -> tuple[int, Any]:
    return request(url + f"/registers/{key}", "PUT", {"value": value}, context, token)


def request(url: str, method: str = "GET", body: Any = None, context: ssl.SSLContext | None = None,
            token: str | None = None) -> tuple[int, Any]:
    """http_json, with an SSL context for https."""
    if context is None:
        return http_json(url, method, body, timeout=WAIT, token=token)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=WAIT, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# ================================================================== the cluster secret
@pytest.fixture(scope="module")
def secret_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("secret")
    secret = root / "secret"
    secret.write_bytes(SECRET + b"\n")
    (root / "token").write_text(TOKEN + "\n")
    with LocalCluster(root / "cluster", size=3, extra_args=["--cluster-secret-file", str(secret),
                                                           "--api-token-file", str(root / "token")]) as c:
        c.token = TOKEN
        c.start_all()
        yield c


def test_nodes_sharing_the_secret_form_a_cluster_and_commit(secret_cluster: LocalCluster) -> None:
    c = secret_cluster
    lead = c.leader()
    assert lead == "node-1" and c.active_members() == set(c.nodes)
    # A write through a follower (forwarded to the leader) commits and every node reads it.
    assert _put(c.nodes["node-3"].url, "secret-k", "v1", token=TOKEN)[0] == 200
    for nid in c.nodes:
        assert http_json(c.nodes[nid].url + "/registers/secret-k", timeout=WAIT, token=TOKEN)[1]["value"] == "v1"
    peers = c.get(lead, "/consensus/stats")[1]["peers"]
    assert all(peers[p]["messages_received"] > 0 for p in ("node-2", "node-3"))


def _raw(c: LocalCluster, nid: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", c.nodes[nid].raft_port), timeout=WAIT)
    greeting = recv_frame(sock)
    assert greeting is not None and greeting[0] == HELLO and greeting[3] == nid
    return sock


def _counted_handshake(c: LocalCluster, nid: str, before: dict[str, int]) -> None:
    c.wait(lambda: stats_errors(c, nid).get("handshake", 0) > before.get("handshake", 0), WAIT,
           f"{nid} to count a handshake error")


def _still_commits(c: LocalCluster, value: str) -> None:
    lead = c.leader()
    assert lead is not None
    assert _put(c.nodes[lead].url, "after", value, token=TOKEN)[0] == 200
    assert http_json(c.nodes["node-2"].url + "/registers/after", timeout=WAIT, token=TOKEN)[1]["value"] == value


@pytest.mark.parametrize("proof", ["random-proof", "short-proof", "no-proof", "raft-before-hello"])
def test_a_connection_without_a_valid_proof_is_closed_counted_and_injects_nothing(
        secret_cluster: LocalCluster, proof: str) -> None:
    c = secret_cluster
    target = "node-2"
    before = stats_errors(c, target)
    # A forged RequestVote with a huge term: if it got through, the target would jump to that term.
    vote = pack([RAFT, [3, 10**9, "node-1", target, 10**9, 10**9, False, False]])
    with _raw(c, target) as sock:
        claim = pack([HELLO, 1, CLUSTER, "node-1", "", os.urandom(16)])  # claims to be a member
        sock.sendall({
            "random-proof": claim + pack([AUTH, os.urandom(32)]) + vote,
            "short-proof": claim + pack([AUTH, b"x"]) + vote,
            "no-proof": claim + vote,
            "raft-before-hello": vote,
        }[proof])
        assert closed_by_peer(sock), "a connection without the secret stayed open"
    _counted_handshake(c, target, before)
    assert c.get(target, "/consensus/stats")[1]["term"] < 10**9
    after = stats_errors(c, target)
    assert {r for r in after if after[r] > before.get(r, 0)} == {"handshake"}
    _still_commits(c, f"after-{proof}")


def test_a_proof_made_with_the_wrong_secret_is_refused(secret_cluster: LocalCluster) -> None:
    """The proof is right in every way but the secret: the node's nonce, ids and role all match."""
    c = secret_cluster
    target = "node-3"
    before = stats_errors(c, target)
    with socket.create_connection(("127.0.0.1", c.nodes[target].raft_port), timeout=WAIT) as sock:
        greeting = recv_frame(sock)
        assert greeting is not None
        my_nonce = os.urandom(16)
        sock.sendall(pack([HELLO, 1, CLUSTER, "node-1", "", my_nonce]))
        t = Transcript("node-1", target, my_nonce, greeting[5])
        sock.sendall(auth_frame(b"a different secret of 32 bytes..", DIAL, t))
        assert closed_by_peer(sock)
    _counted_handshake(c, target, before)


def test_a_node_cannot_be_used_to_prove_someone_else(secret_cluster: LocalCluster) -> None:
    """The reflection attack: get node-1 to prove itself for node-2's nonce, replay that to node-2.

    A stranger connects to node-2 claiming to be node-1 and reads node-2's nonce; then connects to
    node-1 with a hello carrying that nonce. If node-1 answered with its proof before checking the
    stranger's, and the proof covered only that nonce and node-1's id, it would be exactly what node-2
    expects from node-1: the stranger would pass for node-1 and send Raft messages in its name.
    """
    c = secret_cluster
    before = stats_errors(c, "node-2")
    with socket.create_connection(("127.0.0.1", c.nodes["node-2"].raft_port), timeout=WAIT) as to2, \
            socket.create_connection(("127.0.0.1", c.nodes["node-1"].raft_port), timeout=WAIT) as to1:
        hello2, hello1 = recv_frame(to2), recv_frame(to1)
        assert hello1 is not None and hello2 is not None
        to1.sendall(pack([HELLO, 1, CLUSTER, "node-2", "", hello2[5]]))  # node-2's nonce, as if ours
        to1.settimeout(1.0)
        try:
            leaked = recv_frame(to1)
        except (socket.timeout, ConnectionResetError):
            leaked = None
        relayed = leaked[1] if leaked is not None and leaked[0] == AUTH else os.urandom(32)
        to2.sendall(pack([HELLO, 1, CLUSTER, "node-1", "", os.urandom(16)]) + pack([AUTH, relayed]))
        assert closed_by_peer(to2, timeout=3.0), "a proof node-1 made for a stranger let it pass for node-1"
        assert leaked is None, "node-1 proved itself to a stranger that had proved nothing"
    _counted_handshake(c, "node-2", before)
    _still_commits(c, "after-reflection")


def test_proofs_are_bound_to_role_ids_and_nonces() -> None:
    from clusterkit.net.frames import ACCEPT, FrameError, check_auth, proof

    t = Transcript("node-1", "node-2", b"a" * 16, b"b" * 16)
    variants = [
        (DIAL, t), (ACCEPT, t),
        (DIAL, Transcript("node-2", "node-1", b"a" * 16, b"b" * 16)),
        (DIAL, Transcript("node-1", "node-3", b"a" * 16, b"b" * 16)),
        (DIAL, Transcript("node-1", "node-2", b"b" * 16, b"a" * 16)),
        (DIAL, Transcript("node-1n", "ode-2", b"a" * 16, b"b" * 16)),  # the same characters, split elsewhere
    ]
    proofs = {proof(SECRET, role, v) for role, v in variants}
    assert len(proofs) == len(variants)
    check_auth([AUTH, proof(SECRET, DIAL, t)], SECRET, DIAL, t)
    with pytest.raises(FrameError) as refused:
        check_auth([AUTH, proof(SECRET, ACCEPT, t)], SECRET, DIAL, t)
    assert refused.value.reason == "handshake"


def test_a_node_with_another_secret_never_becomes_a_member(secret_cluster: LocalCluster,
                                                          tmp_path: Path) -> None:
    c = secret_cluster
    wrong = tmp_path / "wrong-secret"
    wrong.write_bytes(b"not the cluster's secret at all")
    lead = c.leader()
    assert lead is not None
    before = stats_errors(c, lead)
    # Its own LocalCluster (so its own flags); only its node-4 is started, asking the leader to join.
    with LocalCluster(tmp_path / "intruder", size=4, extra_args=["--cluster-secret-file", str(wrong)]) as other:
        intruder = other.start("node-4", join=c.nodes[lead].http)
        # The leader dials a joiner's Raft address before adding it: node-4 can't prove the secret
        # (it hangs up on the leader's proof), so the join is refused and counted at the leader.
        c.wait(lambda: stats_errors(c, lead).get("handshake", 0) >= before.get("handshake", 0) + 1, 15,
               "the leader to refuse node-4")
        # A refused handshake is final: node-4 says so in one line and exits (it used to ask forever).
        assert intruder.process is not None and intruder.process.wait(timeout=WAIT) == EXIT_REFUSED
        assert "(403)" in other.logs("node-4") and "Traceback" not in other.logs("node-4")
        for nid in c.nodes:
            status, doc = c.get(nid, "/nodes")
            assert status == 200 and "node-4" not in {n["id"] for n in doc["nodes"]}, doc
            raft = c.get(nid, "/consensus/stats")[1]
            assert "node-4" not in raft["voters"] + raft["learners"], raft
        # Asked directly, the leader names the reason.
        status, doc = http_json(c.nodes[lead].url + "/join", "POST", {
            "node": {"id": "node-4", "raft_addr": f"127.0.0.1:{intruder.raft_port}", "api_addr": intruder.http},
            "config": {"cluster_name": CLUSTER, "partition_count": 16, "replication_factor": 3,
                       "hash_algorithm": "md5"},
        }, timeout=WAIT)
        # (403 while it is up; it exits 78 once refused, and then can't be reached: 503, "not yet")
        assert status in (403, 503) and "node-4 can't join" in doc["error"], doc
    _still_commits(c, "after-intruder")


def test_the_cli_refuses_a_short_or_missing_secret_file_in_one_line(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"too short\n")
    for path, code, words in ((short, 2, "too short"), (tmp_path / "missing", 3, "missing")):
        proc = subprocess.run(
            [sys.executable, "-m", "clusterkit", "node", "--node-id", "n1", "--http-addr", f"127.0.0.1:{free_port()}",
             "--data-dir", str(tmp_path / "data"), "--cluster-secret-file", str(path)],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in ("JOIN_ADDR", "CLUSTER_SECRET_FILE")},
        )
        assert proc.returncode == code, proc
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("clusterkit node: error:") and words in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        assert not (tmp_path / "data").exists()  # refused before touching anything


# ================================================================== TLS
def tls_files(root: Path) -> tuple[list[str], ssl.SSLContext]:
    """A throwaway CA and a certificate for 127.0.0.1 under ``root`` (ca.pem, cert.pem, key.pem):
    the nodes' TLS flags, and a client context that trusts the CA and presents the CA-signed
    certificate (under TLS with a CA, that is a credential for the API's data routes)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(root / "cert.pem"), append=True)
    flags = ["--tls-cert", str(root / "cert.pem"), "--tls-key", str(root / "key.pem"), "--tls-ca", str(root / "ca.pem")]
    client = ssl.create_default_context(cafile=str(root / "ca.pem"))
    client.load_cert_chain(str(root / "cert.pem"), str(root / "key.pem"))
    return flags, client


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, ssl.SSLContext, Path]]:
    root = tmp_path_factory.mktemp("tls")
    flags, client = tls_files(root)
    # SSL_CERT_FILE: the nodes' own HTTP clients (joining, forwarding to the leader) trust the test CA.
    with LocalCluster(root / "cluster", size=3, extra_args=flags, env={"SSL_CERT_FILE": str(root / "ca.pem")}) as c:
        def https(nid: str) -> str:
            return f"https://127.0.0.1:{c.nodes[nid].http_port}"

        def leader_of(nid: str) -> str | None:
            try:
                status, doc = request(https(nid) + "/consensus/leader", context=client)
            except (OSError, ValueError):
                return None
            return doc["leader_id"] if status == 200 else None

        def members() -> set[str]:
            try:
                status, doc = request(https("node-1") + "/nodes", context=client)
            except (OSError, ValueError):
                return set()
            return {n["id"] for n in doc["nodes"] if n["status"] == "active"} if status == 200 else set()

        c.start("node-1")
        c.wait(lambda: leader_of("node-1") == "node-1" and members() == {"node-1"}, 30, "node-1 to lead over TLS")
        for nid in ("node-2", "node-3"):
            c.start(nid, join=https("node-1"))
        c.wait(lambda: members() == set(c.nodes), 30, "every node to join over TLS")
        c.wait(lambda: all(leader_of(n) == "node-1" for n in c.nodes), WAIT, "everyone to know the leader")
        yield c, client, root


def test_a_tls_cluster_forms_and_commits_over_tls(tls: tuple[LocalCluster, ssl.SSLContext, Path]) -> None:
    c, client, _ = tls
    base = {nid: f"https://127.0.0.1:{c.nodes[nid].http_port}" for nid in c.nodes}
    assert _put(base["node-1"], "tls-k", "v1", client)[0] == 200
    assert _put(base["node-3"], "tls-k", "v2", client)[0] == 200  # a follower forwards to the leader over https
    for nid in c.nodes:
        status, doc = request(base[nid] + "/registers/tls-k", context=client)
        assert status == 200 and doc["value"] == "v2", (nid, doc)
    status, doc = request(base["node-1"] + "/consensus/stats", context=client)
    assert status == 200
    for peer in ("node-2", "node-3"):
        assert doc["peers"][peer]["messages_received"] > 0 and doc["peers"][peer]["connects"] >= 1
    # The HTTP API speaks only https: a plain request gets no answer.
    assert http_json(f"http://127.0.0.1:{c.nodes['node-2'].http_port}/health", timeout=WAIT)[0] == 0


def _tls_errors(c: LocalCluster, client: ssl.SSLContext, nid: str) -> dict[str, int]:
    status, doc = request(f"https://127.0.0.1:{c.nodes[nid].http_port}/consensus/stats", context=client)
    assert status == 200
    return doc["frame_errors"]


def test_plain_tcp_and_certless_tls_to_the_raft_port_are_closed_and_counted(
        tls: tuple[LocalCluster, ssl.SSLContext, Path]) -> None:
    c, client, root = tls
    target = "node-2"
    port = c.nodes[target].raft_port
    before = _tls_errors(c, client, target)
    # Plain TCP: a hello in the clear is not a TLS ClientHello; the node closes the connection.
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(hello("node-1"))
        assert closed_by_peer(sock)
    c.wait(lambda: _tls_errors(c, client, target).get("tls", 0) > before.get("tls", 0), WAIT,
           "the plain connection to be counted")
    # TLS without a client certificate: mutual TLS refuses it.
    before = _tls_errors(c, client, target)
    certless = ssl.create_default_context(cafile=str(root / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            with certless.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(hello("node-1"))
                assert closed_by_peer(sock)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass  # refused during the handshake itself
    c.wait(lambda: _tls_errors(c, client, target).get("tls", 0) > before.get("tls", 0), WAIT,
           "the certless connection to be counted")
    # The cluster carries on.
    base = f"https://127.0.0.1:{c.nodes['node-1'].http_port}"
    assert _put(base, "after-plain", "ok", client)[0] == 200
    status, doc = request(f"https://127.0.0.1:{c.nodes[target].http_port}/registers/after-plain", context=client)
    assert status == 200 and doc["value"] == "ok"
