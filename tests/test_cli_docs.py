"""README.md and docs/ document the command line as it is: every exit code, every bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterkit.cli import codes, demo, partitions, ports

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()  # the exit codes and the limits are the front door's
DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


@pytest.mark.parametrize("name", sorted(n for n in vars(codes) if n.startswith("EXIT_") and n != "EXIT_CODES_HELP"))
def test_every_exit_code_has_a_row_in_the_readme_and_in_help(name: str) -> None:
    value = getattr(codes, name)
    assert f"\n| {value} | " in README
    assert f"\n  {value} " in codes.EXIT_CODES_HELP


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_PARTITIONS", partitions.MAX_PARTITIONS),
        ("MAX_PLAN_NODES", partitions.MAX_PLAN_NODES),
        ("MAX_REPLICATION_FACTOR", partitions.MAX_REPLICATION_FACTOR),
        ("MIN_NODES", demo.MIN_NODES),
        ("MAX_NODES", demo.MAX_NODES),
        ("MAX_STEPS", demo.MAX_STEPS),
        ("MIN_BASE_PORT", ports.MIN_BASE_PORT),
    ],
)
def test_every_bound_is_in_the_readme(name: str, value: int) -> None:
    assert f"`{name}`" in README
    assert f"{value:,}" in README


def test_the_layout_says_where_notebooks_are_executed() -> None:
    assert "notebooks/   executed in CI (tests/test_notebooks.py)" in DOCS
    assert (Path(__file__).resolve().parent / "test_notebooks.py").exists()
