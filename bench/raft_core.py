"""Raft core throughput: entries committed per second by a 3-node in-memory group.

No I/O: storage is MemoryStorage (with its sync model), messages go through
the in-memory network (optionally through the msgpack codec too, as they
would on TCP). The clock is only read here, in the benchmark, never by the core.

    .venv/bin/python bench/raft_core.py [--entries N] [--payload BYTES]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit.memnet import MemNetwork  # noqa: E402
from clusterkit.raft import RaftConfig, decode, encode  # noqa: E402


def run(entries: int, batch: int, payload: int, codec: bool) -> tuple[float, int]:
    cfg = RaftConfig(max_entries_per_msg=4096, max_bytes_per_msg=4 << 20, max_inflight=256)
    net = MemNetwork(["n1", "n2", "n3"], seed=1, config=cfg)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--payload", type=int, default=64, help="bytes per entry")
    args = ap.parse_args()
    print(f"3-node in-memory Raft group, {args.entries:,} entries of {args.payload} bytes, one core")
    print(f"{'batch':>7} {'codec':>6} {'seconds':>9} {'entries/s':>12}")
    for batch in (1, 64, 1024):
        for codec in (False, True):
            n = args.entries if batch > 1 else min(args.entries, 20_000)
            elapsed, committed = run(n, batch, args.payload, codec)
            print(f"{batch:>7} {'msgpack' if codec else 'no':>6} {elapsed:>9.3f} {committed / elapsed:>12,.0f}")


if __name__ == "__main__":
    main()
