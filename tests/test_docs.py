"""Every example in README.md and docs/*.md runs as written (the rules are in CONTRIBUTING.md).

- A ```python block is exec'd in a fresh namespace, in a temporary working directory.
- A ```bash block is run by `bash -e` in a temporary directory of its own (with `bench/` and
  `scenarios/` linked in), `.venv/bin/clusterkit` and `.venv/bin/python` being this interpreter, the
  ports the docs use (8080-8099, 9001-9020, 9080-9099) moved together to a free range, in a process
  group of its own that is killed afterwards whatever happens, so a node it started can't outlive
  it. It passes when bash exits 0.
- A block whose first line is ``# not run: REASON`` is not run; the reason is required.
- A block whose first line starts with ``# needs a running cluster`` runs against three real
  nodes with the KV store that the tests start (a secret and an API token, the token in
  ``api-token`` in the working directory and in ``$AUTH``), localhost:8080-8082 and :9080-9082
  pointing at their HTTP and KV ports.
- A ```toml block is a scenario file and must load as one.

Every relative link must point at a file that exists, and every #anchor at a heading there.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXTS = {page: page.read_text() for page in PAGES}
ALL_TEXT = "\n".join(TEXTS.values())

SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
NOT_CODE = {"", "text", "toml", "json"}
NOT_RUN = re.compile(r"# not run: \S")
NEEDS_KV = "# needs a running cluster"
TIMEOUT = 120  # seconds: a guard against a hang, never a measure; the blocks take a few seconds each

# Environment a node reads: a block gets none of it from whoever runs the tests.
NODE_ENV = {"NODE_ID", "NODE_NAME", "HTTP_ADDR", "RAFT_ADDR", "JOIN_ADDR", "BOOTSTRAP", "DATA_DIR",
            "CLUSTER_NAME", "PARTITION_COUNT", "REPLICATION_FACTOR", "KV_ADDR", "KV_PORT", "KV_STRATEGY",
            "KV_W", "KV_R", "KV_GC_SECONDS", "CLUSTER_SECRET_FILE", "API_TOKEN_FILE", "ALLOW_REMOTE_PEERS",
            "AUTH", "HTTP_PORT"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the block's first code line
    lang: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def first(self) -> str:
        return self.code.split("\n", 1)[0]


FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)``` *$", re.M | re.S)


def blocks(page: Path) -> list[Block]:
    text = TEXTS[page]
    found = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        code = "".join(line[indent:] if line.startswith(m["indent"]) else line.lstrip(" ")
                       for line in m["body"].splitlines(keepends=True))
        found.append(Block(page, text.count("\n", 0, m.start("body")) + 1, m["lang"], code))
    return found


BLOCKS = [b for page in PAGES for b in blocks(page)]
PY_BLOCKS = [b for b in BLOCKS if b.lang in PYTHON and not NOT_RUN.match(b.first)]
SH_BLOCKS = [b for b in BLOCKS if b.lang in SHELL and not NOT_RUN.match(b.first)]


def ids(bs: list[Block]) -> list[str]:
    return [b.name for b in bs]


# ---------------------------------------------------------------- the blocks are what they say
def test_there_are_examples_everywhere() -> None:
    assert len(PY_BLOCKS) >= 10 and len(SH_BLOCKS) >= 10
    assert {b.page for b in PY_BLOCKS + SH_BLOCKS} >= {ROOT / "README.md", ROOT / "docs" / "security.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=ids(BLOCKS))
def test_every_block_is_code_we_run_or_says_why_not(block: Block) -> None:
    assert block.lang in SHELL | PYTHON | NOT_CODE, f"{block.name}: unknown fence ```{block.lang}"
    if block.first.startswith("# not run"):
        assert NOT_RUN.match(block.first), f"{block.name}: `# not run: REASON` needs its reason"
        assert block.lang in SHELL | PYTHON, f"{block.name}: only code is run or not run"


# ---------------------------------------------------------------- python
def _exec(block: Block, code: str) -> None:
    exec(compile("\n" * (block.line - 1) + code, block.name, "exec"), {"__name__": "doc_example"})


@pytest.mark.parametrize("block", [b for b in PY_BLOCKS if not b.first.startswith(NEEDS_KV)],
                         ids=ids([b for b in PY_BLOCKS if not b.first.startswith(NEEDS_KV)]))
def test_python_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _exec(block, block.code)


# ---------------------------------------------------------------- shell
PY = shlex.quote(sys.executable)
DOC_PORTS = [*range(8080, 8100), *range(9001, 9021), *range(9080, 9100)]
VENV = re.compile(r"(?<![\w/])\.venv/bin/(clusterkit|python)\b")
PORT = re.compile(r"(?<![\d.])(\d{4})(?!\d)")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_range(n: int = len(DOC_PORTS)) -> int:
    """A first port of n free ones in a row (`cluster up --base-port` needs them contiguous)."""
    from clusterkit.net.local import free_port

    for _ in range(100):
        base = free_port() // 100 * 100
        if base >= 10_000 and base + n < 65_000 and all(_bindable(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free range of ports")


def _rewrite(code: str, ports: dict[int, int], hosts: dict[str, str] | None = None) -> str:
    for host, real in (hosts or {}).items():
        code = code.replace(host, real)
    code = VENV.sub(lambda m: f"{PY} -m clusterkit" if m[1] == "clusterkit" else PY, code)
    return PORT.sub(lambda m: str(ports.get(int(m[1]), m[1])), code)


def run_shell(script: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    for name in ("bench", "scenarios"):
        if not (cwd / name).exists():
            (cwd / name).symlink_to(ROOT / name)
    out_path = cwd.parent / f"{cwd.name}.out"
    environ = {k: v for k, v in os.environ.items() if k not in NODE_ENV} | (env or {})
    with out_path.open("w") as out:
        # Output to a file, not a pipe: a node left running in the background would hold a pipe open.
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True, env=environ)
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = -1
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it started and left running
            except ProcessLookupError:
                pass
            proc.wait()
    return rc, out_path.read_text(errors="replace")


def _owner_only(cwd: Path) -> bool:
    """the api-token file is readable by its owner only"""
    return (cwd / "api-token").stat().st_mode & 0o077 == 0


# What some blocks must print, beyond exiting 0: a distinctive line of the block -> checks.
EXPECT = {
    # docs/security.md: an open route answered, a data route refused without the token, served with it
    "curl -s localhost:8081/nodes": ['"node-1"', '"error": "a credential is required', '"ok": true',
                                     '"value": "v1"', _owner_only],
    # the ETag example: a fresh cluster's own ETag, so the answer is a 304
    'curl -H "If-None-Match: $etag"': ["HTTP/1.1 304"],
}


def check_output(block: Block, rc: int, out: str, cwd: Path) -> None:
    assert rc == 0, f"{block.name} exited {rc}:\n{out[-4000:]}"
    for line, wanted in EXPECT.items():
        if line in block.code:
            for check in wanted:
                if callable(check):
                    assert check(cwd), f"{block.name}: {check.__doc__}"
                else:
                    assert check in out, f"{block.name}: no {check!r} in\n{out[-4000:]}"


def test_every_expectation_has_its_block() -> None:
    for line in EXPECT:
        assert sum(line in b.code for b in SH_BLOCKS) == 1, line


@pytest.mark.parametrize("block", [b for b in SH_BLOCKS if not b.first.startswith(NEEDS_KV)],
                         ids=ids([b for b in SH_BLOCKS if not b.first.startswith(NEEDS_KV)]))
def test_shell_example_runs(block: Block, tmp_path: Path) -> None:
    base = free_range()
    ports = {p: base + i for i, p in enumerate(DOC_PORTS)}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    rc, out = run_shell(_rewrite(block.code, ports), cwd)
    check_output(block, rc, out, cwd)


# ---------------------------------------------------------------- against a running KV cluster
NEEDS_BLOCKS = [b for b in PY_BLOCKS + SH_BLOCKS if b.first.startswith(NEEDS_KV)]


@pytest.fixture(scope="module")
def kv_cluster(tmp_path_factory: pytest.TempPathFactory):
    from clusterkit.net.local import LocalCluster

    with LocalCluster(tmp_path_factory.mktemp("docs") / "c", size=3, kv=True, secure=True,
                      extra_args=["--log-level", "WARNING"]) as c:
        c.start_all()
        c.wait(c.kv_settled, 30, "the KV store on every node")
        yield c


@pytest.mark.parametrize("block", NEEDS_BLOCKS, ids=ids(NEEDS_BLOCKS))
def test_example_runs_against_a_kv_cluster(block: Block, kv_cluster, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [kv_cluster.nodes[f"node-{i}"] for i in (1, 2, 3)]
    hosts = {f"localhost:{8080 + i}": n.http for i, n in enumerate(nodes)}
    hosts |= {f"localhost:{9080 + i}": f"127.0.0.1:{n.kv_port}" for i, n in enumerate(nodes)}
    (tmp_path / "api-token").write_text(kv_cluster.token + "\n")
    if block.lang in PYTHON:
        monkeypatch.chdir(tmp_path)
        _exec(block, _rewrite(block.code, {}, hosts))
        if "user:124" in block.code:  # what the SDK example says it leaves behind
            assert kv_cluster.get("node-2", "/kv/get?key=user:124")[1]["value"] == "Jane"
            assert kv_cluster.get("node-2", "/kv/get?key=user:123")[0] == 404
        return
    rc, out = run_shell(_rewrite(block.code, {}, hosts), tmp_path,
                        {"AUTH": f"Authorization: Bearer {kv_cluster.token}"})
    check_output(block, rc, out, tmp_path)


# ---------------------------------------------------------------- scenario files
TOML_BLOCKS = [b for b in BLOCKS if b.lang == "toml"]


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=ids(TOML_BLOCKS))
def test_a_scenario_example_loads(block: Block) -> None:
    from clusterkit.sim.scenario import Scenario

    Scenario.from_dict(tomllib.loads(block.code))


# ---------------------------------------------------------------- links
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _prose(TEXTS.get(page) or page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_points_at_something_that_exists(page: Path) -> None:
    bad = []
    for target in LINK.findall(_prose(TEXTS[page])):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or ROOT not in (dest, *dest.parents):
            bad.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert bad == []


# ---------------------------------------------------------------- statements that must stay true
def test_no_scenario_count_is_written_down() -> None:
    """It said 13 while scenarios/ held 19: a number that rots is checked, or not written."""
    count = len(list((ROOT / "scenarios").glob("*.toml")))
    assert [int(n) for n in re.findall(r"\b(\d+) scenarios\b", ALL_TEXT) if int(n) != count] == []


def test_no_link_points_outside_the_repository() -> None:
    """../shared/ sits beside the checkout where this was written, not in the repository."""
    assert "../shared" not in ALL_TEXT


def test_the_seeds_http_port_is_explained() -> None:
    assert "`HTTP_PORT`: give `HTTP_ADDR=:8080` instead" in " ".join(ALL_TEXT.split())
