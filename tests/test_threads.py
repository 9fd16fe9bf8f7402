"""fastinit.threads: the BLAS limit holds inside its block and every setting is restored after it.

Timings (that the limit helps) live in bench/test_bench_pools.py, not here."""

import numpy as np
import pytest

pytest.importorskip("threadpoolctl")

from fastinit import threads


def _blas():
    np.ones((4, 4)) @ np.ones((4, 4))  # NumPy's BLAS is loaded (it is, once numpy is imported)
    return threads.blas_threads()


def test_limit_blas_holds_then_restores():
    before = _blas()
    if not before:
        pytest.skip("no BLAS library with a thread pool is loaded")
    with threads.limit_blas(1):
        assert set(threads.blas_threads().values()) == {1}
    assert threads.blas_threads() == before


def test_limit_blas_restores_after_an_exception():
    before = _blas()
    with pytest.raises(RuntimeError):
        with threads.limit_blas(1):
            raise RuntimeError("stop")
    assert threads.blas_threads() == before


def test_limit_blas_leaves_numba_threads_alone():
    import numba

    n = numba.get_num_threads()
    with threads.limit_blas(1):
        assert numba.get_num_threads() == n
    assert numba.get_num_threads() == n


def test_limit_blas_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        with threads.limit_blas(0):
            pass


@pytest.mark.parametrize("backend", ["numpy", "cuda", None])
def test_pools_for_other_backends_changes_nothing(backend):
    before = _blas()
    with threads.pools_for(backend):
        assert threads.blas_threads() == before
    assert threads.blas_threads() == before


def test_pools_for_cpu_limits_blas():
    before = _blas()
    if not before:
        pytest.skip("no BLAS library with a thread pool is loaded")
    with threads.pools_for("cpu"):
        assert set(threads.blas_threads().values()) == {1}
    assert threads.blas_threads() == before


@pytest.mark.parametrize("backend, inside", [("cpu", {1}), ("numpy", None)])
def test_train_command_holds_the_setting_for_its_backend(tmp_path, monkeypatch, backend, inside):
    """``fastinit train`` on the cpu backend runs with BLAS at one thread, on numpy with BLAS
    as it was; either way the process's setting is as before once the command returns."""
    import fastinit.experiments.train as train_module
    from fastinit import cli

    before = _blas()
    if not before:
        pytest.skip("no BLAS library with a thread pool is loaded")
    seen = []

    def fake_train(config, out, **kwargs):
        seen.append(threads.blas_threads())
        return []

    monkeypatch.setattr(train_module, "train", fake_train)
    status = cli.main(["train", "--backend", backend, "--no-plot", "--out", str(tmp_path / "r.h5"), "-q"])
    assert status == 0
    assert len(seen) == 1
    assert set(seen[0].values()) == (inside or set(before.values()))
    assert threads.blas_threads() == before


@pytest.mark.parametrize("backend, inside", [("cpu", {1}), ("numpy", None)])
def test_train_run_holds_the_setting_for_its_backend(monkeypatch, backend, inside):
    """The library's ``train.run`` holds what the command holds, only while it runs."""
    from types import SimpleNamespace

    from test_train import synthetic

    import fastinit.experiments.train as train_module

    before = _blas()
    if not before:
        pytest.skip("no BLAS library with a thread pool is loaded")
    seen = []

    def fake_train(record, dataset, **kwargs):
        seen.append(threads.blas_threads())
        return SimpleNamespace(label="he")

    monkeypatch.setattr(train_module, "_train", fake_train)
    train_module.run(train_module.TrainConfig(runs=("he",), backend=backend), dataset=synthetic())
    assert len(seen) == 1 and set(seen[0].values()) == (inside or set(before.values()))
    after = threads.blas_threads()  # (a library loaded meanwhile keeps its own count)
    assert {path: after[path] for path in before} == before


def _pools_in_worker(item):
    import numba

    return numba.get_num_threads(), sorted(set(threads.blas_threads().values()))


def test_pool_workers_run_numba_and_blas_on_one_thread():
    """A sweep's (and reproduce's) pool worker runs one item per core: neither pool may spin."""
    from fastinit.experiments import executors

    if max(threads.blas_threads().values(), default=1) < 2:
        pytest.skip("BLAS already runs on one thread here: nothing to hold")
    results = [r for _, r in executors.process_pool(_pools_in_worker, [0, 1], 2)]
    assert results == [(1, [1]), (1, [1])]
