"""Bad input at a live node: raw frames at its Raft port, bad HTTP requests, and /metrics parsed.

One 3-node cluster of real ``python -m clusterkit node`` processes on loopback
serves the whole module (``LocalCluster`` as a context manager reaps every
process, even when a test fails). Each bad frame is sent with a raw socket;
afterwards the node answers /health, the cluster still commits a write
through the leader, and the node's frame-error counter (in
``/consensus/stats`` and in ``/metrics``) went up with the right reason.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterkit.net.frames import DEFAULT_MAX_FRAME, HELLO, PROTOCOL_VERSION, RAFT
from clusterkit.net.local import LocalCluster, http_json

CLUSTER = "clusterkit-cluster"
WAIT = 10.0  # every wait in this module is bounded by this many seconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("bad-input") / "cluster", size=3) as c:
        c.start_all()
        yield c


# ------------------------------------------------------------------ raw frames
def pack(body: Any) -> bytes:
    data = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">I", len(data)) + data


def hello(node_id: str = "intruder", cluster: str = CLUSTER, version: int = PROTOCOL_VERSION) -> bytes:
    return pack([HELLO, version, cluster, node_id, "", os.urandom(16)])


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def recv_frame(sock: socket.socket) -> list[Any] | None:
    header = recv_exact(sock, 4)
    if header is None:
        return None
    body = recv_exact(sock, struct.unpack(">I", header)[0])
    return None if body is None else msgpack.unpackb(body, raw=False)


def closed_by_peer(sock: socket.socket, timeout: float = WAIT) -> bool:
    """True once the node closed the connection (EOF or reset); False if it stayed open ``timeout`` s."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def raw_session(c: LocalCluster, target: str, *chunks: bytes, read_hello: bool = True) -> bool:
    """Connect to ``target``'s Raft port, send ``chunks``; True when the node then closed the connection."""
    with socket.create_connection(("127.0.0.1", c.nodes[target].raft_port), timeout=WAIT) as sock:
        if read_hello:  # the node greets first, on every connection
            greeting = recv_frame(sock)
            assert greeting is not None and greeting[0] == HELLO and greeting[3] == target
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (ConnectionResetError, BrokenPipeError):
                return True  # closed while we were still sending (an oversized length, say)
        return closed_by_peer(sock)


# ------------------------------------------------------------------ the node's counters
def stats_errors(c: LocalCluster, nid: str) -> dict[str, int]:
    status, doc = c.get(nid, "/consensus/stats")
    assert status == 200
    return doc["frame_errors"]


def metrics(c: LocalCluster, nid: str) -> dict[str, Any]:
    status, text = raw_get(c, nid, "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(text)}


def metric_errors(c: LocalCluster, nid: str) -> dict[str, float]:
    family = metrics(c, nid)["clusterkit_frame_errors"]
    assert family.type == "counter"
    return {s.labels["reason"]: s.value for s in family.samples if s.name == "clusterkit_frame_errors_total"}


def raw_get(c: LocalCluster, nid: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", c.nodes[nid].http_port, timeout=WAIT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def leader(c: LocalCluster) -> str:
    c.wait(lambda: c.leader() is not None, WAIT, "a leader")
    lead = c.leader()
    assert lead is not None
    return lead


_writes = iter(range(1_000_000))


def assert_serving_and_committing(c: LocalCluster, target: str) -> None:
    assert c.get(target, "/health")[0] == 200
    value = f"v{next(_writes)}"
    lead = leader(c)
    status, doc = http_json(c.nodes[lead].url + "/registers/x", "PUT", {"value": value}, timeout=WAIT)
    assert status == 200, doc
    status, doc = http_json(c.nodes[target].url + "/registers/x", timeout=WAIT)
    assert status == 200 and doc["value"] == value, doc


# ------------------------------------------------------------------ the cases
def _random_payload(seed: int) -> bytes:
    """Seeded random bytes behind a valid length: they reach the msgpack decoder."""
    payload = random.Random(seed).randbytes(256)
    return struct.pack(">I", len(payload)) + payload


def _random_stream(seed: int) -> bytes:
    """Seeded random bytes, length and all: this seed's first four bytes claim more than 16 MiB."""
    data = random.Random(seed).randbytes(1024)
    assert struct.unpack(">I", data[:4])[0] > DEFAULT_MAX_FRAME
    return data


def _heartbeat(src: str, dst: str, term: Any = 0) -> list[Any]:
    return [5, term, src, dst, 0, 0]  # the codec's wire form of Heartbeat(term, src, dst, commit, round)


@dataclass(frozen=True)
class Case:
    name: str
    reasons: frozenset[str]  # the counter that must go up (any of these, for random input)
    chunks: Callable[[str], list[bytes]]  # given the target's id

    def __repr__(self) -> str:
        return self.name


CASES = [
    Case("oversized-length", frozenset({"oversized"}),
         lambda t: [struct.pack(">I", DEFAULT_MAX_FRAME + 1) + b"\0" * 64]),
    Case("max-length", frozenset({"oversized"}), lambda t: [b"\xff\xff\xff\xff"]),
    Case("random-stream", frozenset({"oversized"}), lambda t: [_random_stream(3)]),
    *[Case(f"random-payload-{seed}", frozenset({"malformed", "handshake"}), lambda t, s=seed: [_random_payload(s)])
      for seed in (1, 2, 3)],
    Case("not-msgpack", frozenset({"malformed"}), lambda t: [struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1"]),
    Case("not-an-array", frozenset({"malformed"}), lambda t: [pack({"kind": 1})]),
    Case("hello-then-garbage", frozenset({"malformed"}),
         lambda t: [hello(), struct.pack(">I", 6) + b"\xc1" * 6]),
    Case("hello-then-oversized", frozenset({"oversized"}), lambda t: [hello(), struct.pack(">I", 1 << 30)]),
    Case("unknown-kind", frozenset({"unknown-kind"}), lambda t: [hello(), pack([9, "what"])]),
    Case("hello-twice", frozenset({"unknown-kind"}), lambda t: [hello(), hello()]),
    Case("raft-wrong-field-type", frozenset({"invalid"}),
         lambda t: [hello(), pack([RAFT, _heartbeat("intruder", t, "1")])]),
    Case("raft-negative-term", frozenset({"invalid"}),
         lambda t: [hello(), pack([RAFT, _heartbeat("intruder", t, -1)])]),
    Case("raft-entries-not-array", frozenset({"invalid"}),
         lambda t: [hello(), pack([RAFT, [1, 1, "intruder", t, 0, 0, 0, "not entries"]])]),
    Case("raft-message-not-array", frozenset({"invalid"}), lambda t: [hello(), pack([RAFT, 5])]),
    Case("raft-unknown-tag", frozenset({"invalid"}), lambda t: [hello(), pack([RAFT, [99, 1, "intruder", t]])]),
    Case("raft-forged-src", frozenset({"forged"}),
         lambda t: [hello(), pack([RAFT, _heartbeat("node-3" if t != "node-3" else "node-2", t)])]),
    Case("raft-wrong-dst", frozenset({"forged"}),
         lambda t: [hello(), pack([RAFT, _heartbeat("intruder", "elsewhere")])]),
    Case("other-cluster", frozenset({"handshake"}), lambda t: [hello(cluster="another-cluster")]),
    Case("wrong-version", frozenset({"handshake"}), lambda t: [hello(version=PROTOCOL_VERSION + 1)]),
    Case("version-not-int", frozenset({"handshake"}), lambda t: [pack([HELLO, "1", CLUSTER, "x", "", os.urandom(16)])]),
    Case("short-nonce", frozenset({"handshake"}), lambda t: [pack([HELLO, PROTOCOL_VERSION, CLUSTER, "x", "", b"1"])]),
    Case("raft-before-hello", frozenset({"handshake"}), lambda t: [pack([RAFT, _heartbeat("intruder", t)])]),
    Case("empty-frame", frozenset({"invalid"}), lambda t: [struct.pack(">I", 0)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_frame_closes_one_connection_is_counted_and_the_cluster_goes_on(
        cluster: LocalCluster, case: Case) -> None:
    c = cluster
    # Alternate between the leader and a follower, so both kinds of node see bad input.
    target = leader(c) if CASES.index(case) % 2 == 0 else next(n for n in sorted(c.nodes) if n != leader(c))
    before = stats_errors(c, target)
    assert raw_session(c, target, *case.chunks(target)), f"{case.name}: the node kept the connection open"

    def went_up() -> bool:
        now = stats_errors(c, target)
        return any(now.get(r, 0) > before.get(r, 0) for r in case.reasons)

    c.wait(went_up, WAIT, f"{target}'s frame_errors to count {sorted(case.reasons)}")
    after = stats_errors(c, target)
    grown = {r for r in after if after[r] > before.get(r, 0)}
    assert grown <= case.reasons, f"{case.name}: counted as {grown}, expected {sorted(case.reasons)}"
    assert metric_errors(c, target) == {r: float(n) for r, n in after.items()}  # the same numbers in /metrics
    assert_serving_and_committing(c, target)


def test_a_silent_or_half_sent_connection_costs_nothing(cluster: LocalCluster) -> None:
    """A connection that sends half a frame and hangs up is closed quietly (not a frame error)."""
    c = cluster
    target = leader(c)
    before = stats_errors(c, target)
    with socket.create_connection(("127.0.0.1", c.nodes[target].raft_port), timeout=WAIT) as sock:
        assert recv_frame(sock) is not None
        sock.sendall(struct.pack(">I", 100) + b"only part of it")
    for _ in range(20):  # and many short-lived connections do not hurt either
        with socket.create_connection(("127.0.0.1", c.nodes[target].raft_port), timeout=WAIT):
            pass
    assert_serving_and_committing(c, target)
    assert stats_errors(c, target) == before


# ------------------------------------------------------------------ bad HTTP
def request(c: LocalCluster, nid: str, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", c.nodes[nid].http_port, timeout=WAIT)
    try:
        chunked = headers is not None and headers.get("Transfer-Encoding") == "chunked"
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        resp = conn.getresponse()
        raw = resp.read()
        assert resp.headers.get_content_type() == "application/json", (method, path, resp.status, raw[:200])
        return resp.status, json.loads(raw)
    finally:
        conn.close()


def _join_doc(**node: Any) -> dict[str, Any]:
    return {
        "node": {"id": "node-x", "raft_addr": "127.0.0.1:1", "api_addr": "127.0.0.1:2", **node},
        "config": {"cluster_name": CLUSTER, "partition_count": 16, "replication_factor": 3, "hash_algorithm": "md5"},
    }


def _chunked(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b" " * min(8192, total - sent)
        sent += len(chunk)
        yield chunk


BAD_HTTP: list[tuple[str, str, str, Any, int, str]] = [
    # (name, method, path, body, status, a word the error must contain)
    ("key-missing", "GET", "/partitions/key", None, 400, "key"),
    ("key-empty", "GET", "/partitions/key?key=", None, 400, "key"),
    ("key-overlong", "GET", "/partitions/key?key=" + "k" * 5000, None, 400, "longer"),
    ("register-key-overlong", "GET", "/registers/" + "k" * 5000, None, 400, "longer"),
    ("put-not-json", "PUT", "/registers/k", b"{not json", 400, "JSON"),
    ("put-not-utf8", "PUT", "/registers/k", b"\xff\xfe\x00", 400, "JSON"),
    ("put-array", "PUT", "/registers/k", b'["value"]', 400, "object"),
    ("put-number", "PUT", "/registers/k", b'{"value": 5}', 400, "string"),
    ("put-null", "PUT", "/registers/k", b'{"value": null}', 400, "string"),
    ("put-no-value", "PUT", "/registers/k", b'{}', 400, "string"),
    ("join-garbage", "POST", "/join", b"\x00garbage", 400, "JSON"),
    ("join-array", "POST", "/join", b"[1, 2]", 400, "object"),
    ("join-no-node", "POST", "/join", b"{}", 400, "node"),
    ("join-node-not-map", "POST", "/join", json.dumps({"node": "x", "config": {}}).encode(), 400, "node"),
    ("join-bad-config", "POST", "/join", json.dumps({**_join_doc(), "config": {"partition_count": "16"}}).encode(),
     400, "config"),
    ("join-no-raft-addr", "POST", "/join", json.dumps(_join_doc(raft_addr="")).encode(), 400, "raft_addr"),
    ("join-other-partition-count", "POST", "/join",
     json.dumps({**_join_doc(), "config": {**_join_doc()["config"], "partition_count": 32}}).encode(),
     409, "partition_count"),
    ("join-other-cluster", "POST", "/join",
     json.dumps({**_join_doc(), "config": {**_join_doc()["config"], "cluster_name": "other"}}).encode(),
     409, "cluster_name"),
    ("leave-bad-node-id", "POST", "/leave", b'{"node_id": 5}', 400, "node_id"),
    ("leave-unknown-node", "POST", "/leave", b'{"node_id": "nobody"}', 404, "nobody"),
    ("put-oversized", "PUT", "/registers/k", b'{"value": "' + b"v" * (70 << 10) + b'"}', 413, "Large"),
    ("join-oversized", "POST", "/join", b" " * (65 << 10), 413, "Large"),
    ("put-oversized-chunked", "PUT", "/registers/k", "chunked", 413, "Large"),
    ("unknown-route", "GET", "/no/such/route", None, 404, "Not Found"),
    ("unknown-route-post", "POST", "/registers", b"{}", 404, "Not Found"),
    ("wrong-method-health", "DELETE", "/health", None, 405, "Not Allowed"),
    ("wrong-method-nodes", "POST", "/nodes", b"{}", 405, "Not Allowed"),
    ("wrong-method-register", "POST", "/registers/k", b'{"value": "v"}', 405, "Not Allowed"),
    ("wrong-method-join", "GET", "/join", None, 405, "Not Allowed"),
]


@pytest.mark.parametrize("on_leader", [True, False], ids=["leader", "follower"])
def test_bad_http_requests_get_json_errors_and_the_node_keeps_serving(cluster: LocalCluster, on_leader: bool) -> None:
    c = cluster
    lead = leader(c)
    target = lead if on_leader else next(n for n in sorted(c.nodes) if n != lead)
    members = {n["id"] for n in c.get(lead, "/nodes")[1]["nodes"]}
    for name, method, path, body, status, word in BAD_HTTP:
        if body == "chunked":
            got, doc = request(c, target, method, path, body=_chunked(70 << 10),
                               headers={"Transfer-Encoding": "chunked"})
        else:
            got, doc = request(c, target, method, path, body=body)
        assert got == status, (name, got, doc)
        assert isinstance(doc.get("error"), str) and word in doc["error"], (name, doc)
        assert c.get(target, "/health")[0] == 200, name
    # Nothing bad was let in: no node-x in Raft or the cluster state, and writes still commit.
    assert {n["id"] for n in c.get(lead, "/nodes")[1]["nodes"]} == members
    raft = c.get(lead, "/consensus/stats")[1]
    assert "node-x" not in raft["voters"] + raft["learners"]
    assert_serving_and_committing(c, target)


# ------------------------------------------------------------------ /metrics
def test_metrics_parse_and_have_every_family(cluster: LocalCluster) -> None:
    c = cluster
    lead = leader(c)
    assert_serving_and_committing(c, lead)  # at least one write: fsyncs and messages to count
    status, text = raw_get(c, lead, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "clusterkit_up": "gauge",
        "clusterkit_raft_term": "gauge",
        "clusterkit_raft_commit_index": "gauge",
        "clusterkit_raft_applied_index": "gauge",
        "clusterkit_raft_is_leader": "gauge",
        "clusterkit_raft_elections_won": "counter",
        "clusterkit_raft_dropped_proposals": "counter",
        "clusterkit_peer_messages_sent": "counter",
        "clusterkit_peer_messages_received": "counter",
        "clusterkit_peer_bytes_sent": "counter",
        "clusterkit_peer_bytes_received": "counter",
        "clusterkit_peer_messages_dropped": "counter",
        "clusterkit_frame_errors": "counter",
        "clusterkit_fsync_seconds": "histogram",
        "clusterkit_cluster_epoch": "gauge",
        "clusterkit_partitions_owned": "gauge",
        "clusterkit_migrations_in_flight": "gauge",
        "clusterkit_hook_errors": "counter",
    }
    for name, kind in expected.items():
        assert name in families, f"/metrics has no {name}"
        assert families[name].type == kind, (name, families[name].type)

    def value(name: str, sample: str | None = None, **labels: str) -> float:
        for s in families[name].samples:
            if s.name == (sample or name) and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no sample {sample or name} {labels}")

    assert value("clusterkit_up") == 1 and value("clusterkit_raft_is_leader") == 1
    assert value("clusterkit_raft_term") >= 1
    assert 3 <= value("clusterkit_raft_applied_index") <= value("clusterkit_raft_commit_index")
    assert value("clusterkit_raft_elections_won", "clusterkit_raft_elections_won_total") >= 1
    followers = sorted(n for n in c.nodes if n != lead)
    for peer in followers:
        for name in ("clusterkit_peer_messages_sent", "clusterkit_peer_messages_received",
                     "clusterkit_peer_bytes_sent", "clusterkit_peer_bytes_received"):
            assert value(name, name + "_total", peer=peer) > 0, (name, peer)
    assert value("clusterkit_peer_bytes_sent", "clusterkit_peer_bytes_sent_total", peer=followers[0]) > \
        value("clusterkit_peer_messages_sent", "clusterkit_peer_messages_sent_total", peer=followers[0])
    # The fsync histogram: cumulative buckets ending in +Inf == count, a positive sum.
    buckets = [(s.labels["le"], s.value) for s in families["clusterkit_fsync_seconds"].samples
               if s.name == "clusterkit_fsync_seconds_bucket"]
    assert buckets[-1][0] == "+Inf" and [v for _, v in buckets] == sorted(v for _, v in buckets)
    count = value("clusterkit_fsync_seconds", "clusterkit_fsync_seconds_count")
    assert count > 0 and buckets[-1][1] == count
    assert value("clusterkit_fsync_seconds", "clusterkit_fsync_seconds_sum") > 0
    # Partitions: the three nodes' primaries add up to the partition count.
    for nid in c.nodes:
        fam = metrics(c, nid)
        roles = {s.labels["role"] for s in fam["clusterkit_partitions_owned"].samples}
        assert roles == {"primary", "replica"}
        assert next(s.value for s in fam["clusterkit_migrations_in_flight"].samples) >= 0
    c.wait(lambda: sum(next(s.value for s in metrics(c, n)["clusterkit_partitions_owned"].samples
                            if s.labels["role"] == "primary") for n in c.nodes) == c.partition_count,
           WAIT, "every partition to have one primary in the nodes' metrics")
    # The frame-error counter's samples all carry a reason label (those the tests above caused, if any).
    assert all("reason" in s.labels for s in families["clusterkit_frame_errors"].samples)
