"""The msgpack codec: round trips, and clear errors for every kind of bad frame."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterkit.raft import (
    AppendEntries,
    AppendResponse,
    CodecError,
    CommitNotice,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode,
    encode,
)
from clusterkit.raft.codec import to_wire
from clusterkit.raft.messages import MAX_NUMBER
from clusterkit.raft import ConfState
from clusterkit.raft.confchange import ConfChange, ConfChangeType, decode_entry, encode_entry

ids = st.text(min_size=1, max_size=8)
nat = st.integers(min_value=0, max_value=MAX_NUMBER - 1)
conf_data = st.builds(
    lambda op, node, voters: encode_entry(ConfChange(ConfChangeType(op), node), ConfState(tuple(sorted(voters)))),
    st.integers(0, 2),
    ids,
    st.lists(ids, min_size=1, max_size=5, unique=True),
)
entries = st.lists(
    st.one_of(
        st.builds(Entry, nat, nat, st.binary(max_size=64), st.integers(0, 1)),
        st.builds(Entry, nat, nat, conf_data, st.just(2)),
    ),
    max_size=5,
)
names = st.lists(ids, max_size=4)

messages = st.one_of(
    st.builds(AppendEntries, nat, ids, ids, nat, nat, nat, entries),
    st.builds(AppendResponse, nat, ids, ids, nat, st.booleans(), nat, nat),
    st.builds(RequestVote, nat, ids, ids, nat, nat, st.booleans(), st.booleans()),
    st.builds(VoteResponse, nat, ids, ids, st.booleans(), st.booleans()),
    st.builds(Heartbeat, nat, ids, ids, nat, nat),
    st.builds(HeartbeatResponse, nat, ids, ids, nat),
    st.builds(Propose, nat, ids, ids, entries),
    st.builds(InstallSnapshot, nat, ids, ids, nat, nat, names, names, nat, nat, st.binary(max_size=64)),
    st.builds(SnapshotResponse, nat, ids, ids, nat, nat, st.booleans()),
    st.builds(TimeoutNow, nat, ids, ids),
    st.builds(ReadIndex, nat, ids, ids, st.binary(max_size=16)),
    st.builds(ReadIndexResponse, nat, ids, ids, nat, st.binary(max_size=16)),
    st.builds(CommitNotice, nat, ids, ids, nat),
)


@settings(max_examples=300, derandomize=True, database=None)
@given(messages)
def test_round_trip(msg):
    assert decode(encode(msg)) == msg


def test_entries_round_trip_exactly():
    m = AppendEntries(3, "a", "b", 4, 2, 1, [Entry(3, 5, b"\x00\xff", 0), Entry(3, 6, b"", 1)])
    out = decode(encode(m))
    assert out == m and out.entries[1].type == 1


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ([99, 1, "a", "b"], "unknown message type tag 99"),
        (["AppendEntries"], "unknown message type tag"),
        ([], "non-empty array"),
        ({"tag": 1}, "non-empty array"),
        ([4, 1, "a", "b"], "VoteResponse: expected 5 fields, got 3"),
        ([4, 1, "a", "b", "no", False], "VoteResponse.reject: expected bool"),
        ([4, -1, "a", "b", True, False], "VoteResponse.term: -1 is out of range"),
        ([4, True, "a", "b", True, False], "VoteResponse.term: expected int"),
        ([4, 1, 7, "b", True, False], "VoteResponse.src: expected str"),
        ([5, 1, "a", "b", 0, b"ctx"], "Heartbeat.round: expected int"),
        ([1, 1, "a", "b", 0, 0, 0, "x"], "entries must be an array"),
        ([1, 1, "a", "b", 0, 0, 0, [[1, 1, b""]]], "entry 0 must be"),
        ([1, 1, "a", "b", 0, 0, 0, [[1, 1, "str", 0]]], "entry 0 has a field of the wrong type"),
        ([1, 1, "a", "b", 0, 0, 0, [[1, 1, b"", 9]]], "unknown entry type 9"),
        ([1, 1, "a", "b", 0, 0, 0, [[1, 1, b"junk", 2]]], "entry 0: malformed membership change"),
        ([1, 1, "a", "b", 0, 0, 0, [[1, 1, msgpack.packb([0, "n", b"", [], []]), 2]]], "no voters"),
        ([1, 1, "a", "b", 0, 0, 0, [[1, 1, msgpack.packb([7, "n", b"", ["n"], []]), 2]]], "unknown membership"),
        ([8, 1, "a", "b", 5, 1, ["a", 3], [], 0, 0, b""], "InstallSnapshot.voters: expected list\\[str\\]"),
        ([10, 1, "a"], "TimeoutNow: expected 3 fields, got 2"),
        ([11, 1, "a", "b", "ctx"], "ReadIndex.context: expected bytes"),
    ],
)
def test_bad_frames_raise_codec_error(raw, fragment):
    with pytest.raises(CodecError, match=fragment):
        decode(msgpack.packb(raw, use_bin_type=True))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x92\x01", msgpack.packb([4, 1, "a", "b", True, False]) + b"\x00"])
def test_malformed_msgpack_raises_codec_error(data):
    with pytest.raises(CodecError):
        decode(data)


def test_encoding_a_non_message_is_refused():
    with pytest.raises(CodecError, match="not a Raft message"):
        encode("hello")  # type: ignore[arg-type]


def test_wire_form_is_a_positional_array():
    assert to_wire(VoteResponse(2, "a", "b", True, False)) == [4, 2, "a", "b", True, False]


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_decoder(data):
    try:
        decode(data)
    except CodecError:
        pass


def test_conf_change_entry_round_trip():
    cc = ConfChange(ConfChangeType.ADD_LEARNER, "n4", b"127.0.0.1:9004")
    data = encode_entry(cc, ConfState(("n1", "n2", "n3"), ("n4",)))
    assert decode_entry(data) == (cc, ConfState(("n1", "n2", "n3"), ("n4",)))


@pytest.mark.parametrize("value", [MAX_NUMBER, 2**63 - 1, 2**64 - 1])
def test_numbers_no_node_could_advance_past_are_refused(value: int) -> None:
    """Issue 20, item 1: one AppendResponse with term 2**64 - 1 made every node adopt a term it
    could never campaign past (term + 1 does not encode). The codec refuses every number at or
    above MAX_NUMBER, in every message field and every entry."""
    frame = msgpack.packb([2, value, "a", "b", 1, False, 0, 0], use_bin_type=True)  # AppendResponse.term
    with pytest.raises(CodecError, match="out of range"):
        decode(frame)
    entry = msgpack.packb([1, 1, "a", "b", 0, 0, 0, [[value, 1, b"", 0]]], use_bin_type=True)
    with pytest.raises(CodecError):
        decode(entry)
    ok = msgpack.packb([2, MAX_NUMBER - 1, "a", "b", 1, False, 0, 0], use_bin_type=True)
    assert decode(ok).term == MAX_NUMBER - 1


def test_a_node_never_adopts_a_term_it_could_not_advance() -> None:
    """Past the codec (an in-memory driver, a bug elsewhere): a Raft node drops a message whose
    term it could not campaign past, counts it, and the cluster goes on committing."""
    from clusterkit.mem.network import MemNetwork
    from clusterkit.raft.messages import AppendResponse

    net = MemNetwork(["n1", "n2", "n3"], seed=1)
    lead = net.elect()
    term = net.nodes[lead].raft.term
    for nid in net.ids:
        net.nodes[nid].step(AppendResponse(2**64 - 1, "intruder", nid, 1))
        net.nodes[nid].step(AppendResponse(MAX_NUMBER - 1, "intruder", nid, 1))
        assert net.nodes[nid].raft.term == term
        assert net.nodes[nid].raft.refused_terms == 2
    index = net.propose(lead, b"after")
    assert net.run_until(lambda: all(net.nodes[n].raft.log.committed >= index for n in net.ids), 50)
