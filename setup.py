"""Package discovery that setup.cfg can't say: ``find:`` names a package by its folder, so sim/ would be
found as ``sim``, not ``clusterkit.sim``. Here each import root is searched in its own folder and its
subpackages are named under the root, so a new subpackage anywhere lands in the wheel as it does in
the editable install. Everything else is in setup.cfg."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# import name -> source folder (relative to this file)
ROOTS = {"clusterkit": "clusterkit", "clusterkit.sim": "sim", "clusterkit.net": "net"}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(where=str(HERE / folder))]
    return sorted(found)


setup(packages=packages(), package_dir=ROOTS)
