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
    ],
)
def test_bad_node_config_is_one_line_and_exit_2(tmp_path, args, env, message):
    clean = {k: v for k, v in os.environ.items() if k not in ("NODE_ID", "HTTP_ADDR", "JOIN_ADDR", "BOOTSTRAP")}
    out = subprocess.run([sys.executable, "-m", "clusterkit", "node", "--data-dir", str(tmp_path / "d"), *args],
                         capture_output=True, text=True, env={**clean, **env}, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created
