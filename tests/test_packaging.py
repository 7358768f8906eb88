"""The wheel holds what the editable install imports: every package under clusterkit/, sim/ and net/,
named as imported (sim/ -> clusterkit.sim), including packages nobody has listed anywhere yet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> where its files sit in the wheel (setup.py's package_dir, read the other way)
FOLDERS = {"clusterkit": "clusterkit", "sim": "clusterkit/sim", "net": "clusterkit/net"}
BUILD_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md")


def _copy_source(dst: Path) -> None:
    """Build from a copy: the build writes build/ and *.egg-info, which must not land in the checkout."""
    dst.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, dst / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, dst / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _build_wheel(src: Path, out: Path) -> Path:
    major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    if (major, minor) < (70, 1):
        pytest.fail("setuptools >= 70.1 builds wheels offline on its own: pip install -e '.[test]'")
    # No index and no build isolation: the build uses the setuptools already installed, so it runs offline.
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(out), str(src)]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("clusterkit-*.whl")
    return wheel


def _expected_files(src: Path) -> set[str]:
    """Every .py file under the source folders, as named in the wheel: a folder without an
    ``__init__.py`` is imported fine by the editable install (as a namespace package), so it
    must be in the wheel too (clusterkit/kv/ once was not, and the Docker image could not start)."""
    out = set()
    for folder, prefix in FOLDERS.items():
        for path in (src / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                out.add(f"{prefix}/{path.relative_to(src / folder).as_posix()}")
    return out


def _source_folders_with_python(root: Path) -> list[str]:
    """Every folder under the source folders that holds a .py file, as named in the wheel."""
    out = set()
    for folder, prefix in FOLDERS.items():
        for path in (root / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                out.add(f"{prefix}/{path.parent.relative_to(root / folder).as_posix()}".removesuffix("/."))
    return sorted(out)


NEW_PACKAGES = ("clusterkit/zz_later", "sim/zz_later", "net/zz_later/inner")
# A folder of modules someone forgot to give an __init__.py (as clusterkit/kv/ was).
PLAIN_FOLDER = "clusterkit/zz_plain"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, zipfile.ZipFile]]:
    """A copy of the source with packages no list names (one under each folder, one nested), and
    its wheel. A hand-written package list would leave those out of the wheel, while the editable
    install imports them fine."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    _copy_source(src)
    for new in NEW_PACKAGES:
        path = src / new
        path.mkdir(parents=True)
        while path.parent != src:  # every folder below the root folder is a package
            (path / "__init__.py").touch()
            path = path.parent
    (src / PLAIN_FOLDER).mkdir()
    (src / PLAIN_FOLDER / "mod.py").write_text("VALUE = 1\n")
    wheel = _build_wheel(src, tmp / "dist")
    with zipfile.ZipFile(wheel) as zf:
        yield src, zf


def test_wheel_holds_every_package_including_new_ones(built: tuple[Path, zipfile.ZipFile]) -> None:
    src, zf = built
    names = set(zf.namelist())
    expected = _expected_files(src)
    assert {"clusterkit/zz_later/__init__.py", "clusterkit/sim/zz_later/__init__.py",
            "clusterkit/net/zz_later/inner/__init__.py", "clusterkit/cli/__init__.py",
            "clusterkit/kv/server.py", "clusterkit/zz_plain/mod.py"} <= expected
    assert sorted(expected - names) == []
    # sim/ and net/ are clusterkit.sim and clusterkit.net, never top-level packages of their own
    assert not [n for n in names if n.split("/")[0] in ("sim", "net", "tests")]


def test_every_source_folder_with_python_is_a_regular_package_in_the_wheel(
        built: tuple[Path, zipfile.ZipFile]) -> None:
    """Each folder of the checkout that holds .py files is a package with its ``__init__.py`` in the
    wheel, not a namespace folder that only an editable install (or only setup.py's fallback) finds."""
    _, zf = built
    names = set(zf.namelist())
    folders = _source_folders_with_python(ROOT)
    assert "clusterkit/kv" in folders and "clusterkit/net" in folders
    assert [f for f in folders if f"{f}/__init__.py" not in names] == []


def test_wheel_metadata_requires_simpy_and_names_the_console_script(built: tuple[Path, zipfile.ZipFile]) -> None:
    _, zf = built
    meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    entry_points = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "Requires-Dist: simpy>=4" in meta
    assert "clusterkit = clusterkit.cli:main" in entry_points
