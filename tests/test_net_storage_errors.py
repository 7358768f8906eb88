"""Issue 20, item 4: a write or sync error, or the data directory gone, is loud and final.

Before the fix a node whose DATA_DIR filled up (a 4 MiB tmpfs) let the Raft log write error escape
its drain and logged nothing: the process stayed up, frozen, /health said 200; with its DATA_DIR
removed it went on acknowledging writes into deleted files. Now the node logs one CRITICAL line
naming the error, /health and /ready answer 503 at once, it acknowledges nothing more, and the
process exits 74 (EXIT_STORAGE_FAILED) for a supervisor to restart it.

Two ways in: real processes (one follower's DATA_DIR on a real 4 MiB tmpfs, when this machine lets
the test mount one; its DATA_DIR removed under it), and an in-process node (NodeService) whose
storage is made to fail with ENOSPC: there the 503s can be read before anything exits.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterkit.cli.codes import EXIT_STORAGE_FAILED
from clusterkit.facade import Options
from clusterkit.net import disk
from clusterkit.net.local import LocalCluster, free_port, http_json
from clusterkit.net.node import NodeConfig
from clusterkit.net.service import NodeService

WAIT = 30.0  # every wait below is bounded by this many seconds


# ------------------------------------------------------------------ real processes
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tmpfs"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _put(c: LocalCluster, nid: str, key: str, value: str) -> int:
    return http_json(c.nodes[nid].url + f"/registers/{key}", "PUT", {"value": value}, timeout=6.0)[0]


def _read(c: LocalCluster, nid: str, key: str) -> str | None:
    status, doc = http_json(c.nodes[nid].url + f"/registers/{key}", timeout=6.0)
    return doc.get("value") if status == 200 and doc else None


def _three_with_victim(root: Path, victim_dir: Path | None = None) -> LocalCluster:
    c = LocalCluster(root, size=3)
    if victim_dir is not None:
        c.nodes["node-3"].data_dir = victim_dir / "data"
    return c


def _wait_exit(c: LocalCluster, nid: str, timeout: float = WAIT) -> int:
    proc = c.nodes[nid].process
    assert proc is not None
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{nid} still running {timeout} s after its storage failed; log:\n{c.logs(nid)[-3000:]}")


def test_a_full_disk_stops_the_node_loudly_and_the_cluster_loses_nothing(tmp_path: Path, tmpfs: Path) -> None:
    with _three_with_victim(tmp_path / "cluster", tmpfs) as c:
        c.start_all()
        lead = c.leader()
        assert lead == "node-1"
        # Leave the victim a little room, then fill it with writes it must persist as a follower.
        free = shutil.disk_usage(tmpfs).free
        filler = tmpfs / "filler"
        filler.write_bytes(b"\0" * max(0, free - (256 << 10)))
        acked: dict[str, str] = {}
        value = "v" * (30 << 10)
        for i in range(200):  # 6 MiB of values: past the room left, bounded
            if not c.nodes["node-3"].alive:
                break
            key = f"k{i % 20}"
            if _put(c, lead, key, f"{i}:{value}") == 200:
                acked[key] = f"{i}:{value}"
        code = _wait_exit(c, "node-3")
        logs = c.logs("node-3")
        assert code == EXIT_STORAGE_FAILED, logs[-3000:]
        critical = [line for line in logs.splitlines() if " CRITICAL " in line]
        assert len(critical) == 1, critical
        assert "No space left on device" in critical[0] or "ENOSPC" in critical[0], critical
        assert "Traceback" not in logs
        assert acked, "no write was acknowledged before the disk filled"
        # Nothing acknowledged is lost on the rest of the cluster, which goes on committing.
        for key, v in acked.items():
            assert _read(c, lead, key) == v and _read(c, "node-2", key) == v, key
        assert _put(c, lead, "after", "still-committing") == 200
        # Free the space and restart it: it starts from what its disk holds and catches up.
        filler.unlink()
        c.start("node-3")
        c.wait(lambda: _read(c, "node-3", "after") == "still-committing", WAIT, "node-3 to catch up after a restart")
        last = max(acked, key=lambda k: int(acked[k].split(":")[0]))
        assert _read(c, "node-3", last) == acked[last]


def test_a_data_directory_removed_under_a_node_stops_it(tmp_path: Path) -> None:
    with _three_with_victim(tmp_path / "cluster") as c:
        c.start_all()
        lead = c.leader()
        assert lead == "node-1" and _put(c, lead, "before", "x") == 200
        shutil.rmtree(c.nodes["node-3"].data_dir)
        code = _wait_exit(c, "node-3")
        logs = c.logs("node-3")
        assert code == EXIT_STORAGE_FAILED, logs[-3000:]
        critical = [line for line in logs.splitlines() if " CRITICAL " in line]
        assert len(critical) == 1 and "gone" in critical[0], critical
        assert "Traceback" not in logs
        assert _put(c, lead, "after", "y") == 200 and _read(c, "node-2", "after") == "y"


# ------------------------------------------------------------------ in process: an injected failing disk
def _service(tmp: Path) -> NodeService:
    options = Options(node_id="node-1", http_addr=f"127.0.0.1:{free_port()}", raft_addr=f"127.0.0.1:{free_port()}",
                      bootstrap=True, data_dir=str(tmp / "node-1"))
    return NodeService(options, NodeConfig(fail_after=0.0))


async def _http(service: NodeService, path: str, method: str = "GET", body: object = None) -> tuple[int, object]:
    url = f"http://{service.node.options.http_addr}{path}"
    return await asyncio.to_thread(http_json, url, method, body, 6.0)


async def _leading(service: NodeService) -> None:
    async def lead() -> None:
        while service.node.host is None or not service.node.host.is_leader:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(lead(), WAIT)


@pytest.mark.parametrize("fault", ["enospc", "eio", "removed"])
def test_an_injected_storage_failure_answers_503_and_acknowledges_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """The disk's writes fail (ENOSPC, EIO) under DiskStorage, or its directory is removed."""
    caplog.set_level(logging.INFO)

    async def run() -> None:
        service = _service(tmp_path)
        await service.start()
        try:
            await _leading(service)
            node = service.node
            assert (await _http(service, "/registers/a", "PUT", {"value": "1"}))[0] == 200
            assert (await _http(service, "/health"))[0] == 200
            storage = node.storage
            assert storage is not None
            if fault == "removed":
                shutil.rmtree(storage.directory)
            else:
                err = errno.ENOSPC if fault == "enospc" else errno.EIO

                def fail(*_: object) -> None:
                    raise OSError(err, os.strerror(err))

                monkeypatch.setattr(disk, "_write_all", fail)  # every log write of this storage from now on
                status, _ = await _http(service, "/registers/b", "PUT", {"value": "2"})
                assert status != 200, "a write the disk refused was acknowledged"
            await asyncio.wait_for(node.halt_event.wait(), WAIT)
            assert node.halted is not None and node.halted.code == EXIT_STORAGE_FAILED
            for path in ("/health", "/ready"):
                status, doc = await _http(service, path)
                assert status == 503 and "storage failed" in doc["reason"], (path, status, doc)
            status, _ = await _http(service, "/registers/c", "PUT", {"value": "3"})
            assert status != 200, "a halted node acknowledged a write"
        finally:
            await service.stop()

    asyncio.run(run())
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1, [r.getMessage() for r in critical]
    words = {"enospc": "No space left", "eio": "Input/output error", "removed": "gone"}[fault]
    assert words in critical[0].getMessage(), critical[0].getMessage()


def test_a_full_disk_under_the_kv_log_still_exits_74(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterkit.net import kv_disk
    from clusterkit.net.client import KVClient, KVError
    from clusterkit.net.kv_service import KVOptions
    from clusterkit.net.node import NodeHalted
    from clusterkit.net.runner import serve

    http = f"127.0.0.1:{free_port()}"
    options = Options(node_id="node-1", http_addr=http, raft_addr=f"127.0.0.1:{free_port()}", bootstrap=True,
                      data_dir=str(tmp_path / "node-1"))

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def run() -> BaseException | None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(options, NodeConfig(fail_after=0.0), stop,
                                         kv=KVOptions(addr=f"127.0.0.1:{free_port()}")))
        try:
            async with KVClient([http], timeout=3.0) as kv:
                await kv.set("before", "v")
                monkeypatch.setattr(disk, "_write_all", full)  # the disk is full, for both logs
                monkeypatch.setattr(kv_disk, "_write_all", full)
                with pytest.raises(KVError):
                    await kv.set("k", "v")
            await asyncio.wait_for(task, WAIT)
        except BaseException as exc:  # noqa: BLE001 - what serve() ended with
            return exc
        finally:
            stop.set()
        return None

    ended = asyncio.run(run())
    assert isinstance(ended, NodeHalted) and ended.code == EXIT_STORAGE_FAILED, repr(ended)
