"""Jepsen's set-full: lost, stale, stable, never-read elements."""

from __future__ import annotations

from clusterkit.check.history import Event, pair_events
from clusterkit.check.set_full import check_set_full


def H(*rows):
    return pair_events([Event(p, typ, f, v, None, float(t), t + 1) for t, (p, typ, f, v) in enumerate(rows)])


def test_stable_elements():
    r = check_set_full(H((0, "invoke", "add", 1), (0, "ok", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", (1,))))
    assert r.valid and r.stable == [1]


def test_acknowledged_add_missing_from_later_reads_is_lost():
    r = check_set_full(H((0, "invoke", "add", 1), (0, "ok", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", ())))
    assert not r.valid and r.lost == [1]


def test_missing_then_present_is_stale_not_lost():
    r = check_set_full(H(
        (0, "invoke", "add", 1), (0, "ok", "add", 1),
        (1, "invoke", "read", None), (1, "ok", "read", ()),
        (1, "invoke", "read", None), (1, "ok", "read", (1,)),
    ))
    assert not r.valid and r.stale == [1] and r.lost == []


def test_unacknowledged_add_never_seen_is_not_lost():
    r = check_set_full(H((0, "invoke", "add", 1), (0, "info", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", ())))
    assert r.valid and r.lost == []


def test_read_concurrent_with_add_may_miss_it():
    r = check_set_full(H((0, "invoke", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", ()), (0, "ok", "add", 1)))
    assert r.valid and r.never_read == [1]


def test_failed_add_that_shows_up_is_impossible():
    r = check_set_full(H((0, "invoke", "add", 1), (0, "fail", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", (1, 9))))
    assert not r.valid and r.impossible == [1, 9]
