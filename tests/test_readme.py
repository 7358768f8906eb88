"""Every Python example in README.md runs as written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})


# ---------------------------------------------------------------- statements that must stay true
TEXT = README.read_text()
ROOT = README.parent


def test_every_scenario_count_in_the_readme_is_the_number_of_scenario_files() -> None:
    """It said 13 while scenarios/ held 19: a number that rots is checked, or not written."""
    count = len(list((ROOT / "scenarios").glob("*.toml")))
    assert [int(n) for n in re.findall(r"\b(\d+) scenarios\b", TEXT) if int(n) != count] == []


def test_no_link_points_outside_the_repository() -> None:
    """../shared/ sits beside the checkout where this was written, not in the repository."""
    assert "../shared" not in TEXT


def test_the_seeds_http_port_is_explained() -> None:
    assert "`HTTP_PORT`: give `HTTP_ADDR=:8080` instead" in " ".join(TEXT.split())


@pytest.fixture(scope="module")
def kv_cluster(tmp_path_factory: pytest.TempPathFactory):
    from clusterkit.net.local import LocalCluster

    with LocalCluster(tmp_path_factory.mktemp("readme") / "c", size=3, kv=True,
                      extra_args=["--log-level", "WARNING"]) as c:
        c.start_all()

        c.wait(c.kv_settled, 30, "the KV store on every node")
        yield c


def _on(cluster, text: str) -> str:
    """The README's commands, pointed at the test cluster's nodes instead of ports 8080-8082."""
    for i, port in enumerate((8080, 8081, 8082), start=1):
        text = text.replace(f"localhost:{port}", cluster.nodes[f"node-{i}"].http)
    return text


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_if_none_match_example_answers_304_as_written(kv_cluster) -> None:
    """It sent a made-up ETag ("clusterkit-cluster-5"), which a fresh cluster never had: 200."""
    lines = [line for line in TEXT.splitlines() if line.startswith(("etag=$(curl", 'curl -H "If-None-Match'))]
    assert len(lines) == 2
    done = subprocess.run(["bash", "-c", _on(kv_cluster, "\n".join(lines))], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[1] == "304", done.stdout


def test_the_sdk_example_runs_as_written_its_async_part_too(kv_cluster) -> None:
    """The async example defined main() and never called it."""
    (block,) = [b for b in re.findall(r"```py\n(.*?)```", TEXT, flags=re.S) if "KVClient(" in b]
    exec(compile(_on(kv_cluster, block), str(README), "exec"), {"__name__": "readme_example"})
    from clusterkit.net.kv_client import BlockingKVClient

    with BlockingKVClient([kv_cluster.nodes["node-1"].http]) as kv:
        assert kv.get("user:124") == "Jane"  # written by main()
        assert kv.get("user:123") is None  # set, then deleted
