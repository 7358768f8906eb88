"""The KV store's fast paths give the same results as the plain ones: the generated codec, the
data's merge, and a log rewrite streamed from a snapshot."""

from __future__ import annotations

import random
from pathlib import Path

import msgpack
import pytest

from clusterkit.kv import messages as m
from clusterkit.kv.data import KVData, snapshot_entries
from clusterkit.kv.messages import Ack, Found, ProtocolError, Query, Store
from clusterkit.kv.records import Record, Version, newer
from clusterkit.net import kv_disk
from clusterkit.net.kv_disk import KVLog

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
