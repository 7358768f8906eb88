"""``clusterkit cluster up``: real node processes come up, answer, and are all gone after Ctrl-C or SIGTERM.

Each test runs the command as a subprocess in a session of its own (so a failing test can kill
the whole group), reads its stdout with a bounded wait for the ``ready:`` line, asks a printed
address for ``/nodes``, signals the command, and then checks that no node process is left: the
printed pids are gone, and no process has its working directory in the cluster's directory (the
nodes run there), found by a scan of /proc.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clusterkit.cli import main
from clusterkit.cli.cluster import MAX_NODES
from clusterkit.net.local import http_json

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="scans /proc for leftover processes")

READY_TIMEOUT = 90.0  # the machine may be busy: generous, but bounded


class Up:
    """One ``clusterkit cluster up`` process and the lines it printed."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clusterkit", "cluster", "up", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, prefix: str, timeout: float = READY_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {prefix!r} line within {timeout} s; got {self.lines}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"exited ({self.proc.wait()}) before {prefix!r}; {self.lines}; {err}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def http_addrs(self) -> dict[str, str]:
        return dict(re.findall(r"^(node-\d+)\s+http=(\S+)", "\n".join(self.lines), re.M))

    def pids(self) -> dict[str, int]:
        line = next(x for x in self.lines if x.startswith("pids:"))
        return {k: int(v) for k, v in re.findall(r"(node-\d+)=(\d+)", line)}

    def kill_group(self) -> None:
        """The cleanup of last resort: whatever is left of the command's session."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _processes_in(directory: Path) -> list[int]:
    """Every live process whose working directory is in ``directory`` (the nodes run there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if (cwd == str(directory) or cwd.startswith(str(directory) + os.sep)) and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _active_nodes(addr: str) -> list[str]:
    status, doc = http_json(f"http://{addr}/nodes", timeout=5.0)
    assert status == 200, (status, doc)
    return sorted(n["id"] for n in doc["nodes"] if n["status"] == "active")


def _stopped(up: Up, sig: int) -> int:
    up.proc.send_signal(sig)
    return up.proc.wait(timeout=60)


def test_up_serves_three_nodes_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    root = tmp_path / "c"
    up = Up("--nodes", "3", "--dir", str(root))
    try:
        ready = up.wait_for("ready:")
        assert "3 node(s) active" in ready
        addrs = up.http_addrs()
        assert sorted(addrs) == ["node-1", "node-2", "node-3"]
        pids = up.pids()
        assert sorted(pids) == sorted(addrs) and all(_alive(p) for p in pids.values())
        assert _active_nodes(addrs["node-2"]) == ["node-1", "node-2", "node-3"]
        assert set(_processes_in(root)) == set(pids.values())
        code = _stopped(up, signal.SIGINT)
        assert code == 0, up.proc.stderr.read() if up.proc.stderr else ""
        assert not [p for p in pids.values() if _alive(p)]
        assert _processes_in(root) == []
        assert "SIGINT: stopping 3 node(s)" in (up.proc.stderr.read() if up.proc.stderr else "")
        assert json.loads((root / "cluster.json").read_text())["nodes"].keys() == addrs.keys()
    finally:
        up.kill_group()


def test_sigterm_stops_a_restarted_cluster_which_kept_its_data(tmp_path: Path) -> None:
    """Run 1 writes a register; run 2 on the same --dir (same ports, from disk) still has it."""
    root = tmp_path / "c"
    first = Up("--nodes", "2", "--dir", str(root))
    try:
        first.wait_for("ready:")
        addr = first.http_addrs()["node-2"]
        token = (root / "api-token").read_text().strip()  # cluster up's: kept in --dir for the next run
        status, _ = http_json(f"http://{addr}/registers/k", "PUT", {"value": "kept"}, timeout=10.0, token=token)
        assert status == 200
        assert _stopped(first, signal.SIGTERM) == 0
    finally:
        first.kill_group()
    assert _processes_in(root) == []
    second = Up("--dir", str(root))
    try:
        assert "restarting 2 node(s)" in second.wait_for("clusterkit cluster:")
        second.wait_for("ready:")
        assert second.http_addrs() == first.http_addrs()
        addr = second.http_addrs()["node-1"]
        status, doc = http_json(f"http://{addr}/registers/k", timeout=10.0, token=token)
        assert status == 200 and doc["value"] == "kept"
        pids = second.pids()
        assert _stopped(second, signal.SIGTERM) == 0
        assert not [p for p in pids.values() if _alive(p)]
    finally:
        second.kill_group()
    assert _processes_in(root) == []


def test_a_temporary_directory_is_removed_after_a_clean_stop(tmp_path: Path) -> None:
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    up = Up("--nodes", "1", env={"TMPDIR": str(env_tmp)})
    try:
        line = up.wait_for("clusterkit cluster:")
        root = Path(line.split(" in ", 1)[1])
        assert root.is_dir() and root.parent == env_tmp
        up.wait_for("ready:")
        assert _stopped(up, signal.SIGINT) == 0
        assert not root.exists()
    finally:
        up.kill_group()


@pytest.mark.parametrize("nodes", ["0", str(MAX_NODES + 1), "three"])
def test_node_count_out_of_bounds_is_a_usage_error(capsys, nodes: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["cluster", "up", "--nodes", nodes])
    assert exc.value.code == 2
    assert "--nodes" in capsys.readouterr().err


def test_a_dir_holding_something_else_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "unrelated.txt").write_text("x")
    assert main(["cluster", "up", "--dir", str(tmp_path)]) == 3
    assert "not empty" in capsys.readouterr().err


def test_flags_that_disagree_with_the_saved_cluster_are_a_usage_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "cluster.json").write_text(json.dumps(
        {"nodes": {"node-1": {"http_port": 40001, "raft_port": 40002}}, "partition_count": 16,
         "replication_factor": 3}))
    assert main(["cluster", "up", "--dir", str(tmp_path), "--nodes", "3"]) == 2
    assert "disagrees" in capsys.readouterr().err


def test_cluster_alone_shows_help_and_is_a_usage_error(capsys) -> None:
    assert main(["cluster"]) == 2
    assert "up" in capsys.readouterr().out


def test_a_cluster_that_does_not_come_up_in_time_exits_1_and_leaves_no_process(tmp_path: Path) -> None:
    root = tmp_path / "c"
    up = Up("--nodes", "2", "--dir", str(root), "--ready-timeout", "0.05")
    try:
        assert up.proc.wait(timeout=60) == 1
        assert "did not come up" in (up.proc.stderr.read() if up.proc.stderr else "")
        assert _processes_in(root) == []
    finally:
        up.kill_group()
