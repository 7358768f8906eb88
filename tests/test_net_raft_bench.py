"""bench/net_raft.py runs end to end at a tiny size (both modes: HTTP clients, and the load generator
in each leader's process) and leaves no process behind.

The numbers are not checked (the machine is shared): only that every system comes up, is
measured, agrees with itself afterwards, that a failover is timed, and that every process the
bench started (their working directories are in its --dir) is gone when it returns. PySyncObj
is a bench-only extra: without it the run is ClusterKit's alone.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "net_raft.py"
HAVE_PYSYNCOBJ = importlib.util.find_spec("pysyncobj") is not None


def _processes_in(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(directory)):
                found.append(int(proc.name))
    return found


def test_a_tiny_run_measures_every_system_and_reaps_every_process(tmp_path: Path) -> None:
    args = ["--dir", str(tmp_path), "--no-tmpfs", "--concurrency", "1,4", "--seconds", "0.3", "--rounds", "1",
            "--latency-writes", "5", "--latency-seconds", "0.5", "--failovers", "1", "--inproc-concurrency", "1,4"]
    if not HAVE_PYSYNCOBJ:
        args.append("--no-pysyncobj")
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=240,
                          start_new_session=True)
    assert done.returncode == 0, done.stdout + done.stderr
    http, inproc = done.stdout.split("IN-PROCESS mode", 1)  # the HTTP mode's report, then the in-process one
    assert "writes/s c=4" in http and "against the issue's targets:" in http
    names = ["clusterkit"] + (["pysyncobj (defaults)", "pysyncobj (no batch)"] if HAVE_PYSYNCOBJ else [])
    for out in (http, inproc):
        for name in names:
            assert f"{name:<22} terms" in out
            assert "same registers on every node: yes" in out.split(f"{name:<22} terms", 1)[1].splitlines()[0]
    assert "failover: median" in http
    assert "writes/s c=4" in inproc and "0 errors" in inproc.split("clusterkit             c=4", 1)[1].splitlines()[0]
    if HAVE_PYSYNCOBJ:
        assert "ratio clusterkit / pysyncobj (no batch)" in inproc
    if Path("/proc/self/cwd").exists():
        assert _processes_in(tmp_path) == []
