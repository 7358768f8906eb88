"""Raft core benchmarks on the in-memory network (one core, no I/O).

1. Throughput: entries committed per second by a 3-node group, with and
   without a msgpack round trip of every message (as on TCP).
2. Snapshots: a cluster state of 10,000 nodes and 65,536 partitions taken as
   a snapshot, sent to a fresh follower by chunked InstallSnapshot, restored.
3. Catch-up: a follower 100,000 entries behind, by snapshot (the default
   compaction) and, for comparison, by replaying the log.

Storage is MemoryStorage (with its sync model). The clock is only read here,
in the benchmark, never by the core.

    .venv/bin/python bench/raft_core.py [--entries N] [--payload BYTES] [--only throughput|snapshot|catchup]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit.partitioning.assigner import assign  # noqa: E402
from clusterkit.cluster_state import ClusterConfig, ClusterState, NodeInfo  # noqa: E402
from clusterkit.host import AppliedLog  # noqa: E402
from clusterkit.host.node import wrap_snapshot  # noqa: E402
from clusterkit.mem.network import MemNetwork  # noqa: E402
from clusterkit.raft import RaftConfig, decode, encode  # noqa: E402


def run(entries: int, batch: int, payload: int, codec: bool, compact: bool = False) -> tuple[float, int]:
    cfg = RaftConfig(max_entries_per_msg=4096, max_bytes_per_msg=4 << 20, max_inflight=256)
    net = MemNetwork(["n1", "n2", "n3"], seed=1, config=cfg, auto_compact=compact)
    leader = net.elect()
    raft = net.nodes[leader].raft
    assert raft is not None
    if codec:
        original = net._send

        def send_through_codec(m):  # what the TCP driver does to every message
            original(decode(encode(m)))

        net._send = send_through_codec  # type: ignore[method-assign]
    data = [b"x" * payload] * batch
    base = raft.log.committed
    start = time.perf_counter()
    proposed = 0
    while proposed < entries:
        raft.propose_batch(data)
        proposed += batch
        net.process(leader)
        net.deliver_all()
    net.tick_all()
    net.deliver_all()
    elapsed = time.perf_counter() - start
    committed = raft.log.committed - base
    applied = min(len(n.applied_data()) for n in net.nodes.values())
    assert applied >= entries, (applied, entries)
    return elapsed, committed


# ---------------------------------------------------------------- snapshots
def cluster_state_snapshot(nodes: int, partitions: int, rf: int) -> None:
    """Snapshot a big cluster state, send it through Raft's chunked InstallSnapshot, restore it."""
    config = ClusterConfig(partition_count=partitions, replication_factor=rf)
    ids = [f"node-{i}" for i in range(1, nodes + 1)]
    t0 = time.perf_counter()
    owners = assign(ids, partitions, rf)
    build = time.perf_counter() - t0
    state = ClusterState(
        config=config,
        nodes={n: NodeInfo(n, n, f"10.0.{i // 250}.{i % 250}:9001", f"10.0.{i // 250}.{i % 250}:8080")
               for i, n in enumerate(ids)},
        owners=list(owners),
        holders=list(owners),
        epoch=nodes,
    )
    t0 = time.perf_counter()
    data = state.snapshot()
    encode_s = time.perf_counter() - t0

    # Through Raft: the leader compacts with this image, a fresh follower gets it in 1 MiB chunks.
    cfg = RaftConfig(snapshot_threshold=0, snapshot_trailing=0)
    # The followers' state machine here is the cluster state itself: restored (and timed) below.
    received: list[bytes] = []

    class Received(AppliedLog):
        def restore(self, image: bytes) -> None:
            received.append(image)

    net = MemNetwork(["a", "b", "c"], seed=1, config=cfg, auto_compact=False, machine=lambda nid: Received())
    leader = net.elect()
    lagging = next(n for n in net.ids if n != leader)
    net.crash(lagging, synced=True)
    lead = net.nodes[leader].raft
    assert lead is not None
    net.propose(leader, b"state")
    net.deliver_all()
    t0 = time.perf_counter()
    lead.compact(lead.log.applied, wrap_snapshot({}, data))  # the host's snapshot: address book + image
    net.process(leader)
    compact_s = time.perf_counter() - t0
    net.restart(lagging)
    t0 = time.perf_counter()
    net.run_until(lambda: net.nodes[lagging].raft.log.applied >= lead.log.committed, 100)  # type: ignore[union-attr]
    transfer_s = time.perf_counter() - t0
    assert received and received[-1] == data
    t0 = time.perf_counter()
    restored = ClusterState.restore(received[-1])
    restore_s = time.perf_counter() - t0
    assert restored.owners == state.owners and len(restored.nodes) == nodes
    print(
        f"cluster state {nodes:,} nodes x {partitions:,} partitions (RF {rf}): snapshot {len(data) / 1e6:.1f} MB;"
        f" encode {encode_s * 1e3:.0f} ms, Raft compact {compact_s * 1e3:.0f} ms,"
        f" InstallSnapshot to a follower {transfer_s * 1e3:.0f} ms ({-(-len(data) // cfg.snapshot_chunk_bytes)} chunks),"
        f" restore {restore_s * 1e3:.0f} ms; snapshot + restore {(encode_s + restore_s) * 1e3:.0f} ms"
        f" (map built by the assigner in {build:.1f} s, not counted)"
    )


def catch_up(behind: int, payload: int, compaction: bool, codec: bool) -> None:
    """Time for a follower ``behind`` entries behind to apply everything the leader committed."""
    cfg = RaftConfig(max_entries_per_msg=4096, max_bytes_per_msg=4 << 20, max_inflight=256)
    net = MemNetwork(["n1", "n2", "n3"], seed=1, config=cfg, auto_compact=compaction)
    leader = net.elect()
    lagging = next(n for n in net.ids if n != leader)
    net.crash(lagging, synced=True)
    lead = net.nodes[leader].raft
    assert lead is not None
    data = [b"x" * payload] * 1024
    for _ in range(-(-behind // 1024)):
        lead.propose_batch(data)
        net.process(leader)
        net.deliver_all()
    net.tick_all()
    net.deliver_all()
    target = lead.log.committed
    if codec:
        original = net._send
        net._send = lambda m: original(decode(encode(m)))  # type: ignore[method-assign]
    t0 = time.perf_counter()
    net.restart(lagging)
    assert net.run_until(lambda: net.nodes[lagging].raft.log.applied >= target, 1000)  # type: ignore[union-attr]
    elapsed = time.perf_counter() - t0
    node = net.nodes[lagging]
    how = (
        f"snapshot at {lead.snapshot.meta.index:,} + {target - lead.snapshot.meta.index:,} entries"
        if compaction and lead.snapshot is not None
        else "log replay"
    )
    print(
        f"follower {target:,} entries behind ({payload} B each), {'through msgpack' if codec else 'no codec'}:"
        f" caught up in {elapsed:.2f} s by {how} ({node.snapshots_installed} snapshot installed)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--payload", type=int, default=64, help="bytes per entry")
    ap.add_argument("--only", choices=("throughput", "snapshot", "catchup"))
    ap.add_argument("--behind", type=int, default=100_000, help="entries the catching-up follower misses")
    args = ap.parse_args()
    if args.only in (None, "throughput"):
        print(f"3-node in-memory Raft group, {args.entries:,} entries of {args.payload} bytes, one core")
        print(f"{'batch':>7} {'codec':>6} {'seconds':>9} {'entries/s':>12}")
        for batch in (1, 64, 1024):
            for codec in (False, True):
                n = args.entries if batch > 1 else min(args.entries, 20_000)
                elapsed, committed = run(n, batch, args.payload, codec)
                print(f"{batch:>7} {'msgpack' if codec else 'no':>6} {elapsed:>9.3f} {committed / elapsed:>12,.0f}")
    if args.only in (None, "snapshot"):
        cluster_state_snapshot(10_000, 65_536, 3)
    if args.only in (None, "catchup"):
        for codec in (False, True):
            catch_up(args.behind, args.payload, compaction=True, codec=codec)
            catch_up(args.behind, args.payload, compaction=False, codec=codec)


if __name__ == "__main__":
    main()
