"""bench/mutants.py: its mutants still apply to the sources, and it finds one for real.

The bench injects each bug as exact text replacements in a temporary copy of the
package, so a change to the core that rewrites a mutated line must update the
mutant: the first tests say which one. The last runs one mutant end to end (a
driver process on the mutated copy, a pool of two workers, the unmutated oracle,
shrinking) with fixed seeds: the simulator is deterministic, so it fails the
same way every time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "mutants.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_mutants", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_mutants"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


mutants = _load()
ALL = mutants.MUTANTS + mutants.EXTRA


def test_at_least_ten_mutants_with_distinct_names():
    assert len(mutants.MUTANTS) >= 10
    names = [m.name for m in ALL]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mutant", ALL, ids=lambda m: m.name)
def test_each_original_text_occurs_exactly_once(mutant):
    source = (REPO / mutant.path).read_text()
    for old, new in mutant.edits:
        assert source.count(old) == 1, (
            f"{mutant.name}: {old.strip().splitlines()[0]!r} occurs {source.count(old)} times in {mutant.path}; "
            "update the mutant in bench/mutants.py"
        )
        assert mutants.MUTATED in new
    mutated = mutant.apply(source)
    assert mutated != source
    compile(mutated, mutant.path, "exec")
    for name in mutant.scenarios:
        assert mutants.scenario_file(name).is_file(), name


def test_check_sources_is_clean():
    assert mutants.check_sources() == []


def test_apply_refuses_text_that_is_not_there_once():
    m = mutants.MUTANTS[0]
    (old, _new), = m.edits[:1]
    with pytest.raises(ValueError, match="occurs 0 times"):
        m.apply("nothing to see here\n")
    with pytest.raises(ValueError, match="occurs 2 times"):
        m.apply(old + old)


def test_command_line_lists_and_refuses_unknown_names():
    listed = subprocess.run([sys.executable, str(BENCH), "--list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    for m in ALL:
        assert m.name in listed.stdout
    bad = subprocess.run([sys.executable, str(BENCH), "--only", "no-such-mutant"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown mutant" in bad.stderr


def test_one_mutant_is_found_and_shrunk_on_a_copy():
    """Releasing the old owners' copies at reassignment: the partition-map check sees a partition's
    live holders drop at the first join of join-under-load, seed 1."""
    mutant = mutants.BY_NAME["release-before-confirm"]
    target = REPO / mutant.path
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    events: list[dict] = []
    result = mutants.run_mutant(mutant, seconds=15.0, jobs=2, shrink_runs=40, on_event=events.append)
    assert result["error"] is None, result["error"]
    assert result["found"], result
    assert (result["scenario"], result["seed"]) == ("join-under-load", 1)
    assert result["seconds"] <= 15.0
    assert "a copy was released too early" in result["problems"][0]
    assert result["shrunk_faults"] is not None and result["shrunk_faults"] <= 10
    assert "released too early" in result["shrunk_problem"]
    # It ran on the copy, and left the checkout alone and no copy behind.
    copy = Path(result["clusterkit"])
    assert not copy.is_relative_to(REPO)
    assert not copy.exists()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert any(e.get("event") == "ready" for e in events)
    assert any(e.get("event") == "found" for e in events)


def test_script_variant_draws_the_seeds_faults_into_a_script():
    base = mutants.load_scenario("random-mix-script")
    assert base.name == "random-mix-script" and base.expect == {} and base.random is not None
    one, again, other = mutants.for_seed(base, 7), mutants.for_seed(base, 7), mutants.for_seed(base, 8)
    assert one.random is None and one.faults
    assert one == again and one != other
    plain = mutants.load_scenario("figure-8")
    assert mutants.for_seed(plain, 3) is plain
