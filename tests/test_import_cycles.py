"""No module of clusterkit/, net/ or sim/ takes part in an import cycle.

Imports are read with ``ast``, wherever they stand: at module level, under ``if TYPE_CHECKING:``
and inside functions. A function-level import still says that one file needs the other, so a
circle dodged by moving an import into a function is still a circle here. ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module, else of ``pkg``; the implicit import of
a parent package's ``__init__`` is not counted (every submodule import would otherwise point at it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# import name -> folder, as setup.py installs them; sim/ is in the graph so a cycle through it is seen
FOLDERS = {"clusterkit": ROOT / "clusterkit", "clusterkit.net": ROOT / "net", "clusterkit.sim": ROOT / "sim"}
CHECKED = ("clusterkit", "clusterkit.net", "clusterkit.sim")


def modules(folders: dict[str, Path]) -> dict[str, Path]:
    """Every module's dotted name and file (``__init__.py`` named by its package)."""
    found: dict[str, Path] = {}
    for root_name, folder in folders.items():
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([root_name, *parts])
            found.setdefault(name, path)  # (clusterkit/ never holds net/ or sim/: no clash)
    return found


def _known(name: str, mods: dict[str, Path]) -> str | None:
    """``name`` or the nearest enclosing module of ours (None: not ours)."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.append(sub if sub in mods else source)
        for target in targets:
            known = _known(target, mods)
            if known is not None and known != name:
                out.add(known)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph(folders: dict[str, Path]) -> dict[str, set[str]]:
    mods = modules(folders)
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def _in(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots) and not name.startswith("clusterkit.sim")


def test_no_module_of_the_core_or_net_is_in_an_import_cycle() -> None:
    graph = _graph(FOLDERS)
    assert len(graph) > 50 and "clusterkit.net.node" in graph and "clusterkit.raft" in graph  # (read them all)
    bad = [c for c in cycles(graph) if any(_in(m, CHECKED) for m in c)]
    assert not bad, "import cycles (module-level and function-level imports counted):\n" + "\n".join(
        " <-> ".join(c) for c in bad)


def test_the_check_sees_a_cycle_hidden_in_a_function_or_type_checking_block(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import thing\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import X\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    (pkg / "e.py").write_text("from pkg import a\n")  # one way only: no cycle
    assert cycles(_graph({"pkg": pkg})) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
