"""`clusterkit node` refuses a bad command line or config with one line, before starting anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "--node-id (NODE_ID) and --http-addr (HTTP_ADDR or HTTP_PORT) are required"),
        ([], {"NODE_ID": "n1", "HTTP_PORT": "abc"}, "HTTP_PORT='abc' is not a port: expected a whole number from 1"),
        ([], {"NODE_ID": "n1", "HTTP_PORT": "70000"}, "HTTP_PORT='70000' is not a port"),
        ([], {"NODE_ID": "n1", "HTTP_PORT": "0"}, "HTTP_PORT='0' is not a port"),
        ([], {"NODE_ID": "n1", "HTTP_PORT": "８０８０"}, "is not a port"),  # (digits, but not ASCII ones)
        ([], {"NODE_ID": "n1", "HTTP_PORT": "8080", "KV_PORT": "-1"}, "KV_PORT='-1' is not a port"),
        ([], {"NODE_ID": "n1", "HTTP_ADDR": ":8080", "HTTP_PORT": "8081"},
         "HTTP_ADDR=:8080 and HTTP_PORT=8081 disagree"),
        ([], {"NODE_ID": "n1", "HTTP_PORT": "8080", "KV_ADDR": ":9080", "KV_PORT": "9081"}, "disagree"),
        (["--node-id", "n1", "--http-addr", "localhost"], {}, "host:port"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080", "--tick", "0"], {}, "at least 0.001"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080", "--bootstrap", "maybe"], {}, "true or false"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080", "--tls-cert", "c.pem"], {}, "go together"),
        (["--http-addr", "127.0.0.1:8080"], {"NODE_ID": "n1", "PARTITION_COUNT": "0"}, "expected a number >= 1"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080"], {"BOOTSTRAP": "maybe"}, "true or false, got 'maybe'"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080"], {"LOG_LEVEL": "loud"}, "got 'loud'"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080", "--log-level", "chatty"], {}, "got 'chatty'"),
        (["--node-id", "n1", "--http-addr", "127.0.0.1:8080", "--no-such-flag"], {}, "unrecognized arguments"),
    ],
)
def test_bad_node_config_is_one_line_and_exit_2(tmp_path, args, env, message):
    out = subprocess.run([sys.executable, "-m", "clusterkit", "node", "--data-dir", str(tmp_path / "d"), *args],
                         capture_output=True, text=True, env={**_clean_env(), **env}, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    # one line, argparse's shape, without the 30 lines of usage before it
    # (an unknown flag is the top-level parser's: `clusterkit: error: unrecognized arguments: ...`)
    assert out.stderr.splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith(("clusterkit node: error: ", "clusterkit: error: "))
    assert not (tmp_path / "d").exists()  # refused before anything was created


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("NODE_ID", "HTTP_ADDR", "HTTP_PORT", "KV_ADDR", "KV_PORT", "JOIN_ADDR", "BOOTSTRAP",
                         "LOG_LEVEL", "PARTITION_COUNT")}


@pytest.mark.parametrize("command", [["--version"], ["partitions", "key", "user:1"], ["node", "--help"]])
def test_a_bad_node_env_value_breaks_no_other_command(command: list[str]) -> None:
    """BOOTSTRAP is read only by `clusterkit node`, and only when it runs: it was parsed while the
    parser was built, so `BOOTSTRAP=maybe clusterkit --version` was a traceback."""
    env = {**_clean_env(), "BOOTSTRAP": "maybe", "LOG_LEVEL": "loud", "PARTITION_COUNT": "x", "HTTP_PORT": "abc"}
    out = subprocess.run([sys.executable, "-m", "clusterkit", *command], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Info", "INFO"), ("warn", "WARNING"),
                                              ("error", "ERROR"), ("CRITICAL", "CRITICAL")])
def test_a_log_level_is_taken_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    from clusterkit.cli import build_parser

    monkeypatch.setenv("LOG_LEVEL", given)
    assert build_parser().parse_args(["node"]).log_level == level
    monkeypatch.delenv("LOG_LEVEL")
    assert build_parser().parse_args(["node", "--log-level", given]).log_level == level
    assert build_parser().parse_args(["node"]).log_level == "INFO"


def test_bootstrap_from_the_env_is_read_when_the_node_command_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterkit.cli import build_parser

    for text, value in (("true", True), ("0", False), ("", None)):
        monkeypatch.setenv("BOOTSTRAP", text)
        assert build_parser().parse_args(["node"]).bootstrap is value


@pytest.mark.parametrize(("env", "given", "expected"), [
    ({}, None, None),
    ({"HTTP_PORT": "8080"}, None, ":8080"),
    ({"HTTP_PORT": " 08081 "}, None, ":8081"),
    ({"HTTP_ADDR": "127.0.0.1:8080", "HTTP_PORT": "8080"}, "127.0.0.1:8080", "127.0.0.1:8080"),  # they agree
    ({"HTTP_ADDR": ":8080", "HTTP_PORT": "8081"}, "10.0.0.1:7000", "10.0.0.1:7000"),  # a flag overrides both
])
def test_http_port_is_read_as_the_seed_means_it(env: dict[str, str], given: str | None, expected: str | None) -> None:
    from clusterkit.cli.node import seed_addr

    assert seed_addr(given, env, "HTTP_ADDR", "HTTP_PORT", 1) == expected


def test_the_seeds_kv_example_command_starts_a_node_as_the_seed_means_it(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``NODE_ID=node-2 HTTP_PORT=8081 KV_PORT=9081 JOIN_ADDR=localhost:8080``, as the seed's SYNC and
    ASYNC examples start their servers: what the node would serve (nothing is bound here)."""
    import clusterkit.net.runner as runner
    from clusterkit.cli import main

    started = []

    async def serve(options, config, **kwargs):  # type: ignore[no-untyped-def]
        started.append((options, kwargs["kv"]))

    monkeypatch.setattr(runner, "serve", serve)
    for name in ("HTTP_ADDR", "KV_ADDR", "RAFT_ADDR", "BOOTSTRAP", "NODE_NAME"):
        monkeypatch.delenv(name, raising=False)
    for nid, http, kv, join in (("node-1", "8080", "9080", ""), ("node-2", "8081", "9081", "localhost:8080")):
        for name, value in (("NODE_ID", nid), ("HTTP_PORT", http), ("KV_PORT", kv), ("JOIN_ADDR", join),
                            ("DATA_DIR", str(tmp_path / nid))):
            monkeypatch.setenv(name, value)
        assert main(["node"]) == 0
        options, kv_options = started.pop()
        assert (options.node_id, options.http_addr, kv_options.addr) == (nid, f":{http}", f":{kv}")
        assert options.bootstrap is (join == "") and options.join_addr == join

