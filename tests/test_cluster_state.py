"""The cluster-state FSM: commands, refusals, epochs, snapshots, migration safety."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterkit.check.partition_invariants import assert_partition_map
from clusterkit.facade import ClusterKit, Options
from clusterkit.cluster_state import (
    ClusterConfig,
    ClusterState,
    CommandError,
    NodeInfo,
    PartitionChange,
    bootstrap_command,
    confirm_command,
    encode_command,
    fail_command,
    join_command,
    leave_command,
    rebalance_command,
)

CFG = ClusterConfig(partition_count=16, replication_factor=2)


def _node(i: int, zone: str | None = None) -> NodeInfo:
    return NodeInfo(f"node-{i}", f"Server-{i}", f"127.0.0.1:{9000 + i}", f"127.0.0.1:{8079 + i}", zone)


def _cluster(n: int, cfg: ClusterConfig = CFG) -> ClusterState:
    s = ClusterState()
    assert s.apply(bootstrap_command(cfg, _node(1))).ok
    for i in range(2, n + 1):
        assert s.apply(join_command(cfg, _node(i))).ok
        _confirm_all(s)
    return s


def _confirm_all(s: ClusterState) -> None:
    for p in range(len(s.owners)):
        for o in s.incoming(p):
            assert s.apply(confirm_command(p, o)).ok


def test_join_with_a_conflicting_config_is_refused_clearly() -> None:
    s = _cluster(2)
    before = s.snapshot()
    res = s.apply(join_command(ClusterConfig(partition_count=32, replication_factor=2), _node(3)))
    assert not res.ok and "partition_count 32 != cluster's 16" in res.error
    res = s.apply(join_command(ClusterConfig(cluster_name="other", partition_count=16, replication_factor=2), _node(3)))
    assert not res.ok and "cluster_name" in res.error
    assert s.snapshot() == before  # nothing changed


def test_node_id_reuse_and_repeats() -> None:
    s = _cluster(2)
    epoch = s.epoch
    assert s.apply(join_command(CFG, _node(2))).ok and s.epoch == epoch  # a retried join: no change
    impostor = NodeInfo("node-2", api_addr="10.9.9.9:1")
    res = s.apply(join_command(CFG, impostor))
    assert not res.ok and "already in use" in res.error


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "undecodable"),
        (msgpack.packb([1, 2]), "must be a map"),
        (encode_command("explode"), "unknown command 'explode'"),
        (encode_command("leave", node_id=7), "'node_id' must be a string"),
        (encode_command("leave", node_id="node-9"), "unknown node 'node-9'"),
        (encode_command("confirm", partition=99, node_id="node-1"), "no partition 99"),
        (encode_command("join", node={"id": ""}, config=CFG.to_wire()), "must not be empty"),
        (encode_command("join", node=_node(3).to_wire(), config={"partition_count": "x"}), "bad config"),
    ],
)
def test_bad_commands_are_refused_and_change_nothing(data, message) -> None:
    s = _cluster(2)
    before = s.snapshot()
    res = s.apply(data)
    assert not res.ok and message in res.error
    assert s.snapshot() == before


def test_commands_before_bootstrap_are_refused() -> None:
    res = ClusterState().apply(join_command(CFG, _node(2)))
    assert not res.ok and "not bootstrapped" in res.error


def test_last_active_node_cannot_leave() -> None:
    s = _cluster(1)
    res = s.apply(leave_command("node-1"))
    assert not res.ok and "last active node" in res.error


def test_epoch_grows_with_every_change_and_snapshots_round_trip() -> None:
    s = _cluster(3)
    epochs = [s.epoch]
    for cmd in (join_command(CFG, _node(4)), leave_command("node-2"), fail_command("node-3"), rebalance_command()):
        assert s.apply(cmd).ok
        epochs.append(s.epoch)
    assert epochs == sorted(set(epochs))
    blob = s.snapshot()
    restored = ClusterState.restore(blob)
    assert restored == s and restored.snapshot() == blob
    with pytest.raises(CommandError):
        ClusterState.restore(b"junk")
    with pytest.raises(CommandError, match="version"):
        ClusterState.restore(msgpack.packb({"v": 99}))
    doc = msgpack.unpackb(blob, raw=False)
    for bad in ("node-1", [1, "node-2"]):  # a map entry that is not a list of node ids
        broken = dict(doc, owners=[bad, *doc["owners"][1:]])
        with pytest.raises(CommandError, match="must list node ids"):
            ClusterState.restore(msgpack.packb(broken, use_bin_type=True))


def test_n_below_rf_every_node_owns_everything() -> None:
    s = _cluster(2, ClusterConfig(partition_count=8, replication_factor=3))
    assert all(sorted(o) == ["node-1", "node-2"] for o in s.owners)


def test_rf2_failure_every_new_owner_has_a_copy_source() -> None:
    s = _cluster(5)
    res = s.apply(fail_command("node-3"))
    changes = [e for e in res.events if isinstance(e, PartitionChange) and e.copy_to is not None]
    assert changes, "node-3 owned partitions; they need new owners"
    for e in changes:
        assert e.copy_from and all(src.id != "node-3" for src in e.copy_from)
        assert e.reason == "failure"
        assert e.new_primary in [src.id for src in e.copy_from] or e.new_primary == e.copy_to.id


def test_failure_of_the_copy_source_reissues_the_copy_from_a_survivor() -> None:
    s = _cluster(3, ClusterConfig(partition_count=16, replication_factor=3))
    res = s.apply(join_command(CFG.__class__(partition_count=16, replication_factor=3), _node(4)))
    first = {e.number: e for e in res.events if isinstance(e, PartitionChange) and e.copy_to is not None}
    p, change = next(iter(first.items()))
    source = change.copy_from[0].id
    res = s.apply(fail_command(source))
    again = [e for e in res.events if isinstance(e, PartitionChange) and e.number == p and e.copy_to is not None]
    assert again and all(source not in [x.id for x in e.copy_from] for e in again)
    assert all(e.copy_from for e in again)


def test_failed_holders_count_until_every_new_owner_confirmed() -> None:
    """Two of a partition's three owners marked failed at once (a detector can't tell dead from
    cut off): both stay holders, so a data layer copies from a quorum of the old copies, not from
    the one left reachable; confirmation releases them."""
    cfg = ClusterConfig(partition_count=16, replication_factor=3)
    s = _cluster(5, cfg)
    p = 0
    a, b, c = s.owners[p]
    assert s.apply(fail_command(b, by_detector=True)).ok
    assert s.apply(fail_command(c, by_detector=True)).ok
    assert set(s.holders[p]) == {a, b, c}
    assert s.live_holders(p) == [a] and sorted(s.failed_holders(p)) == sorted([b, c])
    assert b not in s.owners[p] and c not in s.owners[p]
    assert s.to_dict()["partitions"]["partition-0"]["failed"] == s.failed_holders(p)
    # the facade's view: not serving, but among the holders a data layer counts
    kit = ClusterKit(Options(node_id=a, http_addr="127.0.0.1:1", partition_count=16, replication_factor=3))
    kit.state = s
    part = kit.partition(p)
    assert set(part.failed) == {b, c} and b not in (part.primary, *part.replicas)
    assert set(part.holders) >= {a, b, c} and not set(part.incoming) & set(part.holders)
    # b comes back (the detector heard it): a live holder again, a copy source again
    assert s.apply(join_command(cfg, s.nodes[b])).ok
    assert b in s.live_holders(p) and s.failed_holders(p) == [c]
    _confirm_all(s)
    assert not s.migrating and all(not s.failed_holders(q) for q in range(16))
    assert all(h not in (c,) for hs in s.holders for h in hs)


def test_failed_holders_stay_when_the_owners_shrink_with_nothing_to_copy() -> None:
    """Too few nodes left for RF: the survivors already hold the partition, so nothing is copied,
    and the failed holders must not be released with the rest (found by kv-sync-detector seed
    288: two failed holders released at once took writes the one survivor lacked)."""
    cfg = ClusterConfig(partition_count=8, replication_factor=3)
    s = _cluster(3, cfg)
    assert s.apply(fail_command("node-2", by_detector=True)).ok
    assert s.apply(fail_command("node-3", by_detector=True)).ok
    for p in range(8):
        assert s.owners[p] == ("node-1",) and not s.incoming(p)
        assert sorted(s.failed_holders(p)) == ["node-2", "node-3"]
    assert s.apply(join_command(cfg, s.nodes["node-2"])).ok  # back: a live holder again, nothing to copy
    assert all(s.failed_holders(p) == ["node-3"] and "node-2" in s.live_holders(p) for p in range(8))


def test_leave_of_a_failed_node_drops_its_copies_for_good() -> None:
    """An operator's leave of a failed node says it is gone, disk and all: its copies stop
    counting; a partition it was the last copy of starts again, empty, on its owners."""
    cfg = ClusterConfig(partition_count=16, replication_factor=3)
    s = _cluster(5, cfg)
    p = 3
    a, b, c = s.owners[p]
    for n in (a, b, c):
        assert s.apply(fail_command(n)).ok
    assert sorted(s.holders[p]) == sorted([a, b, c]) and not s.live_holders(p)
    for n in (b, c):
        assert s.apply(leave_command(n)).ok
        assert n not in s.nodes  # forgotten: it held nothing that still counts
    assert s.holders[p] == (a,) and s.failed_holders(p) == [a]
    assert s.apply(leave_command(a)).ok
    assert s.holders[p] == s.owners[p] and not s.incoming(p)  # nothing left to copy from
    _confirm_all(s)
    assert not s.migrating


def test_join_during_an_unfinished_migration() -> None:
    s = _cluster(3)
    assert s.apply(join_command(CFG, _node(4))).ok
    assert s.migrating
    assert s.apply(join_command(CFG, _node(5))).ok  # node-4's copies not confirmed yet
    for p in range(16):
        live = s.live_holders(p)
        assert len(live) >= 2, f"partition {p} has {live}"
        if s.incoming(p):
            assert live, "an incoming owner always has a source"
    _confirm_all(s)
    assert not s.migrating
    assert_partition_map({f"p{p}": o for p, o in enumerate(s.owners)}, s.active(), 2)


def test_leaving_node_stays_a_source_until_its_data_moved() -> None:
    s = _cluster(3)
    res = s.apply(leave_command("node-2"))
    assert [e.kind for e in res.events if hasattr(e, "kind")][:1] == ["leave"]
    assert "node-2" in s.nodes and s.nodes["node-2"].status == "leaving"
    assert all("node-2" not in o for o in s.owners)
    _confirm_all(s)
    assert "node-2" not in s.nodes  # gone once nothing depends on it


commands = st.lists(
    st.tuples(st.sampled_from(["join", "leave", "fail", "confirm", "rebalance"]), st.integers(0, 50)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(rf=st.integers(1, 4), p_count=st.integers(1, 48), script=commands)
def test_migration_never_loses_a_copy_it_could_keep(rf, p_count, script) -> None:
    cfg = ClusterConfig(partition_count=p_count, replication_factor=rf)
    s = ClusterState()
    s.apply(bootstrap_command(cfg, _node(1)))
    next_id = 2
    for op, pick in script:
        before = [len(s.live_holders(p)) for p in range(p_count)]
        active = s.active()
        if op == "join":
            cmd = join_command(cfg, _node(next_id, zone="ab"[next_id % 2]))
            next_id += 1
        elif op in ("leave", "fail"):
            cmd = (leave_command if op == "leave" else fail_command)(active[pick % len(active)])
        elif op == "confirm":
            pending = [(p, o) for p in range(p_count) for o in s.incoming(p)]
            if not pending:
                continue
            cmd = confirm_command(*pending[pick % len(pending)])
        else:
            cmd = rebalance_command()
        epoch = s.epoch
        res = s.apply(cmd)
        assert res.ok or "last active node" in res.error
        if not res.ok:
            continue
        assert s.epoch >= epoch
        live = s.active()
        assert_partition_map({f"p{p}": o for p, o in enumerate(s.owners)}, live, rf)
        want = min(rf, len(live))
        for p in range(p_count):
            now = len(s.live_holders(p))
            floor = before[p] - 1 if op == "fail" else before[p]
            assert now >= min(floor, want), (op, p, before[p], now)
            if now:
                assert all(o in s.owners[p] for o in s.incoming(p))
        for e in res.events:
            if isinstance(e, PartitionChange) and e.copy_to is not None:
                has_data = len(s.live_holders(e.number)) > 0
                assert bool(e.copy_from) == has_data
    assert ClusterState.restore(s.snapshot()) == s


def test_per_partition_epoch_moves_only_for_partitions_whose_placement_changed() -> None:
    s = _cluster(3)
    before, placement = list(s.changed), list(zip(s.owners, s.holders))
    assert all(e <= s.epoch for e in before)
    assert s.apply(join_command(CFG, _node(4))).ok
    moved = {p for p in range(CFG.partition_count) if (s.owners[p], s.holders[p]) != placement[p]}
    assert moved, "a join moves some partitions"
    for p in range(CFG.partition_count):
        assert s.changed[p] == (s.epoch if p in moved else before[p]), p
    assert len(moved) < CFG.partition_count
    p = next(p for p in sorted(moved) if s.incoming(p))
    incoming = s.incoming(p)[0]
    assert s.apply(confirm_command(p, incoming)).ok
    assert s.changed[p] == s.epoch
    assert sum(e == s.epoch for e in s.changed) == 1  # a confirm touches one partition
    restored = ClusterState.restore(s.snapshot())
    assert restored.changed == s.changed and restored.to_dict() == s.to_dict()


def test_a_confirmation_naming_an_older_placement_is_ignored() -> None:
    """A copy restarted at a new placement starts from nothing: the confirmation of the copy it
    replaced, still in flight, must not make it a holder."""
    s = _cluster(3)
    assert s.apply(join_command(CFG, _node(4))).ok
    started = {q: s.changed[q] for q in range(16) if "node-4" in s.incoming(q)}
    assert s.apply(join_command(CFG, _node(5))).ok  # the placement moves while node-4 copies
    p = next(q for q in started if s.changed[q] != started[q] and "node-4" in s.incoming(q))
    assert s.apply(confirm_command(p, "node-4", started[p])).ok
    assert "node-4" in s.incoming(p), "the stale confirmation changed nothing"
    assert s.apply(confirm_command(p, "node-4", s.changed[p])).ok
    assert "node-4" not in s.incoming(p)
    res = s.apply(encode_command("confirm", partition=p, node_id="node-4", epoch="7"))
    assert not res.ok and "epoch" in res.error
