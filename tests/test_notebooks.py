"""The notebooks in notebooks/ run top to bottom in a fresh kernel (each cell within a bounded
wait) and are stored without outputs.

The kernel is this interpreter (the venv's), through a kernel spec written for the test, so a
system-wide "python3" kernel spec can't run them with another Python.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_LIMIT = 120  # seconds a cell may run before the test gives up (a bounded wait, not a speed bound)


def test_the_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} >= {"rebalancing.ipynb", "failover.ipynb", "find-a-bug.ipynb",
                                          "local-cluster.ipynb", "sim-vs-real.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {i} has outputs"
    assert "widgets" not in nb.metadata


def _kernel(tmp_path: Path) -> KernelManager:
    spec = tmp_path / "kernels" / "clusterkit-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "clusterkit test", "language": "python",
    }))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="clusterkit-test", kernel_spec_manager=ksm)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    km = _kernel(tmp_path)
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_LIMIT, startup_timeout=60,
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    started = time.monotonic()
    try:
        client.execute()
    finally:
        if km.has_kernel:  # a kernel manager passed in is ours to stop
            km.shutdown_kernel(now=True)
    took = time.monotonic() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew nothing"
    print(f"{path.name}: {took:.1f} s, {len(images)} figures", file=sys.stderr)
