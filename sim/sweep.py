"""Many seeds of one scenario, across processes (or a dask cluster), and shrinking a failure.

A sweep runs seeds on any ``concurrent.futures.Executor`` (a process pool by
default; ``dask.distributed.Client.get_executor()`` runs the same sweep on a
cluster) and reports each failing seed with the command that replays it.

Shrinking takes a failing run's *resolved* fault schedule (concrete node ids,
concrete links) and removes what it can while the run still fails: first
halves, then single faults (delta debugging), then the workload's rate and
the phase length. The result is a scenario that fails with that seed and
few faults; :meth:`Scenario.to_toml` writes it for ``sim run`` to replay.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

from .runner import Report, run_scenario
from .faults import load_fault
from .scenario import Fault, Scenario


@dataclass(frozen=True)
class SeedResult:
    seed: int
    ok: bool
    problems: tuple[str, ...]
    digest: str
    counters: dict[str, int]
    faults: int
    wall_seconds: float


def run_seed(scenario: Scenario, seed: int) -> SeedResult:
    """One seed, summarised small enough to cross a process boundary cheaply."""
    r = run_scenario(scenario, seed)
    return SeedResult(seed, r.ok, tuple(r.problems[:5]), r.digest, r.counters, len(r.faults), r.wall_seconds)


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def sweep(
    scenario: Scenario,
    seeds: Iterable[int],
    executor: Executor | None = None,
    jobs: int | None = None,
    on_result: Callable[[SeedResult], None] | None = None,
) -> list[SeedResult]:
    """Run every seed; results in seed order. ``on_result`` sees each as it finishes (progress)."""
    seeds = list(seeds)
    own = executor is None
    if executor is None:
        jobs = jobs or default_jobs()
        if jobs == 1:
            results = []
            for s in seeds:
                results.append(run_seed(scenario, s))
                if on_result is not None:
                    on_result(results[-1])
            return results
        executor = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {executor.submit(run_seed, scenario, s): s for s in seeds}
        done: dict[int, SeedResult] = {}
        for fut in as_completed(futures):
            res = fut.result()
            done[res.seed] = res
            if on_result is not None:
                on_result(res)
        return [done[s] for s in seeds]
    finally:
        if own:
            executor.shutdown(cancel_futures=True)


# ------------------------------------------------------------------ shrinking
def _fails(scenario: Scenario, seed: int) -> Report | None:
    report = run_scenario(scenario, seed)
    return None if report.ok else report


def resolved_scenario(scenario: Scenario, report: Report) -> Scenario:
    """The scenario with the faults a run really applied, as concrete, replayable data."""
    return scenario.with_faults([load_fault(f) for f in report.faults])


def _subsets(faults: list[Fault]) -> Iterator[list[Fault]]:
    """Candidates smaller than ``faults``: complements of chunks, from halves down to single faults."""
    n = len(faults)
    chunk = max(1, n // 2)
    while True:
        for start in range(0, n, chunk):
            yield faults[:start] + faults[start + chunk :]
        if chunk == 1:
            return
        chunk = max(1, chunk // 2)


def shrink(
    scenario: Scenario,
    seed: int,
    max_runs: int = 400,
    progress: Callable[[str], None] | None = None,
) -> tuple[Scenario, Report, int]:
    """A smaller scenario that still fails with ``seed``: (scenario, its failing report, runs used).

    Expectations (``expect``) are set aside: removing faults trivially keeps "too few kills"
    failing, so only safety and liveness failures are shrunk. Raises ValueError when the scenario
    doesn't fail that way with that seed to begin with.
    """
    scenario = replace(scenario, expect={})
    first = _fails(scenario, seed)
    if first is None:
        raise ValueError(f"{scenario.name} passes with seed {seed}: nothing to shrink")
    current = resolved_scenario(scenario, first)
    report = _fails(current, seed)
    runs = 2
    if report is None:
        # Resolving the targets changed the run (rare: a fault that fired on a different node);
        # shrink the original's faults instead, still scripted.
        current, report = scenario.with_faults(list(scenario.faults)), first
        if scenario.random is not None:
            current = scenario
    say = progress or (lambda _t: None)
    say(f"start: {len(current.faults)} faults")
    improved = True
    while improved and runs < max_runs:
        improved = False
        for candidate in _subsets(list(current.faults)):
            if runs >= max_runs:
                break
            runs += 1
            trial = current.with_faults(candidate)
            failed = _fails(trial, seed)
            if failed is not None:
                current, report = trial, failed
                say(f"{len(candidate)} faults still fail ({runs} runs)")
                improved = True
                break
    # Then the workload and the phases: lower rates and shorter runs make the replay easier to read.
    for change in (
        lambda s: replace(s, workload=replace(s.workload, rate=s.workload.rate / 2)),
        lambda s: replace(s, workload=replace(s.workload, clients=max(1, s.workload.clients // 2))),
        lambda s: replace(s, duration=max((f.at for f in s.faults), default=0.0) + 0.5),
    ):
        if runs >= max_runs:
            break
        trial = change(current)
        runs += 1
        failed = _fails(trial, seed)
        if failed is not None:
            current, report = trial, failed
    return replace(current, name=f"{scenario.name}-seed{seed}-shrunk"), report, runs
