"""``clusterkit cluster up``: a local cluster of real node processes on loopback, in the foreground.

Each node is its own ``python -m clusterkit node`` process (started by
:class:`clusterkit.net.local.LocalCluster`) on free 127.0.0.1 ports (or, with
``--base-port N``, on N + 3(i-1), +1 and +2 for node i), with its data
directory and log file under one directory: ``--dir``, or a new temporary
directory. The directory also holds a cluster secret and an API token
(``cluster-secret``, ``api-token``), made on the first run and given to every
node: the data and membership routes need the token. Node 1 bootstraps, the others join through it. The command prints
every node's HTTP and Raft address, data directory and log file, then one
line starting with ``ready:`` once a leader is elected and every node is an
active member, and then waits. Ctrl-C or SIGTERM stops every node (SIGTERM,
then SIGKILL whoever is still running after ``--stop-timeout``) and exits.

A node that dies meanwhile (killed to watch a failover, say) is reported on
stderr and left dead; the others keep running.

The ``--dir`` of an earlier run (it holds ``cluster.json``: the node count,
ports and partitioning) starts that cluster again from its data, on the same
ports; a directory holding anything else is refused.

Exit codes: 0 when stopped by Ctrl-C or SIGTERM after the ready line: that is
how this command is meant to end, so it is a success (not 130). 130 when
interrupted before the cluster was ready; 1 when the cluster did not come up
in time or a node exited during start-up (the tail of its log is printed);
2 for a bad command line (including flags that disagree with the cluster.json
of ``--dir``); 3 when ``--dir`` can't be used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .args import bounded_int, positive_seconds, show_help
from .codes import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, error
from .ports import MIN_BASE_PORT, base_port, room_problem, taken

PROG = "clusterkit cluster up"
MIN_NODES = 1
# Every node is a Python process with its own event loop and fsyncs: past about 15 a laptop spends
# its time scheduling them, and Raft elections start timing out.
MAX_NODES = 15
STATE_FILE = "cluster.json"

UP_EPILOG = f"""\
{EXIT_CODES_HELP}
For `cluster up`, Ctrl-C or SIGTERM after the `ready:` line is the normal way to stop: exit 0.
Interrupted before ready: 130. The cluster did not come up (timeout, a node exited): 1.
"""


class _Stop(BaseException):
    """SIGTERM (or SIGINT) asked us to stop: raised from the signal handler in the main thread."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cluster", help="run a local cluster of real node processes on loopback",
        description="Run a local cluster of real `clusterkit node` processes on 127.0.0.1.",
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="COMMAND")
    up = csub.add_parser(
        "up", help="start N nodes in the foreground; Ctrl-C stops them all",
        description="Start N real nodes on free loopback ports (node-1 bootstraps, the others join\n"
        "through it), print their addresses and log files, print a `ready:` line once a leader\n"
        "is elected and every node is active, then wait. Ctrl-C or SIGTERM stops every node.",
        epilog=UP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--nodes", type=bounded_int(MIN_NODES, MAX_NODES), default=None,
                    help=f"number of nodes, {MIN_NODES} to {MAX_NODES} (default 3)")
    up.add_argument("--dir", type=Path, default=None,
                    help="where data directories and logs go (default: a new temporary directory, "
                    "removed after a clean stop); an earlier run's directory restarts that cluster")
    up.add_argument("--partition-count", type=bounded_int(1, 65536), default=None,
                    help="partitions (default 16)")
    up.add_argument("--replication-factor", type=bounded_int(1, 16), default=None,
                    help="copies of each partition (default 3)")
    up.add_argument("--ready-timeout", type=positive_seconds, default=60.0,
                    help="seconds to wait for the cluster to be ready (default 60)")
    up.add_argument("--stop-timeout", type=positive_seconds, default=10.0,
                    help="seconds nodes get to exit after SIGTERM before SIGKILL (default 10)")
    up.add_argument("--base-port", type=base_port, default=None, metavar="N",
                    help=f"node i listens on N+3(i-1) (HTTP), +1 (Raft), +2 (KV); N from {MIN_BASE_PORT}"
                    " (default: free ports)")
    up.set_defaults(func=run_up)
    p.set_defaults(func=lambda args: show_help(p))


# ---------------------------------------------------------------- the directory
def _plan(args: argparse.Namespace) -> tuple[Path, bool, dict[str, Any] | None, int]:
    """(root, is_temporary, saved cluster.json or None, exit code if unusable)."""
    if args.dir is None:
        return Path(tempfile.mkdtemp(prefix="clusterkit-cluster-")), True, None, EXIT_OK
    root: Path = args.dir.resolve()
    if root.exists() and not root.is_dir():
        error(PROG, f"--dir {root} is not a directory", EXIT_BAD_INPUT)
        return root, False, None, EXIT_BAD_INPUT
    saved_path = root / STATE_FILE
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
            ports = {n: (int(v["http_port"]), int(v["raft_port"])) for n, v in saved["nodes"].items()}
            if not ports or not all(1 <= p <= 65535 for pair in ports.values() for p in pair):
                raise ValueError("no nodes, or a port out of range")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            error(PROG, f"{saved_path} is not a cluster.json this command wrote: {exc}", EXIT_BAD_INPUT)
            return root, False, None, EXIT_BAD_INPUT
        return root, False, saved, EXIT_OK
    if root.exists() and any(root.iterdir()):
        error(PROG, f"--dir {root} is not empty and holds no {STATE_FILE}: use a new or empty directory",
              EXIT_BAD_INPUT)
        return root, False, None, EXIT_BAD_INPUT
    return root, False, None, EXIT_OK


def _settings(args: argparse.Namespace, saved: dict[str, Any] | None) -> tuple[dict[str, int], str | None]:
    """The node count and partitioning: the flags, or the saved ones (a flag that disagrees is an error)."""
    defaults = {"nodes": 3, "partition_count": 16, "replication_factor": 3}
    given = {k: getattr(args, k) for k in defaults}
    if saved is None:
        return {k: v if v is not None else defaults[k] for k, v in given.items()}, None
    out = {"nodes": len(saved["nodes"]), "partition_count": int(saved.get("partition_count", 16)),
           "replication_factor": int(saved.get("replication_factor", 3))}
    for key, value in given.items():
        if value is not None and value != out[key]:
            flag = "--" + key.replace("_", "-")
            return out, f"{flag} {value} disagrees with the {out[key]} of the cluster in --dir ({STATE_FILE})"
    return out, None


# ---------------------------------------------------------------- running
def run_up(args: argparse.Namespace) -> int:
    from clusterkit.net.local import API_TOKEN_FILE, LocalCluster

    root, temporary, saved, code = _plan(args)
    if code != EXIT_OK:
        return code
    settings, problem = _settings(args, saved)
    if problem is None and args.base_port is not None:
        problem = _base_port_problem(args.base_port, settings["nodes"], saved)
    if problem is not None:
        return error(PROG, problem, EXIT_USAGE)
    if args.base_port is not None and saved is None and (port := taken(args.base_port, settings["nodes"])):
        return error(PROG, f"--base-port {args.base_port}: port {port} is already in use on 127.0.0.1", EXIT_BAD_INPUT)
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Secure by default: a cluster secret and an API token in the directory, given to every node.
        cluster = LocalCluster(root, size=settings["nodes"], partition_count=settings["partition_count"],
                               replication_factor=settings["replication_factor"], secure=True,
                               base_port=args.base_port)
    except OSError as exc:
        return error(PROG, f"can't use --dir {root}: {exc}", EXIT_BAD_INPUT)
    if saved is not None:  # the same ports as last time: the nodes' logs hold each other's Raft addresses
        for nid, node in cluster.nodes.items():
            node.http_port = int(saved["nodes"][nid]["http_port"])
            node.raft_port = int(saved["nodes"][nid]["raft_port"])

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signum)

    for sig in previous:
        signal.signal(sig, on_signal)
    ready = False
    code = EXIT_FAILED
    try:
        _say(f"clusterkit cluster: {'restarting' if saved else 'starting'} {len(cluster.nodes)} node(s) in {root}")
        for nid, node in cluster.nodes.items():
            _say(f"{nid}  http={node.http}  raft=127.0.0.1:{node.raft_port}  "
                 f"log={node.log_path}  data={node.data_dir}")
        if saved is None:
            _save(cluster, settings)
        t0 = time.monotonic()
        try:
            _start(cluster, restart=saved is not None, timeout=args.ready_timeout)
        except (TimeoutError, RuntimeError) as exc:
            _report_dead(cluster)
            return error(PROG, f"the cluster did not come up: {exc}", EXIT_FAILED)
        leader = cluster.leader()
        pids = " ".join(f"{nid}={n.process.pid}" for nid, n in cluster.nodes.items() if n.process is not None)
        _say(f"pids: {pids}")
        first = next(iter(cluster.nodes.values()))
        ready = True  # before the line: a reader may signal us the moment it sees it
        _say(f"ready: {len(cluster.nodes)} node(s) active, leader {leader}, in {time.monotonic() - t0:.1f} s; "
             f"try: curl {first.url}/nodes")
        token = root / API_TOKEN_FILE
        _say(f"API token in {token}: curl -H \"Authorization: Bearer $(cat {token})\" "
             f"-X PUT -d '{{\"value\": \"v1\"}}' {first.url}/registers/greeting")
        _say("Ctrl-C (or SIGTERM) stops every node.")
        reported: set[str] = set()
        while True:
            time.sleep(0.5)
            for nid, node in cluster.nodes.items():
                if nid not in reported and node.process is not None and node.process.poll() is not None:
                    reported.add(nid)
                    print(f"clusterkit cluster: {nid} exited (code {node.process.returncode}); "
                          f"log: {node.log_path}", file=sys.stderr, flush=True)
    except (_Stop, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _Stop) else signal.SIGINT
        code = EXIT_OK if ready else EXIT_INTERRUPTED
        print(f"clusterkit cluster: {signal.Signals(signum).name}: stopping {len(cluster.nodes)} node(s)",
              file=sys.stderr, flush=True)
    finally:
        # A second Ctrl-C must not cut the cleanup short: from here on the signals are ignored.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            killed = _stop_all(cluster, args.stop_timeout)
            if killed:
                print(f"clusterkit cluster: SIGKILLed {', '.join(killed)} after {args.stop_timeout:g} s",
                      file=sys.stderr, flush=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if temporary and code == EXIT_OK:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"clusterkit cluster: data and logs kept in {root}", file=sys.stderr, flush=True)
    return code


def _base_port_problem(base: int, nodes: int, saved: dict[str, Any] | None) -> str | None:
    if saved is not None:  # a restart keeps its ports: a base that says otherwise is a mistake
        first = int(next(iter(saved["nodes"].values()))["http_port"])
        return None if first == base else f"--base-port {base} disagrees with the ports in --dir ({STATE_FILE})"
    return room_problem(base, nodes)


def _say(line: str) -> None:
    print(line, flush=True)  # stdout is often a pipe (a test, a log collector): never sit in a buffer


def _save(cluster: Any, settings: dict[str, int]) -> None:
    doc = {
        "nodes": {nid: {"http_port": n.http_port, "raft_port": n.raft_port} for nid, n in cluster.nodes.items()},
        "partition_count": settings["partition_count"],
        "replication_factor": settings["replication_factor"],
    }
    (cluster.root / STATE_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def _start(cluster: Any, restart: bool, timeout: float) -> None:
    if not restart:
        cluster.start_all(timeout=timeout)  # node-1 bootstraps and leads, then the others join
        return
    # From the data directories: node-1 alone is no majority any more, so start everyone and wait
    # for any leader and every node active.
    ids = list(cluster.nodes)
    for nid in ids:
        cluster.start(nid)
    cluster.wait(lambda: cluster.active_members() == set(ids), timeout, "a leader and every node active")


def _stop_all(cluster: Any, timeout: float) -> list[str]:
    """SIGTERM every live node, SIGKILL whoever is left after ``timeout``; reap them all. Who was killed."""
    procs = {nid: n.process for nid, n in cluster.nodes.items() if n.process is not None}
    for proc in procs.values():
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    killed = []
    for nid, proc in procs.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(nid)
    for pid in _children():  # a node whose Popen a signal cut short (started, never recorded)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        killed.append(f"pid {pid}")
    return killed


def _children() -> list[int]:
    """This process's live children, from /proc (Linux); none found elsewhere."""
    me = os.getpid()
    out = []
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc/self/stat").exists() else []:
        try:
            stat = entry.read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and int(fields[1]) == me and fields[0] != "Z":
            out.append(int(entry.parent.name))
    return out


def _report_dead(cluster: Any, lines: int = 8) -> None:
    """The tail of the log of every node that is not running: why it did not come up."""
    for nid, node in cluster.nodes.items():
        if node.process is None or node.process.poll() is None:
            continue
        try:
            tail = node.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        print(f"clusterkit cluster: {nid} exited (code {node.process.returncode}); the end of {node.log_path}:",
              file=sys.stderr)
        for line in tail:
            print(f"  {line}", file=sys.stderr)
