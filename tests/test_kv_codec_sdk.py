"""The KV store's fast paths give the same results as the plain ones: the generated codec, the
data's merge, a log rewrite streamed from a snapshot, and the SDK's waits (one sweeper, no timer
per wait) and frames."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import random
from pathlib import Path

import msgpack
import pytest

from clusterkit.kv import messages as m
from clusterkit.kv.data import BUCKETS, KVData, bucket_of, snapshot_entries
from clusterkit.kv.messages import Ack, Found, ProtocolError, Query, Store
from clusterkit.kv.records import Record, Version, newer
from clusterkit.kv.server import KVServer, ServerConfig
from clusterkit.kv.quorum import Placement, Quorums
from clusterkit.net import kv_disk
from clusterkit.net.client import conn as kv_conn
from clusterkit.net.client import kv as kv_client
from clusterkit.net.frames import HEADER
from clusterkit.net.kv_service import KV_MAX_FRAME
from clusterkit.net.kv_disk import KVLog

from .test_kv_core import _kits

_VALUES = [None, 0, 1, -1, True, False, "s", b"b", 2**64 - 1, 1.5, [], [1, "w", "v"], [1, "w", None], [-1, "w", "v"],
           [1, 2, "v"], [1, "w", 3], [1, "w"], [["k", [1, "w", "v"]]], [["k", [1, "w"]]], [[1, "w", "v"]], [1, 2],
           [1, "x"], {"a": 1}]


_VALID = {"int": [0, 7, 2**63], "str": ["", "k"], "bool": [True, False], "str | bytes": ["v", b"\x00"],
          "Record": [[0, "", None], [3, "w", "v"], [1, "w", b"b"]], "list[int]": [[], [0, 2**64 - 1]],
          "list[tuple[str, Record]]": [[], [["k", [1, "w", "v"]], ["j", [2, "w", None]]]]}


def _field(rng: random.Random, kind: str) -> object:
    if rng.random() < 0.15:
        return rng.choice(_VALUES)
    if kind.endswith(" | None") and rng.random() < 0.3:
        return None
    return rng.choice(_VALID[kind.removesuffix(" | None")])


def test_the_generated_decoders_agree_with_the_generic_path_on_any_document() -> None:
    rng = random.Random(7)
    accepted = 0
    for tag, spec in m._SPECS.items():
        kinds = [f.type for f in m.fields(spec.cls)]
        for _ in range(2000):
            n = rng.randint(max(0, spec.required - 1), len(spec.names) + 1)
            doc = [tag] + [_field(rng, kinds[i]) if i < len(kinds) else rng.choice(_VALUES) for i in range(n)]
            try:
                fast: tuple[str, object] = ("ok", m.from_doc(list(doc)))
            except ProtocolError as exc:
                fast = ("refused", str(exc))
            try:
                slow: tuple[str, object] = ("ok", m._from_doc_slow(list(doc)))
            except ProtocolError as exc:
                slow = ("refused", str(exc))
            assert fast == slow, doc
            if fast[0] == "ok":
                accepted += 1
                assert m.from_doc(m.to_doc(fast[1])) == fast[1]  # what is accepted round-trips
    assert accepted > 5000  # the sample reaches well-formed messages of every kind, not only errors
    for bad in ([2, 1, 2, 3, "k", [1, "w", 5]], [14, 1, [1, "w", "v"], 3], [4, 1, 2, [["k", [1, "w"]]]], [0, [99, 1]], [99, 1]):
        with pytest.raises(ProtocolError):
            m.from_frame(bad)
    # a batch of messages is a batch of their documents, whichever way it is encoded
    msgs = [Query(1, 2, 3, "k"), Store(2, 2, 3, "k", Record(Version(4, "w"), b"\x00")), Ack(3), Found(4, None)]
    assert m.from_frame(msgpack.unpackb(m.encode_batch(msgs))) == msgs


def test_the_merge_keeps_the_newer_version_and_the_same_digests_as_a_replay() -> None:
    rng = random.Random(3)
    data, model = KVData(), {}
    for _ in range(3000):
        p, key = rng.randrange(3), f"k{rng.randrange(40)}"
        record = Record(Version(rng.randrange(6), rng.choice("abc")), rng.choice(["v", None, b"x"]))
        changed = data.put(p, key, record)
        winner = newer(model.get((p, key)), record)
        assert changed == (winner is not model.get((p, key))) and data.get(p, key) == winner
        model[(p, key)] = winner
        if rng.random() < 0.01:
            data.drop(p)
            model = {k: v for k, v in model.items() if k[0] != p}
    again = KVData.replay(data.take_unsynced())
    assert again.parts == data.parts
    assert all(again.sums(p) == data.sums(p) for p in range(3))
    for p in range(3):  # the digests kept up to date match digests computed afresh
        expected = [0] * BUCKETS
        for key, record in data.parts.get(p, {}).items():
            text = f"{key}\0{record.version.counter}\0{record.version.writer}".encode()
            expected[bucket_of(key)] ^= int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
        assert data.sums(p) == expected


def test_a_rewrite_streams_the_snapshot_into_records_that_replay_to_the_same_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kv_disk, "REWRITE_RECORD_ENTRIES", 3)
    data = KVData()
    for i in range(10):
        data.put(i % 2, f"k{i}", Record(Version(i + 1, "w"), "v" * i if i % 3 else None))
    log = KVLog(tmp_path)
    log.load()
    snapshot = data.snapshot()
    data.put(0, "later", Record(Version(1, "w"), "x"))  # the snapshot doesn't see later changes
    assert log.rewrite(snapshot_entries(snapshot)) == 10 and log.records == 4
    log.close()
    again = KVData.replay(KVLog(tmp_path).load())
    assert again.get(0, "later") is None
    del data.parts[0]["later"]
    assert again.parts == data.parts
    empty = KVLog(tmp_path / "empty")
    empty.load()
    assert empty.rewrite(iter(())) == 0 and empty.records == 0


# ------------------------------------------------------------ the SDK, over an in-memory network
class _MemConn:
    """Stands in for the SDK's connection to one node: documents go through msgpack to an
    in-process KVServer, and its answers come back the same way (unless the node is silent)."""

    def __init__(self, net: _MemNet, node: str) -> None:
        self.net, self.node_id, self.buffer, self.closed, self._scheduled = net, node, [], False, False

    def send(self, doc: list) -> None:
        self.buffer.append(doc)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        docs, self.buffer = self.buffer, []
        if self.node_id not in self.net.silent:
            asyncio.get_running_loop().call_soon(self.net.deliver, self.node_id, kv_conn.pack_frames(docs))


class _MemNet:
    def __init__(self, strategy: str) -> None:
        kits = _kits().kits
        self.servers = {n: KVServer(k, config=ServerConfig(strategy=strategy)) for n, k in kits.items()}
        self.kit = kits["node-1"]
        self.silent: set[str] = set()
        self.client: kv_client.KVClient | None = None

    def deliver(self, node: str, data: bytes) -> None:
        server, pos = self.servers[node], 0
        while pos < len(data):
            (n,) = HEADER.unpack_from(data, pos)
            for msg in m.from_frame(msgpack.unpackb(data[pos + 4:pos + 4 + n])):
                server.handle("client:1", msg)
            pos += 4 + n
        server.data.take_unsynced()
        out = server.take_outbox()
        for dst, msg in out:
            if dst == "client:1":
                answer = msgpack.unpackb(m.encode(msg))
                asyncio.get_running_loop().call_soon(self.client._on_message, node, m.from_doc(answer))
            else:  # node to node (forwarded requests, replication)
                asyncio.get_running_loop().call_soon(self._peer, node, dst, msg)

    def _peer(self, src: str, dst: str, msg: m.Message) -> None:
        if dst == "client:1":  # a forwarded request's answer, relayed by the node that took it
            self.client._on_message(src, m.from_doc(msgpack.unpackb(m.encode(msg))))
            return
        if dst in self.silent:
            return
        server = self.servers[dst]
        server.handle(src, m.from_doc(msgpack.unpackb(m.encode(msg))))
        server.data.take_unsynced()
        for to, answer in server.take_outbox():
            asyncio.get_running_loop().call_soon(self._peer, dst, to, answer)

    def sdk(self, strategy: str, timeout: float = 5.0) -> kv_client.KVClient:
        client = kv_client.KVClient(["unused:1"], strategy=strategy, timeout=timeout, retry=0.05)
        state = self.kit.state
        placements = {p: Placement.of(self.kit.partition(p)) for p in range(state.config.partition_count)}
        client.topo = kv_client.Topology(state.epoch, "e", {}, placements, state.config.hash_config, 3)
        client.quorums = Quorums(3)
        conns: dict[str, _MemConn] = {}
        client._conn = lambda node: conns.setdefault(node, _MemConn(self, node))  # type: ignore[method-assign]
        self.client = client
        return client


async def _closing(client: kv_client.KVClient, coro):
    try:
        return await coro
    finally:
        await client.close()


def test_the_sdk_runs_sync_operations_and_retries_and_times_out_with_one_sweeper() -> None:
    net = _MemNet("sync")
    client = net.sdk("sync", timeout=0.5)

    async def run() -> None:
        written = await asyncio.gather(*(client.set(f"k{i}", f"v{i}") for i in range(50)))
        assert [r.value for r in written] == [f"v{i}" for i in range(50)]
        assert await client.get("k7") == "v7" and await client.get("never") is None
        net.silent = {"node-3"}  # one copy silent: W = 2 of 3 still answer
        assert (await client.set("k7", "again")).value == "again"
        net.silent = {"node-2", "node-3"}  # a quorum silent: retried until the timeout
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(kv_client.KVFailed):
            await client.set("k8", "lost")
        assert loop.time() - t0 >= 0.45  # it retried until its deadline, not less (speed is for bench/)
        assert client._sleepers == {} and client._handlers == {}  # nothing left behind
        net.silent = set()
        assert await client.get("k7") == "again"

    asyncio.run(_closing(client, run()))


def test_the_sdk_ends_a_request_nobody_answers_at_its_deadline() -> None:
    net = _MemNet("async")
    client = net.sdk("async", timeout=0.3)

    async def run() -> None:
        assert (await client.set("a", "1")).value == "1" and await client.get("a") == "1"
        net.silent = set(net.servers)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(kv_client.KVUnknown):  # a write that may have happened
            await client.set("a", "2")
        with pytest.raises(kv_client.KVFailed):  # a read that didn't
            await client.get("a")
        assert loop.time() - t0 >= 0.5  # each waited out its deadline
        assert client._sleepers == {} and client._handlers == {} and client._lost == {}

    asyncio.run(_closing(client, run()))


def test_the_sdk_splits_a_batch_too_large_for_one_frame() -> None:
    small = [m.to_doc(Query(i, 1, 2, "k")) for i in range(3)]
    one = kv_conn.pack_frames(small)
    (n,) = HEADER.unpack_from(one, 0)
    assert len(one) == 4 + n and m.from_frame(msgpack.unpackb(one[4:])) == [Query(i, 1, 2, "k") for i in range(3)]
    big = [m.to_doc(Store(i, 1, 2, "k", Record(Version(1, "w"), b"x" * (1 << 20)))) for i in range(20)]
    data, frames, pos = kv_conn.pack_frames(big), 0, 0
    while pos < len(data):
        (n,) = HEADER.unpack_from(data, pos)
        assert n <= KV_MAX_FRAME
        pos, frames = pos + 4 + n, frames + 1
    assert frames == 20  # 20 MiB in one frame would pass the 16 MiB a batch may take: one frame each


def test_the_sdk_leaves_no_cyclic_garbage_per_operation() -> None:
    """Every operation's objects are freed by reference counting: none is left for the cyclic
    collector (the closures of a SYNC operation referred to each other: 8.7 µs per write of the
    client's CPU went to collecting them)."""
    for strategy in ("sync", "async", "server-side"):
        net = _MemNet(strategy)
        client = net.sdk(strategy)

        async def run() -> tuple[int, int]:
            for i in range(50):
                await client.set(f"k{i}", "v")
            gc.collect()
            was = gc.isenabled()
            gc.disable()
            try:
                for i in range(300):
                    await client.set(f"k{i % 50}", "w")
                    await client.get(f"k{i % 50}")
                return gc.collect(), len(client._handlers)
            finally:
                if was:
                    gc.enable()

        garbage, handlers = asyncio.run(_closing(client, run()))
        assert (garbage, handlers) == (0, 0), strategy


def test_the_sdk_remembers_partitions_of_keys_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kv_client, "NUMBER_CACHE", 8)
    client = _MemNet("sync").sdk("sync")
    hash_config = client.topo.hash
    for i in range(20):
        key = f"key-{i}"
        assert client.placement(key) is client.topo.placements[hash_config.number(key)]
        assert client.placement(key).number == hash_config.number(key)  # (again: from the cache)
        assert len(client._numbers) <= 8
