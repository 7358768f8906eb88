"""`clusterkit node` refuses a bad command line or config with one line, before starting anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "--node-id (NODE_ID) and --http-addr (HTTP_ADDR) are required"),
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
            if k not in ("NODE_ID", "HTTP_ADDR", "JOIN_ADDR", "BOOTSTRAP", "LOG_LEVEL", "PARTITION_COUNT")}


@pytest.mark.parametrize("command", [["--version"], ["partitions", "key", "user:1"], ["node", "--help"]])
def test_a_bad_node_env_value_breaks_no_other_command(command: list[str]) -> None:
    """BOOTSTRAP is read only by `clusterkit node`, and only when it runs: it was parsed while the
    parser was built, so `BOOTSTRAP=maybe clusterkit --version` was a traceback."""
    env = {**_clean_env(), "BOOTSTRAP": "maybe", "LOG_LEVEL": "loud", "PARTITION_COUNT": "x"}
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
