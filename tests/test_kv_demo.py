"""The real KV demo end to end: real node processes on loopback, a kill, a join, the checks.

It passes on a healthy cluster, fails (exit 1) when migrations are broken on purpose (copies
confirmed without pulling anything), and leaves no process behind when interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterkit.net.kv_service import BREAK_MIGRATION_ENV


def _demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clusterkit", "demo", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "TMPDIR": str(tmp_path), **(env or {})},
    )


def _leftovers(root: Path) -> list[int]:
    """Processes still running in a directory under ``root`` (the demo's nodes run there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "cwd").startswith(str(root)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_demo_passes_and_prints_its_table(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--keys", "300")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for text in ("SIGKILLed node-3", "started node-6", "throughput", "p99", "partitions moved", "keys migrated",
                 "time to recover", "300/300 keys", "linearizable          yes", "PASS: nothing lost"):
        assert text in out.stdout, text
    assert _leftovers(tmp_path) == []


def test_demo_fails_when_migration_is_broken(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--keys", "1000", env={BREAK_MIGRATION_ENV: "1"})
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "FAIL" in out.stdout and "MISSING ON AN OWNER" in out.stdout
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc to find leftover processes")
def test_interrupted_demo_leaves_no_process_behind(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "clusterkit", "demo", "--keys", "100"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if "nodes up" in line or time.monotonic() > deadline:
                break
        assert _leftovers(tmp_path), "the nodes should be running now"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while _leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(tmp_path) == []
