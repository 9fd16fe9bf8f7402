"""Benchmark of one MLP training step (the seed's 784-100-100-100-100-10, batch 128, fp32).

Group ``train_step``: backend numpy, cpu (one compiled call per step), cuda
(only on a real GPU, never on the simulator) and, when torch is installed,
PyTorch CPU with the same network, weights and number of threads. Every
benchmark first checks one step against the numpy backend, then times
``train_step`` after a warm-up (JIT compilation excluded). ``extra_info``
carries the median step time in ms and the speed-up over the numpy backend
(measured in the same session).

    pytest bench/test_bench_train_step.py --benchmark-only
"""

import os
import time

import numpy as np
import pytest

from fastinit import MLP

SIZES = (784, 100, 100, 100, 100, 10)
BATCH = 128
LR = 0.01
SEED = 0
RTOL, ATOL = 1e-3, 1e-5  # float32, sums over up to 784 terms

_MEDIANS = {}  # backend -> median seconds per step measured in this session


def _batch():
    rng = np.random.default_rng(123)
    x = rng.random((BATCH, SIZES[0]), dtype=np.float32)  # like MNIST pixels in [0, 1)
    labels = rng.integers(0, SIZES[-1], size=BATCH).astype(np.int64)
    return x, labels


def _reference_step():
    """(loss, params after one step) on the numpy backend."""
    x, labels = _batch()
    ref = MLP(SIZES, backend="numpy", seed=SEED)
    loss = ref.train_step(x, labels, LR)
    return loss, ref.params


def _assert_matches_reference(loss, params):
    ref_loss, ref_params = _reference_step()
    assert loss == pytest.approx(ref_loss, rel=RTOL)
    for (w, b), (rw, rb) in zip(params, ref_params):
        np.testing.assert_allclose(w, rw, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(b, rb, rtol=RTOL, atol=ATOL)


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.median  # None under --benchmark-disable


def _quick_median(step, repeat=50):
    """Median seconds of ``step()`` by plain timing (when numpy's benchmark did not run first)."""
    for _ in range(3):
        step()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _numpy_median():
    if "numpy" not in _MEDIANS:
        x, labels = _batch()
        mlp = MLP(SIZES, backend="numpy", seed=SEED)
        _MEDIANS["numpy"] = _quick_median(lambda: mlp.train_step(x, labels, LR))
    return _MEDIANS["numpy"]


def _record(benchmark, name):
    median = _median(benchmark)
    if median is None:
        return
    _MEDIANS[name] = median
    benchmark.extra_info["median_ms"] = round(median * 1e3, 4)
    benchmark.extra_info["speedup_vs_numpy"] = round(_numpy_median() / median, 3)
    if name == "torch" and "cpu" in _MEDIANS:
        benchmark.extra_info["cpu_speedup_vs_torch"] = round(median / _MEDIANS["cpu"], 3)


def _real_gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1":
        return False
    from fastinit.backends import cuda_available

    return cuda_available()


BACKENDS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _real_gpu(), reason="no CUDA GPU"))]


@pytest.mark.benchmark(group="train_step")
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step(benchmark, backend):
    x, labels = _batch()
    mlp = MLP(SIZES, backend=backend, seed=SEED)
    _assert_matches_reference(mlp.train_step(x, labels, LR), mlp.params)
    for _ in range(3):  # warm-up: compilation, workspaces, caches
        mlp.train_step(x, labels, LR)
    benchmark.extra_info.update(backend=backend, sizes="-".join(map(str, SIZES)), batch=BATCH, dtype="float32")
    if backend == "cuda":
        benchmark.extra_info["note"] = "host batch: includes the host-to-device copy of x and labels"
    loss = benchmark(mlp.train_step, x, labels, LR)
    assert np.isfinite(loss)
    _record(benchmark, backend)


def _torch_step_factory(torch, params, x, labels):
    """A plain SGD step of the same network in PyTorch (float32, same initial weights)."""
    ws = [torch.tensor(w, requires_grad=True) for w, _ in params]
    bs = [torch.tensor(b, requires_grad=True) for _, b in params]
    tx, tl = torch.from_numpy(x), torch.from_numpy(labels)
    leaves = ws + bs
    f = torch.nn.functional

    def step():
        h = tx
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = torch.addmm(b, h, w)
            if i < len(ws) - 1:
                h = torch.relu(h)
        loss = f.cross_entropy(h, tl)
        loss.backward()
        with torch.no_grad():
            for p in leaves:
                p.sub_(p.grad, alpha=LR)
                p.grad = None
        return loss.item()

    return step, ws, bs


@pytest.mark.benchmark(group="train_step")
def test_train_step_torch(benchmark):
    torch = pytest.importorskip("torch")
    import numba

    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    x, labels = _batch()
    params = MLP(SIZES, backend="numpy", seed=SEED).params
    step, ws, bs = _torch_step_factory(torch, params, x, labels)
    loss = step()
    _assert_matches_reference(loss, [(w.detach().numpy(), b.detach().numpy()) for w, b in zip(ws, bs)])
    for _ in range(3):
        step()
    benchmark.extra_info.update(backend="torch", threads=threads, torch=torch.__version__)
    assert np.isfinite(benchmark(step))
    _record(benchmark, "torch")
