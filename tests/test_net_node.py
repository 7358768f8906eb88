"""The asyncio node's request path: proposals made in one loop turn reach the host as one batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clusterkit.facade import Options
from clusterkit.host.registers import put_command
from clusterkit.net.local import free_port
from clusterkit.net.node import NetNode, NodeConfig
from clusterkit.raft.errors import NotLeader, ProposalDropped


def _node(tmp: Path, bootstrap: bool = True) -> NetNode:
    options = Options(node_id="node-1", http_addr=f"127.0.0.1:{free_port()}", raft_addr=f"127.0.0.1:{free_port()}",
                      bootstrap=bootstrap, data_dir=str(tmp / "node-1"))
    return NetNode(options, NodeConfig(fail_after=0.0))


async def _leading(node: NetNode) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not node.host.is_leader:
        assert loop.time() < deadline, "the node did not elect itself"
        await asyncio.sleep(0.01)


def test_proposals_of_one_loop_turn_go_to_the_host_as_one_batch(tmp_path: Path) -> None:
    async def run() -> None:
        node = _node(tmp_path)
        async with node:
            await _leading(node)
            batches: list[int] = []
            propose_batch = node.host.propose_batch
            node.host.propose_batch = lambda datas: batches.append(len(datas)) or propose_batch(datas)
            results = await asyncio.gather(*(node.propose(put_command(f"k{i}", "v")) for i in range(50)))
            assert results == ["ok"] * 50 and batches == [50]
            assert all(node.registers.get(f"k{i}") == "v" for i in range(50))

    asyncio.run(run())


def test_a_refused_batch_is_proposed_one_by_one_and_bad_proposals_fail_alone(tmp_path: Path) -> None:
    async def run() -> None:
        node = _node(tmp_path)
        async with node:
            await _leading(node)

            def refuse(datas: list[bytes]) -> None:
                raise ProposalDropped("refused as a batch")

            node.host.propose_batch = refuse
            results = await asyncio.gather(*(node.propose(put_command(f"k{i}", "w")) for i in range(5)))
            assert results == ["ok"] * 5  # each on its own
            with pytest.raises(TypeError):
                await node.propose("not bytes")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="0xc1"):
                await node.propose(b"\xc1host")
            with pytest.raises(ProposalDropped, match="max_entry_bytes"):
                await node.propose(b"x" * (node.raft_config.max_entry_bytes + 1))
            assert await node.propose(put_command("after", "x")) == "ok"

    asyncio.run(run())


def test_a_node_that_does_not_lead_refuses_a_proposal_at_once(tmp_path: Path) -> None:
    async def run() -> None:
        node = _node(tmp_path, bootstrap=False)  # joining: it leads nothing
        async with node:
            with pytest.raises(NotLeader):
                await node.propose(put_command("k", "v"))

    asyncio.run(run())
