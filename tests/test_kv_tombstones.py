"""Holes a review of tombstone collection found, kept as regression tests: a late Collect that
removed a tombstone and remembered nothing, a tombstone counted as held because its key was merely
absent, and a restart whose first ticks see a map older than the data (each failed before its fix)."""

from __future__ import annotations

from clusterkit.facade import ClusterKit
from clusterkit.kv.data import KVData
from clusterkit.kv.messages import Batch, Collect, Refused, Store
from clusterkit.kv.operation import Operation
from clusterkit.kv.quorum import Placement, Quorums
from clusterkit.kv.records import Record, Version
from clusterkit.kv.server import KVServer, ServerConfig
from clusterkit.mem.cluster import MemCluster

GC = ServerConfig(gc_ticks=4, repair_ticks=10**6)  # anti-entropy off: it would close the windows only by chance


def _settled(names=("node-1", "node-2", "node-3")):
    c = MemCluster(list(names), seed=1)
    c.elect()
    assert c.submit("node-1", c.kits["node-1"].bootstrap_command()).ok
    for nid in names[1:]:
        assert c.submit(nid, c.kits[nid].join_command()).ok
    _confirm_all(c)
    servers = {nid: KVServer(k, config=GC, hooks=False) for nid, k in sorted(c.kits.items())}
    return c, servers


def _confirm_all(c):
    for nid, kit in c.kits.items():
        if kit.state.config is None:
            continue
        for p in range(kit.state.config.partition_count):
            if nid in kit.partition(p).incoming:
                assert c.submit(nid, kit.confirm_copy_command(p)).ok
    assert not c.kits["node-1"].state.migrating


def _three_of_four():
    """Four nodes' Raft group, three of them members of the settled cluster; node-4 not yet joined."""
    c = MemCluster(["node-1", "node-2", "node-3", "node-4"], seed=1)
    c.elect()
    assert c.submit("node-1", c.kits["node-1"].bootstrap_command()).ok
    for nid in ("node-2", "node-3"):
        assert c.submit(nid, c.kits[nid].join_command()).ok
    _confirm_all(c)
    return c


def _pump(servers, rounds=1, hold=None, logs=None):
    """Tick every server ``rounds`` times, delivering every message; ``hold(src, dst, msg)`` True:
    the message is kept back (returned) instead of delivered. ``logs``: each node's synced log."""
    held = []
    for _ in range(rounds):
        for s in servers.values():
            s.tick()
        moving = True
        while moving:
            moving = False
            for nid, s in servers.items():
                entries = s.data.take_unsynced()
                if logs is not None:
                    logs.setdefault(nid, []).extend(entries)
                for dst, msg in s.take_outbox():
                    if dst not in servers:
                        continue
                    if hold is not None and hold(nid, dst, msg):
                        held.append((nid, dst, msg))
                        continue
                    moving = True
                    servers[dst].handle(nid, msg)
    return held


def _keys_of(kit, p, n):
    out = []
    for i in range(100_000):
        k = f"k{i}"
        if kit.state.config.hash_config.number(k) == p:
            out.append(k)
            if len(out) == n:
                return out
    raise AssertionError


def _read(servers, kit, p, key, copies):
    """A SYNC read (as the smart client runs it) whose read quorum is ``copies``."""
    here = Placement.of(kit.partition(p))
    rids = iter(range(10_000_000, 20_000_000))
    op = Operation(key, here, Quorums(3), "reader#1", lambda: next(rids), write=False)
    pending = list(op.start())
    for _ in range(10):
        nxt = []
        for dst, msg in pending:
            if dst not in copies:
                continue
            servers[dst].handle("reader", msg)
            servers[dst].data.take_unsynced()
            for to, answer in servers[dst].take_outbox():
                if to == "reader":
                    nxt.extend(op.on_message(dst, answer))
        pending = nxt
        if op.outcome is not None:
            break
    return op


# ---------------------------------------------------------------- hole 1
def test_collect_applied_after_a_newer_round_is_remembered() -> None:
    """R1's Collect reaches node-3 only after R2's (floor f2 > f1): node-3 removes t1 but records
    nothing (``if floor > before`` is false), so a late Store of a value older than t1 is taken."""
    c, servers = _settled()
    kit = c.kits["node-1"]
    p = next(q for q in range(kit.state.config.partition_count) if kit.partition(q).primary == "node-1")
    k1, k2 = _keys_of(kit, p, 2)
    epoch = kit.partition(p).epoch
    old = Record(Version(3, "w0"), "old")            # W0: acknowledged by node-1 and node-2 earlier
    t1 = Record(Version(4, "d1"), None)              # D1 deleted k1 after W0 (saw v3)
    for s in servers.values():
        s.data.put(p, k1, t1)
    r1_to_3 = []

    def hold_r1(src, dst, msg):  # every Collect of round R1 to node-3 is slow (slow link / buffers)
        if isinstance(msg, Collect) and dst == "node-3" and any(k == k1 for k, _ in msg.items):
            r1_to_3.append((src, msg))
            return True
        # (node-3's anti-entropy round in this window is lost too: a repair batch from a copy with
        # a higher floor would reset node-3's remembered rounds and close the hole by chance)
        return dst == "node-3" and type(msg).__name__ == "Digest"

    _pump(servers, rounds=2 * GC.gc_ticks + 1, hold=hold_r1)
    assert servers["node-1"].data.get(p, k1) is None and servers["node-2"].data.get(p, k1) is None
    assert servers["node-3"].data.get(p, k1) == t1 and r1_to_3, "R1 decided; its Collect to node-3 is late"
    # another delete, collected by R2 (node-3 takes part: its Has floor is still 0)
    t2 = Record(Version(10, "d2"), None)
    for s in servers.values():
        s.data.put(p, k2, t2)
    _pump(servers, rounds=3 * GC.gc_ticks, hold=hold_r1)
    assert all(s.data.get(p, k2) is None for s in servers.values()), "R2 collected k2 everywhere"
    assert servers["node-3"].data.get(p, k1) == t1
    # R1's late Collect arrives now
    src, late = r1_to_3[-1]
    servers["node-3"].handle(src, late)
    servers["node-3"].take_outbox()
    assert servers["node-3"].data.get(p, k1) is None, "t1 collected on node-3 too"
    # W0's Store to node-3 (made with floor 0 before the delete) was delayed too, and arrives now
    s3 = servers["node-3"]
    s3.handle("client", Store(77, p, epoch, k1, old, 0))
    [(_, answer)] = s3.take_outbox()
    op = _read(servers, kit, p, k1, {"node-3", "node-2"})
    assert isinstance(answer, Refused) and answer.reason == "collected", (
        f"node-3 took a value older than a delete it collected: answer {answer}; "
        f"a read from node-2+node-3 after the delete completed returns {op.result}")


# ---------------------------------------------------------------- hole 2
def test_a_tombstone_held_by_absence_is_remembered() -> None:
    """node-3 never got D1's tombstone (its Store was lost) but its floor is above the tombstone's
    counter, so _has counts it as held; the round collects it and node-3's round records nothing for
    the key (only keys removed locally are recorded): W0's late Store of an older value is taken."""
    c, servers = _settled()
    kit = c.kits["node-1"]
    p = next(q for q in range(kit.state.config.partition_count) if kit.partition(q).primary == "node-1")
    ka, k = _keys_of(kit, p, 2)
    epoch = kit.partition(p).epoch
    ta = Record(Version(5, "da"), None)
    for s in servers.values():
        s.data.put(p, ka, ta)
    # wait until a round has seen ta once (the next one collects it)
    _pump(servers, rounds=GC.gc_ticks + 1)
    assert servers["node-1"].data.get(p, ka) == ta
    # W0 writes k@2 (acked by node-1, node-2; its Store to node-3 is delayed); D1 deletes k at 3
    # (its query saw v2 and floor 0); D1's Store to node-3 is lost.
    w0, t = Record(Version(2, "w0"), "old"), Record(Version(3, "d1"), None)
    for nid in ("node-1", "node-2"):
        servers[nid].data.put(p, k, w0)
        servers[nid].data.put(p, k, t)
    _pump(servers, rounds=4 * GC.gc_ticks)
    assert all(s.data.get(p, ka) is None for s in servers.values())
    assert all(s.data.get(p, k) is None for s in servers.values()), "t collected (node-3 'held' it by its floor)"
    assert servers["node-3"].data.floor(p) > t.version.counter
    s3 = servers["node-3"]
    s3.handle("client", Store(78, p, epoch, k, w0, 0))  # W0's delayed Store
    [(_, answer)] = s3.take_outbox()
    op = _read(servers, kit, p, k, {"node-3", "node-1"})
    assert isinstance(answer, Refused) and answer.reason == "collected", (
        f"node-3 took a value older than a collected delete: {answer}; read after the delete -> {op.result}")


# ---------------------------------------------------------------- replay / old map
def test_a_restart_with_an_older_map_keeps_the_copies_it_holds() -> None:
    """A restarted node's first ticks can see its cluster state as the Raft snapshot (or the synced
    commit index) left it, older than its KV data. _reconcile drops every partition it doesn't own
    in that map, for good ("drop" is logged); once the map catches up it is a complete holder again
    (never incoming, so nothing copies it back) with nothing: acknowledged writes are on fewer
    copies than W, and a quorum read misses them."""
    c = _three_of_four()
    before_join = c.kits["node-1"].state.snapshot()  # e.g. the snapshot node-4 was sent when it joined
    assert c.submit("node-4", c.kits["node-4"].join_command()).ok
    _confirm_all(c)
    kit = c.kits["node-1"]
    p = next(q for q in range(kit.state.config.partition_count)
             if "node-4" in kit.partition(q).holders and "node-4" != kit.partition(q).primary)
    here = kit.partition(p)
    servers = {nid: KVServer(k, config=GC, hooks=False) for nid, k in sorted(c.kits.items())}
    logs: dict = {}
    _pump(servers, rounds=1, logs=logs)
    key = _keys_of(kit, p, 1)[0]
    others = [n for n in here.holders if n != "node-4"]
    w = Record(Version(1, "w"), "acknowledged")
    # W: acked by node-4 and one other holder (W=2 of 3)
    for nid in ("node-4", others[0]):
        servers[nid].data.put(p, key, w)
    synced4 = logs["node-4"] + servers["node-4"].data.take_unsynced()  # its whole synced log
    # node-4 restarts: its facade holds the old map for a while (snapshot before its join)
    stale = ClusterKit(c.kits["node-4"].options)
    stale.restore(before_join)
    again = KVServer(stale, KVData.replay(synced4), GC, hooks=False, incarnation=1)
    again.tick()
    # ... then catches up
    stale.restore(c.kits["node-4"].state.snapshot())
    again.tick()
    servers["node-4"] = again
    assert "node-4" in Placement_of(stale, p).holders and "node-4" not in stale.partition(p).incoming
    op = _read(servers, kit, p, key, {"node-4", others[1]})
    assert again.data.get(p, key) == w, (
        f"node-4 (a complete holder again) lost its copy; read from node-4+{others[1]} -> {op.result}")


def Placement_of(kit, p):
    return Placement.of(kit.partition(p))


# ---------------------------------------------------------------- a source restarts mid-copy
def test_a_copy_source_that_restarts_with_a_compacted_log_is_pulled_again_from_its_start() -> None:
    """Pull cursors are change numbers (LSNs) of one life of the source's data. A restart replays
    the log, and a compacted log (rewritten from the live data) replays to fewer changes: a cursor
    from the old life can lie past every change of the new one, which then answers "done" at once,
    and the new owner confirms a copy missing what changed after its cursor. Found by reading the
    code (the simulator replays whole logs, whose LSNs come back the same)."""
    c = _three_of_four()
    config = ServerConfig(gc_ticks=10**6, repair_ticks=10**6, batch=2)  # (small batches: a copy in steps)
    servers = {nid: KVServer(k, config=config, hooks=False) for nid, k in sorted(c.kits.items()) if nid != "node-4"}
    kit = c.kits["node-1"]
    assert c.submit("node-4", c.kits["node-4"].join_command()).ok
    p = next(q for q in range(kit.state.config.partition_count) if "node-4" in kit.partition(q).incoming)
    here = Placement_of(kit, p)
    first, second = here.holders[0], here.holders[1]  # the copy's sources (a read quorum, in order)
    third = next(n for n in here.holders if n not in (first, second))
    keys = _keys_of(kit, p, 6)
    hot, rest = keys[0], keys[1:]
    for i in range(50):  # many changes of one key: the compacted log has far fewer
        servers[first].data.put(p, hot, Record(Version(i + 1, "w"), f"h{i}"))
    for key in rest:  # acknowledged by first and third (W=2), not by second
        for nid in (first, third):
            servers[nid].data.put(p, key, Record(Version(1, "w"), key))
    for s in servers.values():
        s.data.take_unsynced()
    servers["node-4"] = KVServer(c.kits["node-4"], config=config, hooks=False)
    # node-4 takes one batch from first, then first restarts from its compacted log
    taken = []

    def hold(src, dst, msg):
        if dst == "node-4" and src == first and isinstance(msg, Batch):
            taken.append(msg)
            return len(taken) > 1
        return False

    _pump(servers, rounds=1, hold=hold)
    assert len(taken) >= 1 and taken[0].cursor > len(keys)
    compacted = servers[first].data.compacted()
    servers[first] = KVServer(c.kits[first], KVData.replay(compacted), config, hooks=False, incarnation=1)
    _pump(servers, rounds=60)
    missing = [k for k in rest if servers["node-4"].data.get(p, k) is None]
    assert not missing, f"node-4's copy from {first} (restarted, log compacted) misses {missing}"


# ---------------------------------------------------------------- a copy across placements
def test_a_copy_goes_on_where_it_was_when_its_placement_changes_while_it_is_still_incoming() -> None:
    """A copy that started over at every change of its partition's placement might never finish
    under churn (a flapping failure detector, joins one after another). A node that stays incoming
    keeps what it copied and each source's place; it still ends with every key."""
    names = ("node-1", "node-2", "node-3", "node-4", "node-5")
    c = MemCluster(list(names), seed=1)
    c.elect()
    assert c.submit("node-1", c.kits["node-1"].bootstrap_command()).ok
    for nid in ("node-2", "node-3"):
        assert c.submit(nid, c.kits[nid].join_command()).ok
    _confirm_all(c)
    config = ServerConfig(gc_ticks=10**6, repair_ticks=10**6, batch=2)
    servers = {nid: KVServer(c.kits[nid], config=config, hooks=False) for nid in ("node-1", "node-2", "node-3")}
    kit = c.kits["node-1"]
    assert c.submit("node-4", c.kits["node-4"].join_command()).ok
    incoming4 = [q for q in range(kit.state.config.partition_count) if "node-4" in kit.partition(q).incoming]
    keys = {q: _keys_of(kit, q, 8) for q in incoming4}
    for q, ks in keys.items():
        for key in ks:
            for nid in kit.partition(q).holders:
                servers[nid].data.put(q, key, Record(Version(1, "w"), key))
    servers["node-4"] = KVServer(c.kits["node-4"], config=config, hooks=False)
    first_batches = []

    def hold(src, dst, msg):  # node-4 gets one batch per source, then the placement moves
        if dst == "node-4" and isinstance(msg, Batch):
            first_batches.append(msg)
            return len(first_batches) > len(incoming4) * 2
        return False

    _pump(servers, rounds=1, hold=hold)
    epochs = {q: kit.partition(q).epoch for q in incoming4}
    assert c.submit("node-5", c.kits["node-5"].join_command()).ok  # a second join moves placements
    moved = [q for q in incoming4
             if "node-4" in kit.partition(q).incoming and kit.partition(q).epoch != epochs[q]]
    assert moved, "no partition node-4 is still copying changed its placement"
    q = moved[0]
    held_before = sum(1 for k in keys[q] if servers["node-4"].data.get(q, k) is not None)
    assert held_before > 0
    servers["node-5"] = KVServer(c.kits["node-5"], config=config, hooks=False)
    servers["node-4"].tick()  # sees the new placement
    job = servers["node-4"]._pulls[q]
    assert job.placement.epoch == kit.partition(q).epoch
    assert sum(1 for k in keys[q] if servers["node-4"].data.get(q, k) is not None) == held_before  # kept
    assert any(src.after > 0 for src in job.sources.values())  # and where it was
    _pump(servers, rounds=40)
    assert all(servers["node-4"].data.get(q, k) is not None for k in keys[q])
