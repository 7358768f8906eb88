"""What every subcommand shares: --version, the exit codes in --help, a closed stdout, Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clusterkit
from clusterkit.cli import main
from clusterkit.cli.codes import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED

ROOT = Path(__file__).resolve().parents[1]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "clusterkit", *args]


def test_version_is_the_package_version() -> None:
    out = subprocess.run(_cmd("--version"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout == f"clusterkit {clusterkit.__version__}\n"


@pytest.mark.parametrize(
    "command", [[], ["demo"], ["partitions"], ["partitions", "key"], ["partitions", "plan"], ["check", "linearizability"]]
)
def test_every_help_lists_the_exit_codes(capsys, command: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for line in ("0    success", "2    bad command line", "3    bad input file", "130  interrupted", "141  stdout closed"):
        assert line in text


def test_partitions_help_no_longer_promises_plans_later(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "later" not in capsys.readouterr().out


def _env(unbuffered: bool) -> dict[str, str]:
    """Buffered stdout fails at the final flush, unbuffered at the first write: both must end quietly."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def _into_closed_pipe(command: list[str], unbuffered: bool) -> subprocess.CompletedProcess:
    # A pipe whose reader is already gone: every write fails, as with `clusterkit ... | head -0`.
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(_cmd(*command), stdout=w, stderr=subprocess.PIPE, env=_env(unbuffered), timeout=120)
    finally:
        os.close(w)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "command",
    [
        ["partitions", "key", "user:123"],  # one short line
        ["partitions", "plan", "--nodes", "a,b,c", "--count", "4096"],  # more than any pipe buffer
        ["demo", "--steps", "50", "--quiet"],
        ["check", "linearizability", str(ROOT / "tests" / "__init__.py")],  # an error: nothing on stdout
    ],
)
def test_a_closed_stdout_exits_141_without_a_traceback(command: list[str], unbuffered: bool) -> None:
    done = _into_closed_pipe(command, unbuffered)
    if command[0] == "check":  # wrote only to stderr: its own code, and its one line
        assert done.returncode == 3 and done.stderr.count(b"\n") == 1
        return
    assert done.returncode == EXIT_BROKEN_PIPE
    assert done.stderr == b""


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_help_into_a_closed_stdout_is_quiet(unbuffered: bool) -> None:
    # argparse itself drops write errors while printing help (then exits 0); a buffered write fails
    # later, in main()'s flush. Either way: no traceback.
    done = _into_closed_pipe(["--help"], unbuffered)
    assert done.returncode in (0, EXIT_BROKEN_PIPE)
    assert done.stderr == b""


def test_a_reader_that_stops_after_one_line_ends_the_command_quietly() -> None:
    # `clusterkit partitions plan ... | head -1`: the plan (65,537 lines) is far larger than a pipe
    # buffer, so the command is still writing when the reader goes away.
    proc = subprocess.Popen(
        _cmd("partitions", "plan", "--nodes", "a,b,c", "--count", "65536"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert first.startswith(b"partition ")
    assert err == b""


def _open_writer(fifo: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    """Open the FIFO's write end once the command holds its read end, i.e. once it is inside main()."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never opened its input"
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    # The command blocks reading a FIFO nobody writes to: a deterministic place to interrupt it.
    fifo = tmp_path / "history.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        _cmd("check", "linearizability", str(fifo)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    fd = _open_writer(fifo, proc)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(fd)
    assert proc.returncode == EXIT_INTERRUPTED
    assert err == b"clusterkit: interrupted\n"
    assert out == b""


def test_keyboard_interrupt_in_any_command_is_caught_in_main(monkeypatch, capsys) -> None:
    from clusterkit.cli import partitions

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(partitions, "run_key", interrupted)
    assert main(["partitions", "key", "x"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "clusterkit: interrupted\n"
