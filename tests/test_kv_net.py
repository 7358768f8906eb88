"""The KV store on real nodes: its disk log, its HTTP routes (bad input included), the SDK, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clusterkit.kv.data import KVData
from clusterkit.kv.records import Record, Version
from clusterkit.net.client import BlockingKVClient, KVBadRequest, KVClient
from clusterkit.net.kv_disk import HEADER_BYTES, KVLog
from clusterkit.net.local import LocalCluster, http_json
from clusterkit.raft.errors import StorageError


def _put(p: int, key: str, n: int, value: str | None = "v") -> list:
    return ["put", p, key, Record(Version(n, "w"), value).to_wire()]


def test_log_replays_cuts_a_torn_tail_and_refuses_corruption(tmp_path: Path) -> None:
    log = KVLog(tmp_path)
    assert log.load() == []
    log.append([_put(1, "a", 1), _put(1, "b", 1)])
    log.append([_put(1, "a", 2, None), ["drop", 2]])
    log.close()
    log = KVLog(tmp_path)
    data = KVData.replay(log.load())
    assert data.get(1, "a").deleted and data.get(1, "b").value == "v"
    size = log.size
    log.close()
    with (tmp_path / "log").open("ab") as f:
        f.write(b"\x00torn")  # a sync that never returned
    log = KVLog(tmp_path)
    assert len(log.load()) == 4 and log.size == size and log.torn_bytes == 5
    log.append([_put(3, "c", 1)])
    log.close()
    raw = bytearray((tmp_path / "log").read_bytes())
    raw[HEADER_BYTES + 14] ^= 0xFF  # inside the first record, with valid ones after it
    (tmp_path / "log").write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="corrupt"):
        KVLog(tmp_path).load()


def test_log_rewrite_keeps_only_live_data(tmp_path: Path) -> None:
    log = KVLog(tmp_path, rewrite_bytes=1)
    log.load()
    data = KVData()
    for n in range(1, 200):
        data.put(0, "k", Record(Version(n, "w"), "x" * 50))
        log.append(data.take_unsynced())
    assert log.wants_rewrite()
    log.rewrite(data.compacted())
    assert log.size - HEADER_BYTES < 200
    log.rewrite_bytes = 0
    assert not log.wants_rewrite()  # the rewritten log is the new baseline
    for n in range(200, 210):
        data.put(0, "k", Record(Version(n, "w"), "x" * 50))
        log.append(data.take_unsynced())
    assert log.wants_rewrite()  # four times the baseline
    log.close()
    log = KVLog(tmp_path)
    assert KVData.replay(log.load()).get(0, "k").version.counter == 209
    with pytest.raises(StorageError, match="already open"):
        KVLog(tmp_path)
    log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("kvnet")
    # (tombstones collected every second, not every 30 s: test_deletes_are_collected waits for it)
    with LocalCluster(root, size=3, extra_args=["--log-level", "WARNING", "--kv-gc-seconds", "1"], kv=True) as c:
        c.start_all()

        c.wait(c.kv_settled, 30, "the KV store on every node")
        yield c


def test_routes_and_bad_input(cluster: LocalCluster) -> None:
    url = cluster.nodes["node-2"].url
    assert http_json(url + "/kv/set", "POST", {"key": "user:123", "value": "John"})[0] == 200
    status, doc = http_json(url + "/kv/get?key=user:123")
    assert status == 200 and doc["value"] == "John" and doc["version"][0] >= 1
    assert http_json(url + "/kv/get?key=nobody")[0] == 404
    for body, why in [({"key": "", "value": "x"}, "key"), ({"key": "k"}, "value"), ({"key": "k", "value": 5}, "string"),
                      ({"key": "k" * 2000, "value": "x"}, "longer"), ([1, 2], "object"),
                      ({"key": "k", "value": "x", "quorum": 9}, "quorum"),
                      # a lone surrogate (valid JSON, not encodable): refused, and the store keeps answering
                      ({"key": "k", "value": "\ud800"}, "UTF-8"), ({"key": "\ud800", "value": "x"}, "UTF-8")]:
        status, doc = http_json(url + "/kv/set", "POST", body)
        assert status == 400 and why in doc["error"], (body, doc)
    status, doc = http_json(url + "/kv/set", "POST", {"key": "k", "value": "x" * (70 << 10)})
    assert status in (400, 413) and "error" in doc
    assert http_json(url + "/kv/get")[0] == 400
    status, doc = http_json(url + "/kv/migrate?partition=nope")
    assert status == 400 and doc["error"] == "no partition 'nope'", doc
    for raw in ("%ff", "%ED%A0%80"):  # not UTF-8: refused, not folded into one U+FFFD key
        status, doc = http_json(url + f"/kv/get?key={raw}")
        assert status == 400 and "UTF-8" in doc["error"], doc
        assert http_json(url + f"/kv/delete?key={raw}", "POST")[0] == 400
    assert http_json(url + "/kv/get?key=caf%C3%A9")[0] == 404  # valid UTF-8: an ordinary (unset) key
    status, doc = http_json(url + "/kv/migrate?partition=0")
    assert status == 200 and doc["partition"] == "partition-0"
    assert http_json(url + "/kv/delete?key=user:123", "POST")[0] == 200
    assert http_json(url + "/kv/get?key=user:123")[0] == 404
    assert http_json(url + "/health")[0] == 200  # still running


def test_sdk_smart_and_simple_and_a_restart_keeps_the_data(cluster: LocalCluster) -> None:
    seeds = [cluster.nodes["node-1"].http]

    async def smart() -> None:
        async with KVClient(seeds) as kv:
            await asyncio.gather(*(kv.set(f"k{i}", f"v{i}") for i in range(200)))
            assert await kv.get("k7") == "v7"
            await kv.set("k7", "w", quorum=3)
            assert await kv.get("k7") == "w"
            with pytest.raises(KVBadRequest):
                await kv.set("", "x")
            await kv.delete("k8")
            assert await kv.get("k8") is None

    asyncio.run(smart())
    with BlockingKVClient(seeds, smart=False) as kv:
        assert kv.get("k9") == "v9"
        kv.set("k9", "simple")
    cluster.kill("node-2")
    cluster.start("node-2")
    with BlockingKVClient(seeds) as kv:
        assert kv.get("k9") == "simple"

    def holds() -> bool:
        total = 0
        for p in range(16):
            status, doc = cluster.get("node-2", f"/kv/migrate?partition={p}")
            if status != 200:
                return False
            total += doc["keys"]
        return total >= 199  # RF 3 on 3 nodes: node-2 holds every key, replayed from its log

    cluster.wait(holds, 20, "node-2 to serve its replayed data")


def test_deletes_are_collected_on_every_node_and_the_key_can_be_written_again(cluster: LocalCluster) -> None:
    url = cluster.nodes["node-3"].url

    def collected() -> list[int]:
        return [http_json(cluster.nodes[n].url + "/kv/stats")[1].get("collected", 0) for n in sorted(cluster.nodes)]

    before = collected()
    keys = [f"gc-{i}" for i in range(20)]
    for key in keys:
        assert http_json(url + "/kv/set", "POST", {"key": key, "value": "x"})[0] == 200
        assert http_json(url + f"/kv/delete?key={key}", "POST")[0] == 200
    # RF 3 on 3 nodes: every node holds every tombstone, and each collects all 20 (two rounds: seen, then gone)
    cluster.wait(lambda: all(a - b >= len(keys) for a, b in zip(collected(), before)), 20,
                 "every node to collect the tombstones")
    for key in keys[:5]:
        assert http_json(url + f"/kv/get?key={key}")[0] == 404
        assert http_json(url + "/kv/set", "POST", {"key": key, "value": "again"})[0] == 200
        status, doc = http_json(cluster.nodes["node-1"].url + f"/kv/get?key={key}")
        assert status == 200 and doc["value"] == "again"
