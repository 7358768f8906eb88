"""Package discovery that setup.cfg can't say: ``find:`` names a package by its folder, so sim/ would be
found as ``sim``, not ``clusterkit.sim``. Here each import root is searched in its own folder and its
subpackages are named under the root, so a new subpackage anywhere lands in the wheel as it does in
the editable install. A folder of .py files without an ``__init__.py`` is a package too (the editable
install imports it as a namespace package; the wheel once left ``clusterkit/kv`` out for lacking one).
Everything else is in setup.cfg."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).resolve().parent
# import name -> source folder (relative to this file)
ROOTS = {"clusterkit": "clusterkit", "clusterkit.sim": "sim", "clusterkit.net": "net"}


def _holds_python(folder: Path) -> bool:
    """True if ``folder`` or a folder below it has a .py file (not a data-only or cache folder)."""
    return any("__pycache__" not in p.parts for p in folder.rglob("*.py"))


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        root = HERE / folder
        found += [f"{name}.{sub}" for sub in find_namespace_packages(where=str(root), exclude=["*__pycache__*"])
                  if _holds_python(root / sub.replace(".", "/"))]
    return sorted(found)


setup(packages=packages(), package_dir=ROOTS)
