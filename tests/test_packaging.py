"""The wheel holds what the editable install imports: every package under clusterkit/, sim/ and net/,
named as imported (sim/ -> clusterkit.sim), including packages nobody has listed anywhere yet."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
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
def wheel_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
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
    return src, _build_wheel(src, tmp / "dist")


@pytest.fixture(scope="module")
def built(wheel_file: tuple[Path, Path]) -> Iterator[tuple[Path, zipfile.ZipFile]]:
    src, wheel = wheel_file
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


# ---------------------------------------------------------------- the wheel, installed and run
def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh venv with only the wheel installed, offline: no dependencies fetched (``--no-deps``,
    ``--no-index``); once it is in, a .pth file lets the venv import them from this test venv's
    site-packages. That directory's own .pth files (the editable install's finder among them) are
    not run from there, so ``clusterkit`` can only come from the wheel."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60, cwd=where).stdout.strip()
    (Path(site) / "zz_test_venv_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH, no node settings from the caller's environment."""
    drop = ("PYTHONPATH", "NODE_ID", "HTTP_ADDR", "RAFT_ADDR", "JOIN_ADDR", "BOOTSTRAP", "DATA_DIR", "KV_ADDR",
            "KV_PORT", "LOG_LEVEL")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def test_the_installed_wheel_runs_a_node_with_its_kv_store(wheel_file: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """What the Docker image does: `pip install .`, not editable, then `clusterkit node`. Without
    clusterkit/kv in the wheel the node died at once with ModuleNotFoundError."""
    from clusterkit.net.local import free_port

    _, wheel = wheel_file
    venv = _venv_with(wheel, tmp_path)
    env = _clean_env()
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import clusterkit, clusterkit.kv.server, clusterkit.net.kv_service; "
                            "print(clusterkit.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the wheel's copy, not the checkout
    http = f"127.0.0.1:{free_port()}"
    env.update(NODE_ID="node-1", HTTP_ADDR=http, RAFT_ADDR=f"127.0.0.1:{free_port()}",
               KV_ADDR=f"127.0.0.1:{free_port()}", DATA_DIR=str(tmp_path / "data"))
    log = (tmp_path / "node.log").open("wb")
    node = subprocess.Popen([str(venv / "bin" / "clusterkit"), "node"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        deadline = time.monotonic() + 60
        while _health(f"http://{http}/health") != 200:
            assert node.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, "no /health 200 within 60 s: " + (tmp_path / "node.log").read_text()
            time.sleep(0.1)  # polling a live process's port, bounded by the deadline
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, (tmp_path / "node.log").read_text()
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(timeout=10)
    text = (tmp_path / "node.log").read_text()
    assert "Traceback" not in text and "node-1 stopped" in text
