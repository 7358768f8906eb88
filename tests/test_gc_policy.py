"""The node process's garbage-collector policy: long-lived objects frozen out of the collector's
walks, a full collection now and then that still reclaims cycles dropped since."""

from __future__ import annotations

import gc
import weakref

import pytest

from net.gc_policy import GC_YOUNG, LongLivedGC


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # only the cyclic collector can reclaim it


@pytest.fixture
def policy():
    saved = gc.get_threshold()
    p = LongLivedGC(every=60.0, growth=1.5)
    p.install()
    try:
        yield p
    finally:
        p.uninstall()
        gc.set_threshold(*saved)


def test_what_survives_an_older_collection_is_frozen_and_a_full_collection_reclaims_dropped_cycles(policy) -> None:
    assert gc.get_threshold()[0] >= GC_YOUNG
    policy.install()  # twice: still one callback
    assert gc.callbacks.count(policy._after_collection) == 1
    kept = [_Cycle() for _ in range(100)]
    alive = [weakref.ref(c) for c in kept]
    gc.collect(0)
    assert all(r() is not None for r in alive)
    gc.collect(1)
    assert gc.get_freeze_count() >= len(kept)  # survived a middle collection: frozen
    del kept  # cycles, dropped while frozen: no collection reaches them...
    gc.collect()
    assert all(r() is not None for r in alive)
    assert policy.collect() >= 0  # ...until the policy's full one
    assert policy.full_collections == 1 and all(r() is None for r in alive)
    assert policy.frozen_after_full > 0 and gc.get_freeze_count() > 0  # what is left is frozen again


def test_a_full_collection_is_due_only_after_its_interval_and_once_the_frozen_set_grew(policy) -> None:
    policy.frozen_after_full = gc.get_freeze_count() + 10 * GC_YOUNG  # as if far more were frozen then
    assert not policy.due(policy.last_full + 3600)  # long enough ago, but nothing grew
    policy.frozen_after_full = 0
    gc.collect(1)
    grew = gc.get_freeze_count() >= 1.5 * GC_YOUNG
    assert not policy.due(policy.last_full + 1)  # too soon, whatever grew
    assert policy.due(policy.last_full + 61) == grew


def test_bad_settings_and_uninstall() -> None:
    for bad in ({"every": 0}, {"growth": 1.0}, {"check": -1}):
        with pytest.raises(ValueError):
            LongLivedGC(**bad)
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        p = LongLivedGC()
        p.install()
        assert gc.get_threshold()[0] == GC_YOUNG
        gc.collect(1)
        p.uninstall()
        assert p._after_collection not in gc.callbacks and gc.get_freeze_count() == 0
        assert gc.get_threshold() == (700, 10, 10)  # as they were
    finally:
        gc.set_threshold(*saved)
    p.uninstall()  # twice: nothing to undo
