"""``clusterkit sim``: list, run, sweep and shrink fault-injection scenarios in the simulator."""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .args import bounded_int
from .codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, error

PROG = "clusterkit sim"
MAX_SEEDS = 10_000_000
MAX_JOBS = 1024


def scenario_dirs(explicit: str | None) -> list[Path]:
    """Where scenario names are looked up: --dir, else ./scenarios, else the checkout's scenarios/."""
    if explicit:
        return [Path(explicit)]
    here = Path("scenarios")
    checkout = Path(__file__).resolve().parents[2] / "scenarios"
    found: list[Path] = []
    for d in (here, checkout):
        if d.is_dir() and all(d.resolve() != f.resolve() for f in found):
            found.append(d)
    return found or [here]


def find_scenario(name: str, directory: str | None) -> Path:
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no scenario file {name}")
        return path
    for d in scenario_dirs(directory):
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for d in scenario_dirs(directory) if d.is_dir() for p in d.glob("*.toml"))
    raise FileNotFoundError(f"no scenario named {name!r}" + (f" (known: {', '.join(known)})" if known else ""))


def _load(args: argparse.Namespace) -> Any:
    from ..sim.scenario import Scenario

    return Scenario.load(find_scenario(args.scenario, args.dir))


def _replay_command(scenario: str, seed: int) -> str:
    return f"clusterkit sim run {shlex.quote(scenario)} --seed {seed}"


# ------------------------------------------------------------------ list
def _cmd_list(args: argparse.Namespace) -> int:
    from ..sim.scenario import Scenario
    from ..sim.network import ScenarioError

    rows = []
    for d in scenario_dirs(args.dir):
        for path in sorted(d.glob("*.toml")):
            try:
                s = Scenario.load(path)
                first = s.description.split(". ")[0].rstrip(".")
                rows.append((s.name, f"{s.nodes} nodes, {s.duration:g}+{s.quiet:g} s", first))
            except ScenarioError as exc:
                rows.append((path.stem, "INVALID", str(exc)))
    if not rows:
        return error(PROG + " list", f"no scenarios in {', '.join(map(str, scenario_dirs(args.dir)))}", EXIT_BAD_INPUT)
    width = max(len(r[0]) for r in rows)
    for name, shape, text in rows:
        print(f"{name:<{width}}  {shape:<18}  {text}")
    _list_fault_kinds()
    return EXIT_OK


def _list_fault_kinds() -> None:
    from ..sim.faults import KINDS

    print("\nfault kinds ([[faults]] kind = ...; * may be drawn by [random] kinds):")
    for name, kind in KINDS.items():
        takes = [f"node = {kind.target_text()}"] if kind.targets or kind.by_id else []
        takes += sorted(f for f in kind.uses if f not in ("keep", "cuts"))  # (keep, cuts: recorded, not written)
        print(f"  {name + (' *' if kind.drawn else ''):<11} {kind.summary}")
        if takes:
            print(f"  {'':<11}   {'; '.join(takes)}")


# ------------------------------------------------------------------ run
def _cmd_run(args: argparse.Namespace) -> int:
    from ..sim.runner import run_scenario

    write_plots = None
    if args.plot:
        try:
            from ..plot.run_plots import write_run_plots as write_plots
        except ImportError as exc:
            return error(PROG + " run", f"--plot needs the plot extra ({exc.name} is missing): "
                         "pip install 'clusterkit[plot]'", EXIT_USAGE)
    scenario = _load(args)
    if args.real:
        return _run_real(args, scenario)
    # Plots draw the messages of one window: the one asked for, or around the first fault.
    window = args.window or ("first-fault" if args.plot else None)
    report = run_scenario(scenario, args.seed, trace_messages=args.trace_messages, message_window=window)
    print(report.summary() if not args.quiet else report.summary().splitlines()[0])
    if args.out:
        paths = report.write(Path(args.out))
        print("wrote " + ", ".join(str(p) for p in paths))
    if write_plots is not None:
        started = time.monotonic()
        plots = write_plots(report, Path(args.plot), window=args.window)
        print(f"plotted {', '.join(str(p) for p in plots)} in {time.monotonic() - started:.1f} s")
    return EXIT_OK if report.ok else EXIT_FAILED


def _run_real(args: argparse.Namespace, scenario: Any) -> int:
    """The scenario on real node processes (clusterkit.net.real_runner); SIGTERM stops it as Ctrl-C does."""
    import signal

    from ..net.real_runner import NotRunnable, refusals, run_real

    where = f"{PROG} run"
    for flag in ("window", "trace_messages"):
        if getattr(args, flag):
            return error(where, f"--{flag.replace('_', '-')} is for simulated runs: a --real run traces no "
                         "messages", EXIT_USAGE)
    write_plots = None
    if args.plot:
        try:
            from ..plot.run_plots import write_run_plots as write_plots
        except ImportError as exc:
            return error(where, f"--plot needs the plot extra ({exc.name} is missing): "
                         "pip install 'clusterkit[plot]'", EXIT_USAGE)
    refused = refusals(scenario, args.seed)
    if refused:
        return error(where, f"can't run {scenario.name} on real processes: {'; '.join(refused)}", EXIT_BAD_INPUT)
    if not args.quiet:
        logging.getLogger("clusterkit.net.real_runner").setLevel(logging.INFO)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"running {scenario.name} seed {args.seed} on {scenario.nodes} real node processes "
          f"({scenario.duration:g} s of faults, then up to {max(scenario.quiet, 5.0):g} s quiet)", file=sys.stderr)
    try:
        report = run_real(scenario, args.seed, record=write_plots is not None)
    except NotRunnable as exc:  # (refused above; kept for a scenario that changes under us)
        return error(where, f"can't run {scenario.name} on real processes: {exc}", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("stopped: every node process was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report.summary() if not args.quiet else report.summary().splitlines()[0])
    if args.out:
        paths = report.write(Path(args.out))
        print("wrote " + ", ".join(str(p) for p in paths if p.stat().st_size or not p.name.endswith(".trace")))
    if write_plots is not None:
        print("plotted " + ", ".join(str(p) for p in write_plots(report, Path(args.plot))))
    return EXIT_OK if report.ok else EXIT_FAILED


def _window(text: str) -> tuple[float, float]:
    """START:END in virtual seconds, START < END, both finite."""
    try:
        start, end = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END in virtual seconds, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise argparse.ArgumentTypeError(f"need 0 <= START < END, both finite, got {text!r}")
    return start, end


# ------------------------------------------------------------------ compare
def _cmd_compare(args: argparse.Namespace) -> int:
    """Both worlds, the same seeds: how far the simulator's numbers are from real processes'."""
    import signal

    from ..net.real_runner import refusals, run_real
    from ..sim.fidelity import measure, table
    from ..sim.runner import run_scenario

    scenario = _load(args)
    where = f"{PROG} compare"
    refused = refusals(scenario, args.first)
    if refused:
        return error(where, f"can't run {scenario.name} on real processes: {'; '.join(refused)}", EXIT_BAD_INPUT)
    seeds = range(args.first, args.first + args.seeds)
    sim = []
    for seed in seeds:
        sim.append(measure(run_scenario(scenario, seed)))
        print(f"sim  {scenario.name} seed {seed}: {'PASS' if sim[-1].ok else 'FAIL'}", file=sys.stderr)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    real = []
    try:
        for seed in seeds:
            real.append(measure(run_real(scenario, seed, record=True)))
            print(f"real {scenario.name} seed {seed}: {'PASS' if real[-1].ok else 'FAIL'}", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopped: every node process was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{scenario.name}, seeds {seeds.start}-{seeds.stop - 1}: virtual seconds against wall seconds")
    print(table({"simulator": sim, "real processes": real}))
    return EXIT_OK if all(r.ok for r in sim + real) else EXIT_FAILED


# ------------------------------------------------------------------ calibrate
def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..net.calibrate import calibrate

    where = f"{PROG} calibrate"
    directory = Path(args.data_dir) if args.data_dir else None
    if directory is not None and not directory.is_dir():
        return error(where, f"--data-dir {args.data_dir}: not a directory", EXIT_BAD_INPUT)
    out = Path(args.out) if args.out else None
    name = out.stem if out is not None else "this-machine"
    print(f"timing {args.samples} loopback round trips and {max(20, args.samples // 10)} disk syncs ...",
          file=sys.stderr)
    try:
        text = calibrate(args.samples, directory).profile(name)
        if out is None:
            print(text, end="")
            return EXIT_OK
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        return error(where, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_BAD_INPUT)
    print(f"wrote {out}: name it in a scenario with profile = \"{name}\"")
    return EXIT_OK


# ------------------------------------------------------------------ sweep
class Progress:
    """A one-line progress bar on stderr: done/total, failures, rate, time left."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.done = self.failed = 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._last_line = -1

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if not self.enabled:
            return
        tenth = self.done * 10 // self.total
        if not self.tty and tenth == self._last_line and self.done != self.total:
            return  # a log file gets a line per tenth, a terminal a live bar
        self._last_line = tenth
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 30
        bar = "#" * (width * self.done // self.total)
        line = (f"[{bar:<{width}}] {self.done}/{self.total} seeds, {self.failed} failing, "
                f"{rate:.1f}/s, {left:.0f}s left")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        if self.tty and self.done == self.total:
            print(file=sys.stderr)


def _executor(args: argparse.Namespace) -> tuple[Any, Any]:
    """(executor, closer): dask's when --dask is given, else None (the sweep makes a process pool)."""
    if not args.dask:
        return None, None
    try:
        from dask.distributed import Client
    except ImportError:
        raise RuntimeError("--dask needs dask.distributed: pip install 'clusterkit[dask]'") from None
    client = Client(args.dask)
    return client.get_executor(), client.close


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..sim.sweep import default_jobs, sweep

    scenario = _load(args)
    seeds = range(args.first, args.first + args.seeds)
    jobs = default_jobs() if args.jobs == "auto" else int(args.jobs)
    try:
        executor, close = _executor(args)
    except (RuntimeError, OSError) as exc:
        return error(PROG + " sweep", str(exc), EXIT_USAGE)
    where = f"dask at {args.dask}" if args.dask else f"{jobs} process{'es' if jobs != 1 else ''}"
    print(f"sweeping {scenario.name}: {len(seeds)} seeds from {args.first} on {where}", file=sys.stderr)
    progress = Progress(len(seeds), not args.quiet)
    started = time.monotonic()
    try:
        results = sweep(scenario, seeds, executor=executor, jobs=jobs, on_result=lambda r: progress.update(r.ok))
    finally:
        if close is not None:
            close()
    wall = time.monotonic() - started
    failing = [r for r in results if not r.ok]
    print(f"{scenario.name}: {len(results) - len(failing)} of {len(results)} seeds passed in {wall:.1f} s")
    for r in failing:
        print(f"  seed {r.seed}: {r.problems[0] if r.problems else 'failed'}")
        print(f"    replay: {_replay_command(args.scenario, r.seed)}")
        print(f"    shrink: clusterkit sim shrink {shlex.quote(args.scenario)} --seed {r.seed}")
    return EXIT_FAILED if failing else EXIT_OK


# ------------------------------------------------------------------ shrink
def _cmd_shrink(args: argparse.Namespace) -> int:
    from ..sim.sweep import shrink

    scenario = _load(args)
    say = (lambda text: print(f"  {text}", file=sys.stderr)) if not args.quiet else None
    try:
        shrunk, report, runs = shrink(scenario, args.seed, max_runs=args.max_runs, progress=say)
    except ValueError as exc:
        return error(PROG + " shrink", str(exc), EXIT_FAILED)
    out = Path(args.out or f"{scenario.name}-seed{args.seed}-shrunk.toml")
    out.write_text(shrunk.to_toml())
    print(f"shrunk {scenario.name} seed {args.seed} to {len(shrunk.faults)} fault"
          f"{'s' if len(shrunk.faults) != 1 else ''} in {runs} runs; it still fails:")
    print(f"  {report.problems[0] if report.problems else 'failed'}")
    for f in shrunk.faults:
        print(f"  {f.summary()}")
    print(f"wrote {out}; replay: {_replay_command(str(out), args.seed)}")
    return EXIT_OK


# ------------------------------------------------------------------ parser
def _guard(fn: Any) -> Any:
    """Scenario problems are one line and exit 3, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        from ..sim.network import ScenarioError

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return fn(args)
        except (ScenarioError, FileNotFoundError) as exc:
            return error(f"{PROG} {args.sim_command}", str(exc), EXIT_BAD_INPUT)

    return run


def _jobs(text: str) -> str:
    if text == "auto":
        return text
    bounded_int(1, MAX_JOBS)(text)
    return text


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sim", help="run fault-injection scenarios in the deterministic simulator",
                       description="Run scenarios (scenarios/*.toml) in the SimPy simulator: every run "
                       "replays exactly from its seed.")
    simsub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), EXIT_USAGE)[1])

    def common(q: argparse.ArgumentParser, scenario: bool = True) -> None:
        if scenario:
            q.add_argument("scenario", metavar="SCENARIO", help="a scenario name (see 'sim list') or a .toml file")
        q.add_argument("--dir", help="directory of scenario files (default: ./scenarios)")
        q.add_argument("--quiet", action="store_true", help="less output")

    q = simsub.add_parser("list", help="list the scenarios")
    common(q, scenario=False)
    q.set_defaults(func=_guard(_cmd_list))

    q = simsub.add_parser("run", help="run one scenario with one seed")
    common(q)
    q.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=1, help="the seed (default 1)")
    q.add_argument("--out", help="write the trace, the history (JSON lines) and a JSON report here")
    q.add_argument("--trace-messages", action="store_true", help="keep every message in the trace file")
    q.add_argument("--real", action="store_true", help="run it on real `clusterkit node` processes on loopback "
                   "instead (started with --fault-injection; one virtual second is one wall second)")
    q.add_argument("--plot", metavar="DIR", help="write PNG plots here: the run's timeline, a message diagram, "
                   "the partition map around its biggest change and its migration graph, movement per "
                   "membership change against the Go ClusterKit's, a non-linearizable history's window")
    q.add_argument("--window", type=_window, metavar="START:END", help="with --plot: the message diagram's "
                   "window, in virtual seconds (default: the first election after the first fault)")
    q.set_defaults(func=_guard(_cmd_run))

    q = simsub.add_parser("sweep", help="run many seeds across processes; print failing seeds with replay commands")
    common(q)
    q.add_argument("--seeds", type=bounded_int(1, MAX_SEEDS), default=100, help="how many seeds (default 100)")
    q.add_argument("--first", type=bounded_int(0, 2**62), default=1, help="first seed (default 1)")
    q.add_argument("--jobs", type=_jobs, default="auto", help="worker processes, or auto (one per core)")
    q.add_argument("--dask", metavar="ADDRESS", help="run on a dask.distributed scheduler instead "
                   "(pip install 'clusterkit[dask]')")
    q.set_defaults(func=_guard(_cmd_sweep))

    q = simsub.add_parser("compare", help="run the same seeds in the simulator and on real processes; print "
                          "the two worlds side by side")
    common(q)
    q.add_argument("--seeds", type=bounded_int(1, 1000), default=3, help="how many seeds in each world (default 3;"
                   " a real run takes its scenario's duration and quiet phase in wall seconds)")
    q.add_argument("--first", type=bounded_int(0, 2**62), default=1, help="first seed (default 1)")
    q.set_defaults(func=_guard(_cmd_compare))

    q = simsub.add_parser("calibrate", help="measure this machine's loopback message and disk sync latencies; "
                          "write a profile scenarios can name (profile = \"NAME\")")
    q.add_argument("--out", metavar="FILE", help="write the profile here (e.g. profiles/NAME.toml; default: print it)")
    q.add_argument("--samples", type=bounded_int(50, 1_000_000), default=2000,
                   help="round trips to time (default 2000; a tenth as many disk syncs)")
    q.add_argument("--data-dir", metavar="DIR", help="where to time disk syncs: the disk the nodes will use "
                   "(default: the temporary directory)")
    q.set_defaults(func=_guard(_cmd_calibrate))

    q = simsub.add_parser("shrink", help="reduce a failing run's faults to a minimal schedule that still fails")
    common(q)
    q.add_argument("--seed", type=bounded_int(0, 2**63 - 1), required=True, help="the failing seed")
    q.add_argument("--out", help="scenario file to write (default SCENARIO-seedN-shrunk.toml)")
    q.add_argument("--max-runs", type=bounded_int(1, 100_000), default=400, help="runs to spend (default 400)")
    q.set_defaults(func=_guard(_cmd_shrink))
