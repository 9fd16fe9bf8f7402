"""The one timing harness (``fastinit.timing``) of ``fastinit profile`` and ``bench/``."""

import time

import pytest

from fastinit import timing


def test_time_calls_warms_up_then_times_batches_synchronised():
    calls, syncs = [], []
    t = timing.time_calls(lambda: calls.append(1), lambda: syncs.append(len(calls)), budget=0.0, repeats=3)
    assert t.repeats == 3 and t.inner >= 1 and len(calls) == 1 + 3 * t.inner
    assert syncs == [1 + k * t.inner for k in range(4)]  # after the warm-up, then after each batch
    assert 0 < t.best_s <= t.median_s


def test_time_calls_fills_the_budget_and_measures_per_call_seconds():
    def nap():
        time.sleep(0.002)

    start = time.perf_counter()
    t = timing.time_calls(nap, budget=0.1, repeats=4)
    assert time.perf_counter() - start >= 0.1 and t.repeats >= 4 and t.inner >= 1
    assert 0.002 <= t.best_s <= t.median_s < 1.0  # seconds per call, not per batch
    start = time.perf_counter()
    single = timing.time_calls(nap, budget=0.05, repeats=2, inner=1)
    assert time.perf_counter() - start >= 0.05  # single calls until the budget is spent
    assert single.inner == 1 and single.repeats >= 2 and single.best_s >= 0.002


def test_time_calls_refuses_bad_arguments():
    for kwargs in (dict(budget=-1), dict(repeats=0), dict(inner=0)):
        with pytest.raises(ValueError, match="need budget"):
            timing.time_calls(lambda: None, **kwargs)


def test_timed_backends_leave_out_the_simulator(monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert timing.timed_backends() == ("numpy", "cpu")
