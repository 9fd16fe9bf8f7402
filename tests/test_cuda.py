"""CUDA-specific tests (the shared conformance cases live in tests/test_kernels.py).

They run on Numba's CUDA simulator by default (conftest sets
NUMBA_ENABLE_CUDASIM=1), and on the real GPU with ``FASTINIT_TEST_GPU=1
pytest tests/test_cuda.py``. Simulator cases stay small (<= 64 x 64).
"""

import os
import re
import subprocess
import textwrap

import numpy as np
import pytest
from commands import argv, fastinit_command, run_python
from conftest import ON_SIMULATOR, tolerances

cuda = pytest.importorskip("numba.cuda")
if not cuda.is_available():
    pytest.skip("no CUDA device and the simulator is off", allow_module_level=True)

import fastinit.kernels.cuda as kc  # noqa: E402
import fastinit.kernels.reference as kr  # noqa: E402

DTYPES = (np.float32, np.float64)
RNG = np.random.default_rng(1234)


def _rand(shape, dtype, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def _host(x):
    return x.copy_to_host()


def _close(got, want, dtype):
    rtol, atol = tolerances(dtype, float(np.abs(want).max()) if np.size(want) else 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _no_cuda_env():
    env = dict(os.environ)
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    env.pop("FASTINIT_TEST_GPU", None)
    return env


def _real_gpu_present():
    """Whether a real CUDA device is visible (asked in a subprocess with the simulator off)."""
    code = "from numba import cuda; print(int(cuda.is_available()))"
    return run_python(code, env=_no_cuda_env(), timeout=120).stdout.strip().endswith("1")


# --------------------------------------------------------------------------- matmul

# Shapes and transposes against the reference: tests/test_kernels.py (its cuda cases).


@pytest.mark.parametrize("config", sorted(kc.MATMUL_CONFIGS))
@pytest.mark.parametrize("trans", [(False, False), (True, True)])
def test_every_tiling_handles_partial_tiles(config, trans):
    """Both tilings (the 128x128 one is picked only for large results) on a partial tile."""
    ta, tb = trans
    m, k, n = 19, 21, 23  # K spans several BK slabs, M and N one partial tile
    a = _rand((k, m) if ta else (m, k), np.float32)
    b = _rand((n, k) if tb else (k, n), np.float32)
    bias = _rand(n, np.float32)
    out = cuda.device_array((m, n), np.float32)
    kc.gemm_into(cuda.to_device(a), cuda.to_device(b), out, ta, tb, cuda.to_device(bias), 3, config=config)
    want = np.maximum(kr.matmul(a, b, trans_a=ta, trans_b=tb) + bias, 0)
    _close(_host(out), want, np.float32)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=8, deadline=None)
@given(
    m=st.integers(1, 24),
    k=st.integers(0, 24),
    n=st.integers(1, 24),
    ta=st.booleans(),
    tb=st.booleans(),
    config=st.sampled_from(sorted(kc.MATMUL_CONFIGS)),
)
def test_matmul_random_shapes_every_tiling(m, k, n, ta, tb, config):
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    a = rng.standard_normal((k, m) if ta else (m, k))
    b = rng.standard_normal((n, k) if tb else (k, n))
    out = cuda.device_array((m, n), np.float64)
    kc.gemm_into(cuda.to_device(a), cuda.to_device(b), out, ta, tb, config=config)
    _close(_host(out), kr.matmul(a, b, trans_a=ta, trans_b=tb), np.float64)


def test_matmul_config_choice():
    assert kc.matmul_config(128, 100) == "16x16"
    assert kc.matmul_config(784, 100) == "32x32"
    assert kc.matmul_config(1024, 1024) == "64x64"
    assert kc.matmul_config(4096, 4096) == "128x128"
    assert set(kc.MATMUL_CONFIGS) == {"16x16", "32x32", "64x64", "128x128"}


def test_matmul_with_zero_inner_dimension_gives_zeros():
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 2), np.float32)
    np.testing.assert_array_equal(_host(kc.matmul(a, b)), np.zeros((3, 2), np.float32))


def test_float32_matmul_accumulates_in_float32():
    """1e8 + 1 - 1e8 is 0 in float32 (1 is below its resolution at 1e8) and 1 in float64."""
    a = np.array([[1e8, 1.0, -1e8]])
    b = np.ones((3, 1))
    got32 = _host(kc.matmul(a.astype(np.float32), b.astype(np.float32)))
    got64 = _host(kc.matmul(a, b))
    assert got32.dtype == np.float32 and got32[0, 0] == 0.0
    assert got64[0, 0] == 1.0


@pytest.mark.skipif(ON_SIMULATOR, reason="PTX only exists for compiled kernels (needs the CUDA toolkit)")
def test_float32_kernels_contain_no_float64_arithmetic():
    """Inspect the PTX of every float32 kernel: no f64 instruction at all, except
    softmax's documented float64 per-row loss and the mean squared error's float64
    per-column sums (converted and stored, never computed)."""
    from numba import float32, float64, int64
    from numba.types import Array, boolean

    a2, a1 = Array(float32, 2, "C"), Array(float32, 1, "C")
    kernels = []
    for config in kc.MATMUL_CONFIGS:
        gemm, _, _ = kc._gemm_kernel(float32, False, True, config)
        kernels.append((gemm, (a2, a2, a2, a1, boolean, int64)))
    fw, bw, sgd = kc._elementwise_kernels(float32)
    kernels += [(fw, (a1, a1, int64)), (bw, (a1, a1, a1, int64)), (sgd, (a1, a1, float32))]
    colsum_bw, _ = kc._column_kernels(float32)
    kernels.append((colsum_bw, (a2, a2, int64, a2, a1)))
    for disp, sig in kernels:
        ptx, _ = cuda.compile_ptx(disp.py_func, sig)
        assert ".f64" not in ptx, disp.py_func.__name__
    # softmax writes its per-row loss and flag as float64 (conversions, constants, stores): no f64 arithmetic
    arithmetic = re.compile(r"\b(add|sub|mul|fma|div|ex2|lg2|rcp|sqrt|max|min|setp)\.\S*f64")
    for softmax in kc._softmax_kernels(float32):
        ptx, _ = cuda.compile_ptx(softmax.py_func, (a2, Array(int64, 1, "C"), a2, Array(float64, 2, "C")))
        assert not arithmetic.findall(ptx), softmax.py_func.__name__
    # mean squared error stores each column's float32 sum as float64
    mse = kc._mse_kernel(float32)
    ptx, _ = cuda.compile_ptx(mse.py_func, (a2, a2, a2, float32, Array(float64, 1, "C")))
    assert not arithmetic.findall(ptx), mse.py_func.__name__


# --------------------------------------------------------------------------- host arrays and in-place rules


def test_host_inputs_are_copied_and_results_are_device_arrays():
    x, w, b = _rand((5, 4), np.float32), _rand((4, 3), np.float32), _rand(3, np.float32)
    y = kc.dense_forward(x, w, b, "tanh")
    assert kc.is_device_array(y)
    _close(_host(y), kr.dense_forward(x, w, b, "tanh"), np.float32)
    s = kc.sigmoid(x)
    assert kc.is_device_array(s)
    _close(_host(s), kr.sigmoid(x), np.float32)


def test_in_place_targets_must_be_device_arrays():
    a = _rand((3, 3), np.float32)
    with pytest.raises(TypeError, match="out must be a device array"):
        kc.matmul(a, a, out=np.empty((3, 3), np.float32))
    with pytest.raises(TypeError, match="param must be a device array"):
        kc.sgd_update(a.copy(), a, 0.1)
    with pytest.raises(TypeError, match="dw must be a device array"):
        kc.dense_backward(a, a, a, a, dw=np.empty((3, 3), np.float32))
    with pytest.raises(TypeError, match="grad must be a device array"):
        kc.softmax_cross_entropy(a, np.zeros(3, np.int64), grad=np.empty((3, 3), np.float32))


def test_in_place_results_land_in_the_given_device_arrays():
    x = _rand((6, 5), np.float64)
    out = cuda.device_array((6, 5), np.float64)
    assert kc.relu(cuda.to_device(x), out=out) is out
    np.testing.assert_array_equal(_host(out), np.maximum(x, 0))
    p, g = _rand(7, np.float32), _rand(7, np.float32)
    pd = cuda.to_device(p)
    assert kc.sgd_update(pd, g, 0.5) is pd
    _close(_host(pd), p - np.float32(0.5) * g, np.float32)


def test_checks_run_before_any_copy():
    with pytest.raises(ValueError, match="inner dimensions"):
        kc.matmul(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        kc.matmul(np.zeros((2, 2), np.float32), cuda.to_device(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="unknown activation"):
        kc.activation_forward(np.zeros(3, np.float32), "gelu")


# --------------------------------------------------------------------------- layers, softmax


@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh", "relu"])
def test_dense_backward_matches_reference(activation):
    dtype = np.float64
    x, w, b = _rand((9, 6), dtype), _rand((6, 5), dtype), _rand(5, dtype)
    y = kr.dense_forward(x, w, b, activation)
    dy = _rand((9, 5), dtype)
    _close(_host(kc.dense_forward(x, w, b, activation)), y, dtype)
    got = kc.dense_backward(x, w, y, dy, activation)
    want = kr.dense_backward(x, w, y, dy, activation)
    for g, r in zip(got, want):
        _close(_host(g), r, dtype)
    dx, _, _ = kc.dense_backward(x, w, y, dy, activation, compute_dx=False)
    assert dx is None


def test_column_sums_over_many_rows_are_exact_in_float64():
    x = RNG.integers(-5, 5, size=(61, 37)).astype(np.float64)
    out = cuda.device_array(37, np.float64)
    kc.column_sums_into(cuda.to_device(x), out)
    np.testing.assert_array_equal(_host(out), x.sum(axis=0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classes", [1, 40, 100], ids=["1class", "narrow", "wide"])
def test_softmax_cross_entropy_is_stable_and_matches(dtype, classes):
    """Both kernels: one thread per row (<= 64 classes) and one block per row."""
    logits = _rand((5, classes), dtype, scale=300.0)
    logits[0, :] = 1000.0
    logits[1, 0] = -1000.0
    labels = RNG.integers(0, classes, 5)
    loss, grad = kc.softmax_cross_entropy(logits, labels)
    want_loss, want_grad = kr.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert loss == pytest.approx(want_loss, rel=tolerances(dtype)[0])
    _close(_host(grad), want_grad, dtype)


def test_out_of_range_labels_raise_for_host_and_device_labels():
    logits = _rand((4, 3), np.float32)
    bad = np.array([0, 1, 3, 2], np.int32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        kc.softmax_cross_entropy(logits, bad)
    with pytest.raises(ValueError, match="1 device label"):
        kc.softmax_cross_entropy(cuda.to_device(logits), cuda.to_device(bad))
    wide = _rand((3, 70), np.float32)
    with pytest.raises(ValueError, match="2 device label"):
        kc.softmax_cross_entropy(cuda.to_device(wide), cuda.to_device(np.array([70, 0, -1], np.int64)))
    # device labels in range are fine
    ok = np.array([0, 1, 2, 2], np.int64)
    loss, _ = kc.softmax_cross_entropy(cuda.to_device(logits), cuda.to_device(ok))
    assert loss == pytest.approx(kr.softmax_cross_entropy(logits, ok)[0], rel=1e-5)


def test_segment_sums_of_squares():
    flat = RNG.standard_normal(50).astype(np.float32)
    segments = np.array([[0, 10], [10, 0], [12, 38]], np.int64)
    out = cuda.device_array(3, np.float64)
    kc.segment_sumsq_into(cuda.to_device(flat), cuda.to_device(segments), out)
    f = flat.astype(np.float64)
    np.testing.assert_allclose(_host(out), [np.sum(f[:10] ** 2), 0.0, np.sum(f[12:] ** 2)], rtol=1e-12)


def test_gather_building_blocks():
    src = _rand((10, 4), np.float32)
    idx = np.array([9, 0, 3, 3], np.int64)
    out = cuda.device_array((4, 4), np.float32)
    kc.gather_rows_into(cuda.to_device(src), cuda.to_device(idx), out)
    np.testing.assert_array_equal(_host(out), src[idx])
    lab = np.arange(10, dtype=np.int64) * 7
    lout = cuda.device_array(4, np.int64)
    kc.gather_into(cuda.to_device(lab), cuda.to_device(idx), lout)
    np.testing.assert_array_equal(_host(lout), lab[idx])


# --------------------------------------------------------------------------- the MLP on cuda


@pytest.mark.parametrize("activation", ["sigmoid"])
def test_mlp_step_on_cuda_matches_cpu_in_float64(activation):
    from fastinit.mlp import MLP

    sizes = [12, 9, 7, 5]
    x = _rand((10, 12), np.float64)
    labels = RNG.integers(0, 5, 10)
    cpu = MLP(sizes, activation=activation, init="he", backend="cpu", dtype="float64", seed=3)
    gpu = MLP(sizes, activation=activation, init="he", backend="cuda", dtype="float64", seed=3)
    for _ in range(2):
        assert gpu.train_step(x, labels, 0.1) == pytest.approx(cpu.train_step(x, labels, 0.1), rel=1e-12)
    for (wc, bc), (wg, bg) in zip(cpu.params, gpu.params):
        np.testing.assert_allclose(wg, wc, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bg, bc, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gpu.grad_norms(), cpu.grad_norms(), rtol=1e-10)
    logits_c, hidden_c = cpu.forward(x, record=True)
    logits_g, hidden_g = gpu.forward(x, record=True)
    assert isinstance(logits_g, np.ndarray) and len(hidden_g) == len(hidden_c) == 2
    np.testing.assert_allclose(logits_g, logits_c, rtol=1e-10, atol=1e-12)


def test_cuda_params_are_host_copies():
    from fastinit.mlp import MLP

    net = MLP([4, 3, 2], backend="cuda", dtype="float32", seed=0)
    (w, b), _ = net.params
    assert isinstance(w, np.ndarray)
    w[...] = 123.0
    assert not np.any(net.params[0][0] == 123.0)


def test_resident_dataset_steps_match_host_batches():
    from fastinit.mlp import MLP

    sizes = [6, 5, 3]
    x = _rand((20, 6), np.float64)
    labels = RNG.integers(0, 3, 20)
    ref = MLP(sizes, activation="tanh", backend="cpu", dtype="float64", seed=1)
    gpu = MLP(sizes, activation="tanh", backend="cuda", dtype="float64", seed=1)
    gpu.set_dataset(x, labels)
    idx = np.array([4, 19, 0, 4, 7])
    want = ref.train_step(np.ascontiguousarray(x[idx]), labels[idx], 0.2)
    assert gpu.train_step_indices(idx, 0.2) == pytest.approx(want, rel=1e-12)
    want = ref.train_step(np.ascontiguousarray(x[idx]), labels[idx], 0.2)
    assert gpu.train_step_indices(idx, 0.2, return_loss=False) is None
    assert gpu.last_loss() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError):
        gpu.train_step_indices(np.array([20]), 0.1)
    with pytest.raises(ValueError, match="labels"):
        gpu.set_dataset(x, labels + 3)


# --------------------------------------------------------------------------- no GPU


def test_import_needs_no_cuda():
    code = textwrap.dedent(
        """
        import fastinit, kernels, fastinit.kernels.cuda, fastinit.mlp
        from fastinit.backends import BackendError, NO_CUDA_MESSAGE, cuda_available
        if not cuda_available():
            try:
                fastinit.MLP([3, 2], backend="cuda")
            except BackendError as exc:
                assert str(exc) == NO_CUDA_MESSAGE
            else:
                raise SystemExit("MLP(backend='cuda') did not raise without a GPU")
        print("ok")
        """
    )
    res = run_python(code, env=_no_cuda_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_cli_backend_cuda_without_a_device_is_one_line(tmp_path):
    if _real_gpu_present():
        pytest.skip("a real GPU is present")
    from fastinit.backends import NO_CUDA_MESSAGE

    command = fastinit_command(argv("histogram", backend="cuda", out=tmp_path / "r.h5", no_plot=True, q=True))
    res = subprocess.run(command, env=_no_cuda_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert NO_CUDA_MESSAGE in lines[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r.h5").exists()
