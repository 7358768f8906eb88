"""The facade as a real node: async start/stop, hooks in log order on every node, the blocking wrapper."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clusterkit.facade import Hooks, Options
from clusterkit.net import BlockingClusterKit, ClusterKit, NodeConfig
from clusterkit.net.local import free_port

CONFIG = NodeConfig(fail_after=0.0)


def _options(tmp: Path, n: int, join: str = "") -> Options:
    return Options(node_id=f"node-{n}", http_addr=f"127.0.0.1:{free_port()}", raft_addr=f"127.0.0.1:{free_port()}",
                   join_addr=join, data_dir=str(tmp / f"node-{n}"), partition_count=8)


def test_three_facades_in_one_loop_see_the_same_hooks_in_the_same_order(tmp_path: Path) -> None:
    events: dict[str, list[tuple]] = {f"node-{i}": [] for i in range(1, 4)}

    def hooks(nid: str) -> Hooks:
        log = events[nid]
        return Hooks(
            partition_change=[lambda e: log.append(("partition", e.epoch, e.number, e.copy_to and e.copy_to.id))],
            node_join=[lambda e: log.append(("join", e.epoch, e.node.id))],
            rebalance_start=[lambda e: log.append(("rebalance", e.epoch, e.reason))],
        )

    async def run() -> None:
        first = ClusterKit(_options(tmp_path, 1), hooks("node-1"), CONFIG)
        async with first:
            await first.wait_ready()
            kits = [first]
            try:
                for n in (2, 3):
                    kit = ClusterKit(_options(tmp_path, n, join=first.options.http_addr), hooks(f"node-{n}"), CONFIG)
                    await kit.start()
                    kits.append(kit)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while loop.time() < deadline:
                    states = [k.state for k in kits]
                    if all(len(s.active()) == 3 and not s.migrating for s in states) and len({s.epoch for s in states}) == 1:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise TimeoutError("the three nodes did not settle")
                assert all(k.get_partition("user:123") == first.get_partition("user:123") for k in kits)
                assert kits[2].is_leader is False and first.is_leader is True  # each from its own Raft node
            finally:
                for kit in kits[1:]:
                    await kit.stop()

    asyncio.run(run())
    reference = events["node-1"]
    assert [e[0] for e in reference].count("join") == 3 and any(e[0] == "partition" for e in reference)
    assert events["node-2"] == reference and events["node-3"] == reference  # every node, in log order


def test_the_blocking_wrapper_serves_the_seed_api(tmp_path: Path) -> None:
    with BlockingClusterKit(_options(tmp_path, 1), config=CONFIG) as ck:
        part = ck.get_partition("user:123")
        assert part.id == "partition-0" and part.primary == "node-1"  # md5 of "user:123" mod 8, as in Go
        assert ck.is_primary(part) and ck.my_node_id() == "node-1"
        assert ck.partition_stats().total_partitions == 8
