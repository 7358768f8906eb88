"""The rules that keep the core deterministic (ARCHITECTURE.md): no I/O, no clock, no threads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import clusterkit

FORBIDDEN = {"socket", "asyncio", "threading", "time", "selectors", "subprocess", "multiprocessing"}
CORE = Path(clusterkit.__file__).parent
# Edge code that talks to the outside world on purpose: the command line.
EDGE = CORE / "cli"


def _core_files():
    return [p for p in sorted(CORE.rglob("*.py")) if EDGE not in p.parents]


def test_core_modules_import_no_io_clock_or_threads():
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(CORE)}:{node.lineno} imports {name}")
    assert offenders == []
    assert len(_core_files()) >= 10  # the scan really looked at the core


def test_core_uses_no_module_level_random():
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
                and node.attr != "Random"
            ):
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno} uses random.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "random":
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno} imports from random")
    assert offenders == []


def test_importing_raft_core_pulls_in_no_io_modules():
    # logging (which the host uses, as every part should) imports threading for its locks: what it
    # pulls in is measured first and allowed; anything the core adds on top is not.
    code = (
        "import sys, logging; before = set(sys.modules); "
        "import clusterkit.raft, clusterkit.mem.network, clusterkit.host, clusterkit.check; "
        f"bad = sorted(m for m in {sorted(FORBIDDEN - {'time', 'subprocess'})!r} if m in set(sys.modules) - before); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_same_seed_same_run():
    from clusterkit.mem.network import MemNetwork

    def trace(seed):
        events = []
        net = MemNetwork(["a", "b", "c", "d", "e"], seed=seed, drop_rate=0.05, on_event=events.append)
        for _ in range(2000):
            net.random_step(fault_rate=0.02)
        return events, [n.applied_data() for n in net.nodes.values()], net.stats

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)
