"""The Dockerfile and docker-compose.yml, checked without a Docker daemon.

The compose file is parsed (PyYAML, a test extra) and every service is held to what
``clusterkit node`` accepts: only the seed's variables (``clusterkit.cli.node.ENV``), values the
node's own parser and Options take, addresses that line up (HTTP_ADDR's port is the published
port, JOIN_ADDR is node-1's HTTP address, one bootstrapper), the same cluster shape everywhere (a
node of another shape is refused at join), a data volume on DATA_DIR, and a /health healthcheck.
The healthcheck commands of both files are run for real against a node on loopback: they must
pass on a healthy node and fail when nothing answers.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import yaml  # noqa: E402 - a test extra (pyyaml): the compose file is YAML

from clusterkit.cli.main import build_parser  # noqa: E402
from clusterkit.cli.node import ENV, _bool  # noqa: E402
from clusterkit.facade import Options  # noqa: E402
from clusterkit.net.local import LocalCluster, free_port  # noqa: E402

from .test_packaging import BUILD_FILES, FOLDERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# The nodes; "credentials" is the one-shot service that makes their secret and API token.
SERVICES: dict[str, dict[str, Any]] = {k: v for k, v in COMPOSE["services"].items() if k != "credentials"}
CREDENTIALS = COMPOSE["services"]["credentials"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service]["environment"]
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def _published(service: str) -> list[tuple[int, int]]:
    """(host port, container port) pairs of the short ``"8080:8080"`` form."""
    out = []
    for item in SERVICES[service].get("ports", []):
        parts = str(item).split(":")
        out.append((int(parts[-2]), int(parts[-1].split("/")[0])))
    return out


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _one(instruction: str) -> str:
    found = [rest for word, rest in _dockerfile_instructions() if word == instruction]
    assert len(found) == 1, f"{instruction}: {found}"
    return found[0]


# ---------------------------------------------------------------- docker-compose.yml
def test_three_nodes() -> None:
    assert sorted(SERVICES) == ["node-1", "node-2", "node-3"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_node_reads_the_secret_and_token_the_credentials_service_made(service: str) -> None:
    env = _env(service)
    assert env["CLUSTER_SECRET_FILE"] == "/credentials/cluster-secret"
    assert env["API_TOKEN_FILE"] == "/credentials/api-token"
    assert "credentials:/credentials:ro" in SERVICES[service]["volumes"]
    assert SERVICES[service]["depends_on"]["credentials"]["condition"] == "service_completed_successfully"
    assert "credentials:/credentials" in CREDENTIALS["volumes"] and "credentials" in COMPOSE["volumes"]


def test_the_credentials_service_makes_them_once_and_the_node_accepts_them(tmp_path: Path) -> None:
    from clusterkit.net.auth import read_token
    from clusterkit.net.runner import read_secret

    entry = CREDENTIALS["entrypoint"]
    assert entry[:2] == ["python", "-c"]

    def run() -> None:
        subprocess.run([sys.executable, "-c", entry[2]], env={"CREDENTIALS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                       check=True, capture_output=True, timeout=30)

    run()
    secret, token = read_secret(str(tmp_path / "cluster-secret")), read_token(str(tmp_path / "api-token"))
    assert secret != token.encode() and len(token) == 64
    run()  # a restart keeps them
    assert read_secret(str(tmp_path / "cluster-secret")) == secret
    assert read_token(str(tmp_path / "api-token")) == token


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_variable_is_one_clusterkit_node_reads(service: str) -> None:
    env = _env(service)
    assert set(env) <= set(ENV.values()), set(env) - set(ENV.values())
    assert {"NODE_ID", "HTTP_ADDR", "RAFT_ADDR", "DATA_DIR"} <= set(env)
    assert env["NODE_ID"] == service == SERVICES[service].get("hostname", service)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_clusterkit_node_takes_each_services_environment(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's parser reads its defaults from the environment: give it the service's, as the container does."""
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    for name, value in _env(service).items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["node"])
    options = Options(
        node_id=args.node_id, http_addr=args.http_addr, node_name=args.node_name, raft_addr=args.raft_addr,
        join_addr=args.join_addr, bootstrap=args.bootstrap, data_dir=args.data_dir, cluster_name=args.cluster_name,
        partition_count=int(args.partition_count), replication_factor=int(args.replication_factor),
    ).resolved()
    assert options.node_id == service
    assert options.bootstrap is (service == "node-1")


def test_one_bootstrapper_and_everyone_else_joins_through_node_1s_http_address() -> None:
    first = _env("node-1")
    assert _bool(first["BOOTSTRAP"]) and not first.get("JOIN_ADDR")
    for service in ("node-2", "node-3"):
        env = _env(service)
        assert not _bool(env.get("BOOTSTRAP", "false"))
        assert env["JOIN_ADDR"] == first["HTTP_ADDR"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_addresses_are_reachable_names_and_the_http_port_is_published_as_itself(service: str) -> None:
    env = _env(service)
    http_host, http_port = _split(env["HTTP_ADDR"])
    raft_host, raft_port = _split(env["RAFT_ADDR"])
    # Not ":8080" nor 127.0.0.1: the other containers forward to and dial these very addresses.
    assert http_host == raft_host == service
    assert (http_port, http_port) in _published(service)
    assert raft_port != http_port


def test_ports_are_8080_to_8082_and_no_two_nodes_share_one() -> None:
    http = sorted(_split(_env(s)["HTTP_ADDR"])[1] for s in SERVICES)
    raft = [_split(_env(s)["RAFT_ADDR"])[1] for s in SERVICES]
    assert http == [8080, 8081, 8082]
    assert len(set(raft)) == 3 and not set(raft) & set(http)
    published = [host for s in SERVICES for host, _ in _published(s)]
    assert sorted(published) == [8080, 8081, 8082]


def test_every_node_has_the_same_cluster_shape() -> None:
    """A node whose name, partition count or replication factor differs is refused when it joins."""
    for name in ("CLUSTER_NAME", "PARTITION_COUNT", "REPLICATION_FACTOR"):
        assert len({_env(s).get(name) for s in SERVICES}) == 1, name


def test_each_node_keeps_its_data_dir_on_a_volume_of_its_own() -> None:
    sources = []
    for service in SERVICES:
        data_dir = _env(service)["DATA_DIR"]
        mounts = [str(v).split(":") for v in SERVICES[service]["volumes"]]
        (source,) = [m[0] for m in mounts if m[1] == data_dir]
        assert source in COMPOSE["volumes"], f"{source} is not a named volume"
        sources.append(source)
    assert len(set(sources)) == len(sources)


def test_nodes_2_and_3_wait_for_node_1_to_be_healthy() -> None:
    for service in ("node-2", "node-3"):
        assert SERVICES[service]["depends_on"]["node-1"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_healthcheck_asks_for_health(service: str) -> None:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD" and "/health" in " ".join(test)


# ---------------------------------------------------------------- Dockerfile
def test_the_image_is_python_3_11_slim() -> None:
    assert _one("FROM") == "python:3.11-slim"


def test_the_entrypoint_runs_clusterkit_node() -> None:
    assert json.loads(_one("ENTRYPOINT")) == ["clusterkit", "node"]


def test_the_healthcheck_asks_for_health() -> None:
    options, _, command = _one("HEALTHCHECK").partition("CMD ")
    assert "/health" in command
    assert json.loads(command)[0] == "python"  # the slim image has no curl


def test_the_image_installs_the_package_from_everything_a_wheel_is_built_from() -> None:
    """The same files tests/test_packaging.py builds a wheel from, and nothing .dockerignore drops."""
    copied = set()
    for rest in (rest for word, rest in _dockerfile_instructions() if word == "COPY"):
        copied.update(shlex.split(rest)[:-1])
    assert set(BUILD_FILES) | set(FOLDERS) <= copied
    assert any(word == "RUN" and re.search(r"\bpip install \.(\s|$)", rest) for word, rest in _dockerfile_instructions())
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not ignored & copied
    assert "clusterkit = clusterkit.cli:main" in (ROOT / "setup.cfg").read_text()  # the entrypoint's command


# ---------------------------------------------------------------- the healthchecks, run
def _python_healthcheck(argv: list[str]) -> str:
    assert argv[:2] == ["python", "-c"]
    return argv[2]


def _run_check(code: str, http_addr: str) -> int:
    return subprocess.run([sys.executable, "-c", code], env={"HTTP_ADDR": http_addr, "PATH": "/usr/bin:/bin"},
                          capture_output=True, timeout=30).returncode


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory):
    with LocalCluster(tmp_path_factory.mktemp("health") / "c", size=1) as c:
        c.start_all()
        yield c.nodes["node-1"]


@pytest.mark.parametrize("where", ["compose", "Dockerfile"])
def test_the_healthchecks_pass_on_a_live_node_and_fail_on_a_dead_port(one_node: Any, where: str) -> None:
    if where == "compose":
        code = _python_healthcheck(SERVICES["node-1"]["healthcheck"]["test"][1:])
    else:
        code = _python_healthcheck(json.loads(_one("HEALTHCHECK").partition("CMD ")[2]))
    assert _run_check(code, one_node.http) == 0
    assert _run_check(code, f":{one_node.http_port}") == 0  # ":8080", the image's default: this container
    assert _run_check(code, f"127.0.0.1:{free_port()}") != 0
