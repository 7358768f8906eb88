"""Issue 20, item 1: well-formed frames with extreme field values, at a live cluster's Raft and KV ports.

Before the fix one AppendResponse with term 2**64-1, from a stranger that completed the hello (no
cluster secret: a node hears loopback peers), made every node adopt a term it could never advance
past, and the cluster never elected a leader again. Here a seeded few hundred such frames (terms,
indexes and commits at 2**64-1, 2**63, 2**62, -1; huge lists and strings, deep nesting, wrong
types, unknown tags; as a stranger and under a member's id) go to the leader and to a follower,
and as many KV frames (client and peer) to the KV ports. Then: every node is alive, every term is
below 2**62, the cluster commits a register write and reads it back, a new leader is elected
after the leader is stopped, and no node logged a traceback.

The cases come from bench/fuzz_frames.py (loaded by path, as the other bench modules are), which
bench/soak.py sends by the tens of thousands.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterkit.net.local import LocalCluster, http_json

REPO = Path(__file__).resolve().parents[1]
WAIT = 30.0  # every wait below is bounded by this many seconds
MAX_NUMBER = 1 << 62


def _load_fuzz() -> Any:
    if "bench_fuzz_frames" in sys.modules:
        return sys.modules["bench_fuzz_frames"]
    spec = importlib.util.spec_from_file_location("bench_fuzz_frames", REPO / "bench" / "fuzz_frames.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fuzz_frames"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", size=3, kv=True) as c:
        c.start_all()
        yield c


def _leader(c: LocalCluster) -> str:
    c.wait(lambda: c.leader() is not None, WAIT, "a leader every node agrees on")
    lead = c.leader()
    assert lead is not None
    return lead


def _terms(c: LocalCluster) -> dict[str, int]:
    out = {}
    for nid, node in c.nodes.items():
        if node.alive:
            status, doc = c.get(nid, "/consensus/stats")
            assert status == 200, (nid, status)
            out[nid] = doc["term"]
    return out


def _commits_and_reads_back(c: LocalCluster, value: str, timeout: float = WAIT) -> None:
    def written() -> bool:
        lead = c.leader()
        if lead is None:
            return False
        status, _ = http_json(c.nodes[lead].url + "/registers/k", "PUT", {"value": value}, timeout=5.0)
        return status == 200

    c.wait(written, timeout, f"the cluster to commit register k = {value!r}")
    for nid, node in c.nodes.items():
        if node.alive:
            c.wait(lambda nid=nid: (http_json(c.nodes[nid].url + "/registers/k", timeout=5.0)[1] or {}).get("value")
                   == value, WAIT, f"{nid} to read k = {value!r}")


def _tracebacks(c: LocalCluster) -> dict[str, int]:
    return {nid: c.logs(nid).count("Traceback") for nid in c.nodes}


def _send_all(c: LocalCluster, cases: list[Any]) -> None:
    hung = []
    for target, case in cases:
        node = c.nodes[target]
        port = node.raft_port if case.port == "raft" else node.kv_port
        if fuzz.send_case(port, case) != "closed":
            hung.append(case.name)
    assert not hung, f"the node kept {len(hung)} connections open past the timeout: {hung[:3]}"


def test_the_item_1_frame_does_not_halt_the_cluster(cluster: LocalCluster) -> None:
    """The issue's reproduction, exactly: one AppendResponse with term 2**64-1 under a member's id."""
    c = cluster
    lead = _leader(c)
    other = next(n for n in c.nodes if n != lead)
    frame = fuzz.pack([fuzz.HELLO, fuzz.PROTOCOL_VERSION, c.cluster_name, other, "", b"n" * 16]) + fuzz.pack(
        [fuzz.RAFT, [2, 2**64 - 1, other, lead, 1, False, 0, 0]])
    assert fuzz.send_case(c.nodes[lead].raft_port, fuzz.Case("raft", "item-1", frame)) == "closed"
    assert all(t < MAX_NUMBER for t in _terms(c).values())
    _commits_and_reads_back(c, "after-item-1")
    c.kill(lead)  # and the cluster can still elect: the term space is not used up
    c.wait(lambda: c.leader() not in (None, lead), WAIT, "a new leader")
    _commits_and_reads_back(c, "after-a-new-election")
    assert _tracebacks(c) == {n: 0 for n in c.nodes}


def test_extreme_frames_at_the_raft_and_kv_ports_leave_the_cluster_committing(cluster: LocalCluster) -> None:
    c = cluster
    lead = _leader(c)
    follower = next(n for n in sorted(c.nodes) if n != lead)
    members = sorted(c.nodes)
    cases: list[tuple[str, Any]] = []
    for i, target in enumerate([lead, follower]):
        cases += [(target, case) for case in fuzz.raft_cases(100 + i, 150, target, members, c.cluster_name)]
        cases += [(target, case) for case in fuzz.kv_cases(200 + i, 100, members, c.cluster_name, target=target)]
    _send_all(c, cases)
    dead = {nid: n.process.poll() for nid, n in c.nodes.items() if not n.alive}
    assert not dead, f"nodes exited: {dead}; logs in {c.root}"
    terms = _terms(c)
    assert all(t < MAX_NUMBER for t in terms.values()), terms
    _commits_and_reads_back(c, "after-the-fuzz")
    lead = _leader(c)
    c.kill(lead)
    c.wait(lambda: c.leader() not in (None, lead), WAIT, "a new leader after the fuzz")
    _commits_and_reads_back(c, "after-a-new-election")
    assert _tracebacks(c) == {n: 0 for n in c.nodes}, f"tracebacks in the node logs; logs in {c.root}"


def test_a_term_just_below_the_bound_does_not_stop_elections(cluster: LocalCluster) -> None:
    c = cluster
    lead = _leader(c)
    other = next(n for n in c.nodes if n != lead)
    frame = fuzz.pack([fuzz.HELLO, fuzz.PROTOCOL_VERSION, c.cluster_name, other, "", b"n" * 16]) + fuzz.pack(
        [fuzz.RAFT, [2, MAX_NUMBER - 2, other, lead, 1, False, 0, 0]])
    assert fuzz.send_case(c.nodes[lead].raft_port, fuzz.Case("raft", "near-max", frame)) == "closed"
    _commits_and_reads_back(c, "after-a-near-max-term", timeout=10.0)


def test_a_kv_version_at_the_msgpack_limit_does_not_stop_a_node(tmp_path: Path) -> None:
    import asyncio
    import os

    from clusterkit.net.client import KVClient

    with LocalCluster(tmp_path / "cluster", size=3, kv=True) as c:
        c.start_all()

        async def poison() -> Any:
            async with KVClient([n.http for n in c.nodes.values()]) as kv:
                await kv.set("victim", "before")
                return kv.placement("victim")

        placement = asyncio.run(poison())
        for target in placement.serving:
            sender = next(n for n in c.nodes if n != target)
            hello = fuzz.pack([fuzz.HELLO, fuzz.PROTOCOL_VERSION, c.cluster_name, sender, "", os.urandom(16)])
            store = [2, 1, placement.number, placement.epoch, "victim", [2**64 - 1, "evil", "x"], 0, False]
            assert fuzz.send_case(c.nodes[target].kv_port, fuzz.Case("kv", "poison", hello + fuzz.pack(store))) \
                == "closed"
        primary = c.nodes[placement.primary]
        status, doc = http_json(primary.url + "/kv/set", "POST", {"key": "victim", "value": "after"}, timeout=10.0)
        assert primary.alive, f"{placement.primary} exited with code {primary.process.poll()}"
        assert status in (200, 400), (status, doc)  # refused or written, but the node stays up
