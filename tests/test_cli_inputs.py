"""Bad or odd input to the commands: one line on stderr and a documented exit code, never a
traceback and never a silent pass; bounds refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit.cli import check as cli_check
from clusterkit.cli import main
from clusterkit.cli.codes import EXIT_BAD_INPUT, EXIT_UNKNOWN, EXIT_USAGE
from clusterkit.cli.demo import MAX_NODES, MAX_STEPS, MIN_NODES
from clusterkit.cli.partitions import MAX_PARTITIONS, MAX_PLAN_NODES, MAX_REPLICATION_FACTOR
from clusterkit.partitioning.hashing import HashConfig


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ partitions plan --from
def test_plan_from_a_map_with_an_owner_twice_is_bad_input(tmp_path: Path, capsys) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"partition-0": ["a", "a"], "partition-1": ["a", "b"]}))
    code = main(["partitions", "plan", "--nodes", "a,b", "--count", "2", "--rf", "2", "--from", str(path)])
    out = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert out.out == ""
    line = _one_error_line(out.err)
    assert line.startswith("clusterkit partitions plan: error:")
    assert f"{path}: partition-0 lists 'a' twice" in line


def test_plan_from_the_json_shape_with_a_replica_that_is_the_primary(tmp_path: Path, capsys) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"partitions": {"partition-0": {"primary": "a", "replicas": ["b", "a"]}}}))
    code = main(["partitions", "plan", "--nodes", "a,b", "--count", "1", "--from", str(path)])
    assert code == EXIT_BAD_INPUT
    assert "partition-0 lists 'a' twice" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ partitions key
def _key(*argv: str | bytes) -> subprocess.CompletedProcess:
    # bytes in argv reach the child as they are, as a shell passes a key that isn't UTF-8
    return subprocess.run(
        [sys.executable, "-m", "clusterkit", "partitions", "key", *argv], capture_output=True, timeout=60
    )


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"user:\xe9", b"\xc3"])
def test_a_key_that_is_not_utf8_hashes_as_its_raw_bytes(raw: bytes) -> None:
    for extra, cfg in (((), HashConfig()), (("--count", "64", "--hash", "fnv1a"), HashConfig("fnv1a", 64))):
        done = _key(raw, *extra)
        assert done.returncode == 0, done.stderr
        assert done.stderr == b""
        assert done.stdout.decode().strip() == cfg.partition(raw)


def test_a_utf8_key_hashes_as_before() -> None:
    for key in ("user:123", "ключ", "🔑"):
        done = _key(key.encode(), "--count", "64")
        assert done.stdout.decode().strip() == HashConfig(modulo=64).partition(key)


# ------------------------------------------------------------------ check linearizability
@pytest.mark.parametrize(
    ("name", "content", "extra"),
    [
        ("empty.log", "", []),
        ("empty.jsonl", "\n\n", []),
        ("empty.edn", "", []),
        ("notes.txt", "hello world\nno history here\n", ["--format", "jepsen-log"]),
        ("nemesis.log", "INFO jepsen.util - :nemesis :info :start nil\n", []),
    ],
)
def test_a_history_with_no_operations_is_bad_input_not_a_pass(tmp_path: Path, capsys, name, content, extra) -> None:
    path = tmp_path / name
    path.write_text(content)
    code = main(["check", "linearizability", str(path), *extra])
    out = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert "linearizable" not in out.out
    line = _one_error_line(out.err)
    assert str(path) in line and "no operations found" in line


def test_no_operations_in_one_file_fails_the_whole_run(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n'
                    '{"process": 0, "type": "ok", "f": "write", "value": 1}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["check", "linearizability", str(good), str(empty)]) == EXIT_BAD_INPUT
    out = capsys.readouterr().out
    assert "good.jsonl: linearizable (register, 1 op," in out  # one op, not "1 ops"


@pytest.mark.parametrize("budget", ["-1", "0", "nan", "inf", "-inf", "NaN", "1e400", "soon"])
def test_a_budget_that_is_not_a_finite_positive_number_is_a_usage_error(tmp_path: Path, capsys, budget) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["check", "linearizability", str(path), f"--budget={budget}"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "argument --budget:" in err and "Traceback" not in err


def _hard_history(writers: int = 18, kv: bool = False) -> str:
    """Concurrent writes and a read of a value never written: every subset of writes must be tried."""
    write, read, key = ("put", "get", ', "key": "k7"') if kv else ("write", "read", "")

    def line(p: int, type_: str, f: str, value: object) -> str:
        return f'{{"process": {p}, "type": "{type_}", "f": "{f}"{key}, "value": {json.dumps(value)}}}'

    lines = [line(p, "invoke", write, str(p) if kv else p) for p in range(writers)]
    lines.append(line(writers, "invoke", read, None))
    lines += [line(p, "ok", write, str(p) if kv else p) for p in range(writers)]
    lines.append(line(writers, "ok", read, "-1" if kv else -1))
    return "\n".join(lines)


def test_a_budget_run_out_on_a_register_names_no_key(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "hard.jsonl"
    path.write_text(_hard_history())
    ticks = iter(range(10**9))
    monkeypatch.setattr(cli_check, "clock", lambda: next(ticks) * 100.0)  # the budget runs out at once
    assert main(["check", "linearizability", str(path), "--budget", "5"]) == EXIT_UNKNOWN
    out = capsys.readouterr().out
    assert "unknown: time budget exhausted" in out
    assert "key None" not in out and "(key" not in out


def test_a_budget_run_out_on_a_kv_history_names_the_key(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "hard.jsonl"
    path.write_text(_hard_history(kv=True))
    ticks = iter(range(10**9))
    monkeypatch.setattr(cli_check, "clock", lambda: next(ticks) * 100.0)
    assert main(["check", "linearizability", str(path), "--budget", "5", "--model", "kv"]) == EXIT_UNKNOWN
    assert "unknown: time budget exhausted (key 'k7')" in capsys.readouterr().out


# ------------------------------------------------------------------ bounds
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["partitions", "plan", "--nodes", "a", "--count", str(MAX_PARTITIONS + 1)], f"<= {MAX_PARTITIONS}"),
        (["partitions", "plan", "--nodes", "a", "--count", "10000000"], f"<= {MAX_PARTITIONS}"),
        (["partitions", "plan", "--nodes", "a", "--rf", str(MAX_REPLICATION_FACTOR + 1)], f"<= {MAX_REPLICATION_FACTOR}"),
        (["partitions", "plan", "--nodes", ",".join(f"n{i}" for i in range(MAX_PLAN_NODES + 1))],
         f"at most {MAX_PLAN_NODES} node ids"),
        (["partitions", "key", "x", "--count", "99999999999999999999999"], f"<= {MAX_PARTITIONS}"),
        (["partitions", "key", "x", "--count", str(MAX_PARTITIONS + 1)], f"<= {MAX_PARTITIONS}"),
        (["demo", "--nodes", "100000"], f"<= {MAX_NODES}"),
        (["demo", "--nodes", str(MAX_NODES + 1)], f"<= {MAX_NODES}"),
        (["demo", "--nodes", "1"], f">= {MIN_NODES}"),
        (["demo", "--nodes", "2"], f">= {MIN_NODES}"),
        (["demo", "--steps", str(MAX_STEPS + 1)], f"<= {MAX_STEPS}"),
        (["demo", "--steps", "0"], ">= 1"),
    ],
)
def test_sizes_beyond_the_bounds_are_usage_errors_before_any_work(capsys, monkeypatch, argv, message) -> None:
    from clusterkit.cli import demo, partitions

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started for a refused command line")

    monkeypatch.setattr(partitions, "assign", no_work)
    monkeypatch.setattr(demo, "run_demo", no_work)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_the_bounds_are_at_the_edge_of_what_runs(capsys) -> None:
    assert MAX_PARTITIONS == 65_536
    assert main(["partitions", "key", "user:123", "--count", str(MAX_PARTITIONS)]) == 0
    assert capsys.readouterr().out.strip() == HashConfig(modulo=MAX_PARTITIONS).partition("user:123")


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["partitions", "key"], [f"1 to {MAX_PARTITIONS}"]),
        (["partitions", "plan"], [f"1 to {MAX_PARTITIONS}", f"1 to {MAX_REPLICATION_FACTOR}", f"at most {MAX_PLAN_NODES}"]),
        (["demo"], [f"{MIN_NODES} to {MAX_NODES}", f"1 to {MAX_STEPS}"]),
    ],
)
def test_help_states_the_bounds(capsys, argv, shown) -> None:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for s in shown:
        assert s in text
