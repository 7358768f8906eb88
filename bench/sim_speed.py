"""How fast the simulator runs: virtual seconds per wall second, and a 1,000-seed sweep.

1. For 3, 5 and 9 nodes, idle (100 ms heartbeats: one tick) and under 200
   client writes per virtual second: virtual seconds simulated per wall
   second, SimPy events processed, and the wall time per event against a
   bare SimPy loop measured in the same run (the ratio is the harness's
   cost per event: Raft, the codec, the checks).
2. The wall time of a sweep of the leader-kill scenario (10 virtual seconds
   of faults, 50 ops/s) over 1,000 seeds on every core.

    .venv/bin/python bench/sim_speed.py [--seconds 60] [--seeds 1000] [--only speed|sweep]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import simpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clusterkit.sim.runner import _setup, build_cluster  # noqa: E402
from clusterkit.sim.scenario import Scenario, Workload  # noqa: E402
from clusterkit.sim.sweep import default_jobs, sweep  # noqa: E402
from clusterkit.sim.trace import Trace  # noqa: E402
from clusterkit.sim.workload import Clients  # noqa: E402


def bare_simpy_rate(events: int = 300_000) -> float:
    """Events per second of a SimPy loop that does nothing but wait: the floor of any SimPy model."""
    env = simpy.Environment()

    def proc(env: simpy.Environment, n: int):
        for _ in range(n):
            yield env.timeout(0.001)

    for _ in range(10):
        env.process(proc(env, events // 10))
    t0 = time.perf_counter()
    env.run()
    return events / (time.perf_counter() - t0)


def count_events(env: simpy.Environment) -> list[int]:
    """Count every event SimPy schedules from now on (wraps the environment's schedule)."""
    counter = [0]
    original = env.schedule

    def schedule(event, priority=1, delay=0):  # type: ignore[no-untyped-def]
        counter[0] += 1
        original(event, priority, delay)

    env.schedule = schedule  # type: ignore[method-assign]
    return counter


def speed(nodes: int, writes_per_second: float, seconds: float) -> tuple[float, int, float]:
    """(virtual s per wall s, events, wall s) for ``seconds`` of virtual time after setup."""
    scenario = Scenario(
        "speed", nodes=nodes, duration=seconds, quiet=0.0,
        workload=Workload(clients=max(1, min(10, int(writes_per_second // 20))), rate=writes_per_second,
                          keys=10, write_ratio=1.0, timeout=1.0),
    )
    cluster = build_cluster(scenario, 1, Trace())
    assert _setup(cluster), "no cluster"
    start = cluster.env.now
    if writes_per_second:
        Clients(cluster, scenario.workload, stop_at=start + seconds).start()
    counter = count_events(cluster.env)
    t0 = time.perf_counter()
    cluster.run(start + seconds)
    wall = time.perf_counter() - t0
    assert not cluster.problems, cluster.problems
    return seconds / wall, counter[0], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="virtual seconds per speed run")
    ap.add_argument("--seeds", type=int, default=1000, help="seeds in the sweep")
    ap.add_argument("--only", choices=("speed", "sweep"))
    args = ap.parse_args()
    if args.only in (None, "speed"):
        raw = bare_simpy_rate()
        print(f"bare SimPy: {raw:,.0f} events/s ({1e6 / raw:.2f} us per event)")
        print(f"{'nodes':>5} {'load':>14} {'virtual s/wall s':>17} {'events':>9} {'us/event':>9} {'x bare':>7}")
        for n in (3, 5, 9):
            for load in (0.0, 200.0):
                ratio, events, wall = speed(n, load, args.seconds if load == 0 else args.seconds / 3)
                per_event = wall / events * 1e6
                label = "idle" if load == 0 else f"{load:.0f} writes/s"
                print(f"{n:>5} {label:>14} {ratio:>16.0f}x {events:>9,} {per_event:>9.1f} "
                      f"{per_event * raw / 1e6:>6.1f}x", flush=True)
    if args.only in (None, "sweep"):
        scenario = Scenario.load(ROOT / "scenarios" / "leader-kill.toml")
        scenario = replace(scenario, duration=10.0, workload=replace(scenario.workload, rate=50.0))
        jobs = default_jobs()
        done = [0]

        def tick(_r: object) -> None:
            done[0] += 1
            if done[0] % max(1, args.seeds // 10) == 0:
                print(f"  {done[0]}/{args.seeds} seeds", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        results = sweep(scenario, range(1, args.seeds + 1), jobs=jobs, on_result=tick)
        wall = time.perf_counter() - t0
        failing = sum(1 for r in results if not r.ok)
        print(f"sweep: leader-kill x {args.seeds} seeds ({scenario.duration:g}+{scenario.quiet:g} virtual s, "
              f"{scenario.workload.rate:g} ops/s) on {jobs} processes: {wall:.1f} s wall, {failing} failing")


if __name__ == "__main__":
    main()
