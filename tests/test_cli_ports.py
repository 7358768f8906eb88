"""``--base-port`` for ``cluster up`` and ``demo`` (issue 20, item 11), and ``cluster up``'s secret
and API token (item 8): the nodes listen where the user said, their data routes need the token
the command wrote, and a base that can't work is one line and exit 2 (3 for a port in use).
"""

from __future__ import annotations

import random
import signal
import socket
from pathlib import Path

import pytest

from clusterkit.cli import main
from clusterkit.cli.ports import PORTS_PER_NODE, taken
from clusterkit.net.local import API_TOKEN_FILE, PORTS_PER_NODE as LOCAL_PORTS_PER_NODE, SECRET_FILE, http_json

from .test_cli_cluster import Up, _processes_in, _stopped


def _free_base(nodes: int) -> int:
    """A base whose block of ports is free right now (the range is wide: collisions are rare)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000 - PORTS_PER_NODE * nodes)
        if taken(base, nodes) is None:
            return base
    raise AssertionError("no free block of ports")


def test_cluster_up_listens_on_the_base_port_and_needs_its_token(tmp_path: Path) -> None:
    assert PORTS_PER_NODE == LOCAL_PORTS_PER_NODE
    root = tmp_path / "c"
    base = _free_base(2)
    up = Up("--nodes", "2", "--dir", str(root), "--base-port", str(base), "--replication-factor", "2")
    try:
        up.wait_for("ready:")
        assert up.http_addrs() == {"node-1": f"127.0.0.1:{base}", "node-2": f"127.0.0.1:{base + 3}"}
        assert any(f"raft=127.0.0.1:{base + 4}" in line for line in up.lines if line.startswith("node-2"))
        token = (root / API_TOKEN_FILE).read_text().strip()
        assert len(token) >= 32 and len((root / SECRET_FILE).read_text().strip()) >= 32
        assert (root / API_TOKEN_FILE).stat().st_mode & 0o077 == 0  # owner-only
        hint = up.wait_for("API token in")
        assert str(root / API_TOKEN_FILE) in hint and "Authorization: Bearer" in hint
        url = f"http://127.0.0.1:{base + 3}"
        assert http_json(url + "/nodes")[0] == 200
        assert http_json(url + "/registers/greeting", "PUT", {"value": "v1"})[0] == 401
        assert http_json(url + "/registers/greeting", "PUT", {"value": "v1"}, token=token)[0] == 200
        assert http_json(f"http://127.0.0.1:{base}/registers/greeting", token=token)[1]["value"] == "v1"
        assert _stopped(up, signal.SIGINT) == 0
        assert _processes_in(root) == []
    finally:
        up.kill_group()


def _code(argv: list[str]) -> int:
    """The exit code of ``clusterkit ARGV`` run in process (argparse's errors raise SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["cluster", "up", "--base-port", "80"], 2, ">= 1024"),
    (["cluster", "up", "--base-port", "65530", "--nodes", "3"], 2, "past 65535"),
    (["cluster", "up", "--base-port", "nope"], 2, "whole number"),
    (["demo", "--base-port", "65528", "--nodes", "3"], 2, "past 65535"),  # 4 nodes: the demo adds one
    (["demo", "--in-memory", "--base-port", "20000"], 2, "in-memory"),
])
def test_a_base_port_that_cannot_work_is_one_line_and_exit_2(argv: list[str], code: int, words: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    got = _code(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1 and words in err[0], err


def test_a_base_port_in_use_is_exit_3_before_anything_starts(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        base = port - 4  # node-2's Raft port
        got = _code(["cluster", "up", "--nodes", "2", "--base-port", str(base), "--dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert got == 3 and len(err) == 1 and "is already in use" in err[0], err
    # Ours, or (on a busy machine) another port of the block that some other process holds.
    named = int(err[0].split(": port ")[1].split()[0])
    assert named == port or base <= named < port, err
    assert not (tmp_path / "c" / "node-1").exists()


def test_local_cluster_gives_node_i_the_block_of_ports_from_the_base(tmp_path: Path) -> None:
    from clusterkit.net.local import LocalCluster

    c = LocalCluster(tmp_path / "c", size=2, base_port=30000)  # (no process is started)
    c._new_node("node-3")  # what add_node does before it starts the node: the demo's added node
    ports = {nid: (n.http_port, n.raft_port, n.kv_port) for nid, n in c.nodes.items()}
    assert ports == {"node-1": (30000, 30001, 30002), "node-2": (30003, 30004, 30005),
                     "node-3": (30006, 30007, 30008)}


def test_the_kv_demo_runs_on_the_base_port_with_its_secret_and_token(tmp_path: Path) -> None:
    from .test_kv_demo import _demo, _leftovers

    base = _free_base(4)  # 3 nodes and the one the demo adds
    done = _demo(tmp_path, "--nodes", "3", "--keys", "40", "--base-port", str(base), "--keep")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (kept,) = [line.split(" in ", 1)[1].strip() for line in done.stdout.splitlines() if "node logs kept in" in line]
    root = Path(kept)
    assert f"HTTP API: 127.0.0.1:{base}, 127.0.0.1:{base + 3}, 127.0.0.1:{base + 6};" in done.stdout
    assert f"started node-4 (HTTP API 127.0.0.1:{base + 9})" in done.stdout  # the added node: the 4th block
    assert (root / API_TOKEN_FILE).exists() and (root / SECRET_FILE).exists()
    assert _leftovers(tmp_path) == []
