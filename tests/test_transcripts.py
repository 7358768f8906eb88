"""Golden transcripts (tests/testdata/*.txt): scripted Raft and cluster-state steps with their
expected output. ``pytest tests/test_transcripts.py --rewrite`` (or ``CLUSTERKIT_REWRITE=1``)
regenerates them; the driver and the commands are in tests/transcripts.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .transcripts import Env, ScriptError, parse, render, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def rewriting(config: pytest.Config) -> bool:
    return bool(config.getoption("--rewrite", default=False)) or os.environ.get("CLUSTERKIT_REWRITE") == "1"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path, request: pytest.FixtureRequest) -> None:
    diff = run_file(path, rewrite=rewriting(request.config))
    if diff:
        pytest.fail(f"{path.name} differs from what the commands print now "
                    f"(rerun with --rewrite to accept, then review the diff):\n{diff}", pytrace=False)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 10


def test_parse_and_render_round_trip() -> None:
    text = "# comment\n\nstatus 1\n----\nok\n\n# tail\n"
    blocks, trailer = parse(text)
    assert [b.command for b in blocks] == ["status 1"] and blocks[0].expected == "ok"
    assert render(blocks, trailer) == text


def test_a_changed_output_shows_a_unified_diff(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("add-nodes 1 voters=(1)\n----\n1: term:5 voters:(1)\n")
    diff = run_file(path)
    assert diff is not None
    assert "-1: term:5 voters:(1)" in diff and "+1: term:0 voters:(1)" in diff
    run_file(path, rewrite=True)
    assert path.read_text() == "add-nodes 1 voters=(1)\n----\n1: term:0 voters:(1)\n"
    assert run_file(path) is None


def test_a_malformed_command_is_a_script_error_not_output() -> None:
    env = Env()
    with pytest.raises(ScriptError):
        env.run("no-such-command 1")
    with pytest.raises(ScriptError):
        env.run("status 9")
