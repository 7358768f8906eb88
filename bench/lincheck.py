"""Linearizability checker speed over Porcupine's test histories (../shared/testdata/linearizability).

Prints total and worst wall time (reading + checking) for the 102 etcd histories
and the kv files, and the peak memory of the process.

    .venv/bin/python bench/lincheck.py
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clusterkit.check.history import read_history  # noqa: E402
from clusterkit.check.linearizability import Verdict, check_operations  # noqa: E402
from clusterkit.check.models import guess_model  # noqa: E402

DATA = Path(os.environ.get("CLUSTERKIT_TESTDATA", ROOT.parent / "shared" / "testdata")) / "linearizability"


def run(paths: list[Path]) -> tuple[float, float, str, float, int]:
    total = parse_total = 0.0
    worst, worst_name = 0.0, ""
    agree = 0
    expected = dict(line.split("\t") for line in (DATA / "expected.tsv").read_text().splitlines())
    for path in paths:
        text = path.read_text()
        start = time.perf_counter()
        ops = read_history(text, source=path.name)
        parsed = time.perf_counter()
        result = check_operations(ops, guess_model(ops))
        elapsed = time.perf_counter() - start
        total += elapsed
        parse_total += parsed - start
        if elapsed > worst:
            worst, worst_name = elapsed, path.name
        rel = str(path.relative_to(DATA))
        if rel in expected and (result.verdict is Verdict.LINEARIZABLE) == (expected[rel] == "true"):
            agree += 1
    return total, worst, worst_name, parse_total, agree


def main() -> None:
    etcd = sorted((DATA / "etcd").glob("*.log"))
    kv = sorted((DATA / "kv").glob("*.txt"))
    print(f"{'set':<6} {'files':>5} {'total s':>8} {'parse s':>8} {'worst s':>8}  worst file        agree")
    for name, paths in (("etcd", etcd), ("kv", kv)):
        total, worst, worst_name, parse, agree = run(paths)
        print(f"{name:<6} {len(paths):>5} {total:>8.3f} {parse:>8.3f} {worst:>8.3f}  {worst_name:<17} {agree}/{len(paths)}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
