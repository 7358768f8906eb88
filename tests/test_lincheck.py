"""The linearizability checker: Porcupine's verdicts, hand-made histories, properties, bad input."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterkit.check.history import Event, HistoryError, pair_events, read_history
from clusterkit.check.linearizability import Verdict, check_operations
from clusterkit.check.models import CasRegisterModel, KVModel, RegisterModel, guess_model

# The reference histories live in ../shared beside the checkout (as in CI); CLUSTERKIT_TESTDATA overrides.
GOLDEN = Path(
    os.environ.get("CLUSTERKIT_TESTDATA", Path(__file__).resolve().parents[2] / "shared" / "testdata")
) / "linearizability"
if not (GOLDEN / "expected.tsv").exists():
    raise FileNotFoundError(f"reference histories not found at {GOLDEN}: set CLUSTERKIT_TESTDATA to shared/testdata")
EXPECTED = [line.split("\t") for line in (GOLDEN / "expected.tsv").read_text().splitlines()]


@pytest.mark.parametrize("path, expected", EXPECTED, ids=[p for p, _ in EXPECTED])
def test_porcupine_verdicts(path, expected):
    ops = read_history((GOLDEN / path).read_text(), source=path)
    result = check_operations(ops, guess_model(ops))
    assert result.verdict is (Verdict.LINEARIZABLE if expected == "true" else Verdict.NOT_LINEARIZABLE)
    if expected == "false":
        assert result.failure is not None and result.failure.blocked in ops
        assert "not linearizable" in result.explain()


def test_all_108_histories_are_covered():
    assert len(EXPECTED) == 108


def H(*rows):
    """Events from (process, type, f, value[, key]) tuples; time is the row number."""
    events = []
    for t, row in enumerate(rows):
        p, typ, f, v, *key = row
        events.append(Event(p, typ, f, v, key[0] if key else None, float(t), t + 1))
    return pair_events(events)


def verdict(ops, model):
    return check_operations(ops, model).verdict


# ----------------------------------------------------------------- register
def test_register_sequential_ok_and_stale_read_bad():
    good = H((0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert verdict(good, RegisterModel()) is Verdict.LINEARIZABLE
    bad = H((0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", None))
    assert verdict(bad, RegisterModel()) is Verdict.NOT_LINEARIZABLE


def test_register_concurrent_read_may_see_either():
    for seen in (None, 1):
        ops = H(
            (0, "invoke", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", seen),
            (0, "ok", "write", 1),
        )
        assert verdict(ops, RegisterModel()) is Verdict.LINEARIZABLE


def test_info_write_may_take_effect_later_or_never():
    later = H((0, "invoke", "write", 5), (0, "info", "write", None), (1, "invoke", "read", None), (1, "ok", "read", 5))
    assert verdict(later, RegisterModel()) is Verdict.LINEARIZABLE
    never = H((0, "invoke", "write", 5), (0, "info", "write", None), (1, "invoke", "read", None), (1, "ok", "read", None))
    assert verdict(never, RegisterModel()) is Verdict.LINEARIZABLE
    # but not before it was called
    before = H((1, "invoke", "read", None), (1, "ok", "read", 5), (0, "invoke", "write", 5), (0, "info", "write", None))
    assert verdict(before, RegisterModel()) is Verdict.NOT_LINEARIZABLE


def test_failed_write_did_not_happen():
    ops = H((0, "invoke", "write", 5), (0, "fail", "write", 5), (1, "invoke", "read", None), (1, "ok", "read", 5))
    assert verdict(ops, RegisterModel()) is Verdict.NOT_LINEARIZABLE


def test_unreturned_call_is_unknown_outcome():
    ops = H((0, "invoke", "write", 3), (1, "invoke", "read", None), (1, "ok", "read", 3))
    assert ops[0].status == "info"
    assert verdict(ops, RegisterModel()) is Verdict.LINEARIZABLE


# ------------------------------------------------------------ cas register
def test_cas_ok_needs_expected_value_and_fail_needs_another():
    ok = H((0, "invoke", "write", 1), (0, "ok", "write", 1), (0, "invoke", "cas", (1, 2)), (0, "ok", "cas", (1, 2)),
           (1, "invoke", "read", None), (1, "ok", "read", 2))
    assert verdict(ok, CasRegisterModel()) is Verdict.LINEARIZABLE
    bad_ok = H((0, "invoke", "cas", (1, 2)), (0, "ok", "cas", (1, 2)))
    assert verdict(bad_ok, CasRegisterModel()) is Verdict.NOT_LINEARIZABLE
    bad_fail = H((0, "invoke", "write", 1), (0, "ok", "write", 1), (0, "invoke", "cas", (1, 2)), (0, "fail", "cas", (1, 2)))
    assert verdict(bad_fail, CasRegisterModel()) is Verdict.NOT_LINEARIZABLE


def test_info_cas_applies_only_if_it_could():
    ops = H((0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "cas", (1, 7)), (1, "info", "cas", None),
            (2, "invoke", "read", None), (2, "ok", "read", 7))
    assert verdict(ops, CasRegisterModel()) is Verdict.LINEARIZABLE
    ops = H((0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "cas", (2, 7)), (1, "info", "cas", None),
            (2, "invoke", "read", None), (2, "ok", "read", 7))
    assert verdict(ops, CasRegisterModel()) is Verdict.NOT_LINEARIZABLE


# -------------------------------------------------------------------- kv
def test_kv_keys_are_independent_and_append_concatenates():
    ops = H(
        (0, "invoke", "put", "x", "a"), (0, "ok", "put", "x", "a"),
        (1, "invoke", "append", "y", "b"), (1, "ok", "append", "y", "b"),
        (0, "invoke", "append", "z", "b"), (0, "ok", "append", "z", "b"),
        (2, "invoke", "get", None, "a"), (2, "ok", "get", "x", "a"),
        (2, "invoke", "get", None, "b"), (2, "ok", "get", "yz", "b"),
    )
    result = check_operations(ops, KVModel())
    assert result.verdict is Verdict.LINEARIZABLE and result.keys == 2
    wrong = H((1, "invoke", "append", "y", "b"), (1, "ok", "append", "y", "b"), (2, "invoke", "get", None, "b"),
              (2, "ok", "get", "zy", "b"))
    res = check_operations(wrong, KVModel())
    assert res.verdict is Verdict.NOT_LINEARIZABLE and res.failure.key == "b"


def test_kv_delete_and_missing_key_reads_empty():
    ops = H((0, "invoke", "put", "v", "k"), (0, "ok", "put", "v", "k"), (0, "invoke", "delete", None, "k"),
            (0, "ok", "delete", None, "k"), (1, "invoke", "get", None, "k"), (1, "ok", "get", None, "k"))
    assert verdict(ops, KVModel()) is Verdict.LINEARIZABLE


def hard_history(writers: int = 16) -> str:
    """Overlapping writes and a concurrent read of a value never written: the search must try
    every subset of the writes before it can say no."""
    lines = [f'{{"process": {p}, "type": "invoke", "f": "write", "value": {p}}}' for p in range(writers)]
    lines.append(f'{{"process": {writers}, "type": "invoke", "f": "read", "value": null}}')
    lines += [f'{{"process": {p}, "type": "ok", "f": "write", "value": {p}}}' for p in range(writers)]
    lines.append(f'{{"process": {writers}, "type": "ok", "f": "read", "value": -1}}')
    return "\n".join(lines)


def test_budget_answers_unknown_instead_of_hanging():
    ops = read_history(hard_history(), "jsonl")
    result = check_operations(ops, RegisterModel(), max_steps=5000)
    assert result.verdict is Verdict.UNKNOWN and "budget" in result.reason
    ticks = iter(range(10**9))
    result = check_operations(ops, RegisterModel(), budget_seconds=5, clock=lambda: next(ticks) * 100)
    assert result.verdict is Verdict.UNKNOWN and "time" in result.reason
    small = read_history(hard_history(6), "jsonl")  # the same shape, small enough to finish
    assert check_operations(small, RegisterModel()).verdict is Verdict.NOT_LINEARIZABLE


# -------------------------------------------------------------- properties
def generated_history(seed: int, n_ops: int, n_procs: int, keys: str):
    """Run operations one at a time against a dict, then stretch each call/return interval so they
    overlap without reordering any (call <= linearization point <= return)."""
    rng = random.Random(seed)
    store: dict[str, str] = {}
    events: list[Event] = []
    busy_until = {p: -1.0 for p in range(n_procs)}
    for t in range(n_ops):
        free = [q for q in busy_until if busy_until[q] < t]
        if not free:  # everyone is mid-call: a new client process joins
            busy_until[len(busy_until)] = -1.0
            free = [len(busy_until) - 1]
        p = rng.choice(free)
        key = rng.choice(keys)
        f = rng.choice(["get", "put", "append"])
        if f == "get":
            inp, out = None, store.get(key, "")
        else:
            inp = f"{p}.{t};"
            store[key] = inp if f == "put" else store.get(key, "") + inp
            out = inp
        call = t - rng.random() * 3  # started up to 3 steps earlier
        call = max(call, busy_until[p] + 0.01)
        ret = t + rng.random() * 3
        busy_until[p] = ret
        events.append(Event(p, "invoke", f, inp, key, call, 0))
        events.append(Event(p, "ok", f, out, key, ret, 0))
    events.sort(key=lambda e: e.time)
    return pair_events(events)


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(seed=st.integers(0, 10**6), n_ops=st.integers(1, 60), n_procs=st.integers(1, 6), keys=st.sampled_from(["a", "ab", "abc"]))
def test_sequential_history_with_overlap_is_linearizable(seed, n_ops, n_procs, keys):
    ops = generated_history(seed, n_ops, n_procs, keys)
    assert check_operations(ops, KVModel()).verdict is Verdict.LINEARIZABLE


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(seed=st.integers(0, 10**6), n_ops=st.integers(2, 60), n_procs=st.integers(1, 6), which=st.integers(0, 10**6))
def test_read_of_a_never_written_value_is_not_linearizable(seed, n_ops, n_procs, which):
    ops = generated_history(seed, n_ops, n_procs, "ab")
    gets = [op for op in ops if op.f == "get"]
    if not gets:
        return
    gets[which % len(gets)].output = "never-written;"
    assert check_operations(ops, KVModel()).verdict is Verdict.NOT_LINEARIZABLE


# ----------------------------------------------------------------- readers
def test_reader_errors_name_file_and_line():
    with pytest.raises(HistoryError, match=r"h\.edn:2: unparsable EDN"):
        read_history('{:process 0, :type :invoke, :f :get, :key "a", :value nil}\n{:process 0, :type', "edn", "h.edn")
    with pytest.raises(HistoryError, match=r"h\.edn:1: ok get for process 0 without a call"):
        read_history('{:process 0, :type :ok, :f :get, :key "a", :value nil}', "edn", "h.edn")
    with pytest.raises(HistoryError, match=r"h\.jsonl:1: unparsable JSON"):
        read_history("{nope", "jsonl", "h.jsonl")
    with pytest.raises(HistoryError, match=r"h\.jsonl:1: unknown type 'done'"):
        read_history('{"process": 1, "type": "done", "f": "get"}', "jsonl", "h.jsonl")
    with pytest.raises(HistoryError, match="calls get while its put from line 1"):
        read_history('{"process": 1, "type": "invoke", "f": "put", "value": "x"}\n'
                     '{"process": 1, "type": "invoke", "f": "get"}', "jsonl", "h.jsonl")
    with pytest.raises(HistoryError, match="cannot tell the format"):
        read_history("hello\n", None, "h.txt")


def test_jsonl_round_trip_of_events():
    events = [Event(0, "invoke", "put", "v", "k", 1.0), Event(0, "ok", "put", "v", "k", 2.0)]
    text = "\n".join(e.to_json() for e in events)
    ops = read_history(text, "jsonl")
    assert len(ops) == 1 and ops[0].input == "v" and ops[0].ret == 2.0


def test_model_rejects_unknown_function_with_line():
    ops = read_history('{"process": 1, "type": "invoke", "f": "frobnicate"}\n'
                       '{"process": 1, "type": "ok", "f": "frobnicate"}', "jsonl", "x.jsonl")
    with pytest.raises(HistoryError, match=r"x\.jsonl:1: kv model has no function 'frobnicate'"):
        check_operations(ops, KVModel(), source="x.jsonl")


# --------------------------------------------------------------------- CLI
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "clusterkit.cli", "check", "linearizability", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_exit_codes(tmp_path):
    ok = _cli(str(GOLDEN / "kv/c10-ok.txt"), str(GOLDEN / "etcd/etcd_005.log"))
    assert ok.returncode == 0 and ok.stdout.count(": linearizable") == 2
    bad = _cli(str(GOLDEN / "kv/c10-ok.txt"), str(GOLDEN / "kv/c10-bad.txt"))
    assert bad.returncode == 1 and "not linearizable" in bad.stdout
    hard = tmp_path / "hard.jsonl"
    hard.write_text(hard_history(18))
    unknown = _cli(str(hard), "--budget", "0.05")
    assert unknown.returncode == 2 and "unknown" in unknown.stdout
    broken = tmp_path / "broken.edn"
    broken.write_text('{:process 0, :type :invoke, :f :get}\n{:process 0 :type')
    err = _cli(str(broken))
    assert err.returncode == 3 and f"{broken}:2" in err.stderr
    assert _cli(str(tmp_path / "missing.edn")).returncode == 3


def test_cli_runs_over_every_golden_file_and_agrees():
    paths = [str(GOLDEN / p) for p, _ in EXPECTED]
    out = _cli("--quiet", *paths)
    verdicts = {}
    for line in out.stdout.splitlines():
        name, _, rest = line.partition(": ")
        verdicts[name] = rest.startswith("linearizable")
    assert len(verdicts) == 108
    for p, expected in EXPECTED:
        assert verdicts[str(GOLDEN / p)] == (expected == "true"), p
    assert out.returncode == 1


def test_fast_edn_path_agrees_with_full_reader():
    from clusterkit.check import edn
    from clusterkit.check.history import read_edn

    lines = (GOLDEN / "kv/c10-bad.txt").read_text().splitlines()
    for line in lines:
        fast = read_edn([line])[0]
        full = edn.loads(line.strip())
        assert (fast.process, fast.type, fast.f, fast.key, fast.value) == (
            full[edn.Keyword("process")],
            str(full[edn.Keyword("type")]),
            str(full[edn.Keyword("f")]),
            full[edn.Keyword("key")],
            full[edn.Keyword("value")],
        )


def test_cli_exit_code_of_mixed_results_is_the_most_severe(tmp_path):
    hard = tmp_path / "hard.jsonl"
    hard.write_text(hard_history(18))
    bad, ok = str(GOLDEN / "kv/c10-bad.txt"), str(GOLDEN / "kv/c10-ok.txt")
    assert _cli(str(hard), bad, "--budget", "0.05").returncode == 1  # not linearizable beats unknown
    assert _cli(bad, str(hard), "--budget", "0.05").returncode == 1
    assert _cli(ok, str(tmp_path / "missing.edn"), bad).returncode == 3  # unreadable input beats both
