"""docs/security.md's "Trying it" block runs as written: two real nodes with a secret and an API
token, an open route answered, a data route refused without the token and served with it
(forwarded from a follower to the leader). Run by bash in a temporary directory, on free ports in
place of 8080/8081/9001/9002, in a process group of its own that is killed whatever happens."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit.net.local import free_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"
BLOCK = re.search(r"## Trying it.*?```bash\n(.*?)```", DOC.read_text(), flags=re.S)

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                                reason="the block uses bash and curl")


def test_the_security_doc_block_runs_as_written(tmp_path: Path) -> None:
    assert BLOCK is not None
    script = BLOCK.group(1).replace(".venv/bin/clusterkit", f"{sys.executable} -m clusterkit")
    for port in ("8080", "8081", "9001", "9002"):
        script = script.replace(port, str(free_port()))
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k not in ("JOIN_ADDR", "BOOTSTRAP")})
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the nodes, if the block did not get to its kill
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    assert '"node-1"' in out  # /nodes, open
    assert '"error": "a credential is required' in out
    assert '"ok": true' in out and '"value": "v1"' in out, out
    assert (tmp_path / "api-token").stat().st_mode & 0o077 == 0
