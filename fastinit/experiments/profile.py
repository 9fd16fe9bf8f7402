"""``fastinit profile``: time every kernel and the training step on each backend.

What is measured, per backend (``numpy`` = ``fastinit.kernels.reference``, ``cpu`` =
``fastinit.kernels.cpu``, ``cuda`` = ``fastinit.kernels.cuda``):

- ``matmul`` at the MLP's shapes (784-100-100-100-100-10, batch 128: the
  forward product, the weight gradient ``x.T @ dz`` and the back-propagated
  ``dz @ W.T``) and at 1024, 2048 and 4096 squares: GFLOP/s (2 M N K flops);
- ``sigmoid``, ``tanh``, ``relu`` forward, ``softmax_xent`` and
  ``sgd_update``: GB/s (bytes read + written once);
- ``train_step``: one SGD step of that MLP (samples/s and GFLOP/s, about 6
  flops per weight per sample).

How: every case first runs once on each backend and its result is checked
against the NumPy reference (``ProfileError`` if it disagrees: a wrong kernel
is never timed); that run is also the warm-up (JIT compilation excluded).
Then it is timed with :func:`fastinit.timing.time_calls`, the timing harness
the benchmark suite (``bench/``) uses too: ``inner`` calls are timed together,
at least ``repeats`` times, and the median per call is reported. CUDA launches
are asynchronous: the device is synchronised before each clock stop. The
backends are timed one after the other, each after a pause
(:func:`fastinit.timing.settle`, not with ``quick``) so that the thread pool of
the one before is idle. Times are those of the public call a user makes
(argument checks and launch overhead included, which dominate the smallest
cases). For CUDA two times are reported: ``time_s`` with inputs and outputs
resident on the device (kernel time plus launch overhead; softmax uses the
device-level ``softmax_xent_into`` so that the loss is not copied back),
and ``time_xfer_s`` including the host-to-device copies of the inputs and the
copy of the result back (what a caller holding NumPy arrays pays). For the
training step, the kernel-only time uses the device-resident data set
(``MLP.set_dataset`` + ``MLP.train_step_indices(..., return_loss=False)``,
loss left on the device) and the with-transfers time is ``MLP.train_step``
on host arrays (batch in, loss out).

The CUDA backend is never profiled by default on Numba's simulator
(``NUMBA_ENABLE_CUDASIM=1``, see :func:`fastinit.timing.timed_backends`):
simulator timings are meaningless. Ask for it
explicitly (``--backends cuda``) to exercise the code path.

Results: :func:`run` of a :class:`ProfileConfig` returns a :class:`ProfileResult`; it can be
printed (:func:`format_table`), written to HDF5 under
``/profile/<dtype>/<backend>`` (:func:`write`, read back by :func:`read`), to JSON
(:func:`write_json`) and drawn (``fastinit.plots.plot_profile``).

Python use::

    from fastinit.experiments.profile import ProfileConfig, format_table, run

    result = run(ProfileConfig(backends=("numpy", "cpu"), kernels=("matmul",), quick=True))
    print(format_table(result))
"""

import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import schema
from ..backends import BACKENDS, KernelBackend, check_backend
from ..errors import FastinitError
from ..formatting import format_time
from ..outputs import why_unwritable, write_text
from ..timing import SETTLE_S, settle, time_calls, timed_backends

__all__ = [
    "ProfileError",
    "ProfileConfig",
    "ProfileRecord",
    "ProfileResult",
    "run",
    "format_table",
    "write",
    "write_json",
    "read",
    "KERNELS",
    "MLP_SIZES",
]

#: The MNIST network of the experiments and its mini-batch.
MLP_SIZES = (784, 100, 100, 100, 100, 10)
MLP_BATCH = 128
SQUARES = (1024, 2048, 4096)
ELEMENTS = (1 << 16, 1 << 20, 1 << 22)
SOFTMAX_SHAPES = ((128, 10), (4096, 10), (1024, 1000))

QUICK_MLP_SIZES = (64, 32, 10)
QUICK_BATCH = 16
QUICK_SQUARES = (32, 64)
QUICK_ELEMENTS = (1024, 4096)
QUICK_SOFTMAX_SHAPES = ((16, 10),)


class ProfileError(FastinitError, RuntimeError):
    """A backend's result disagreed with the NumPy reference, so it was not timed."""


@dataclass
class ProfileRecord:
    """One timed case on one backend (times in seconds per call, medians).

    Parameters
    ----------
    kernel : str
        One of ``KERNELS``.
    case : str
        The case, e.g. ``"1024^2"`` or ``"65536 elements"``.
    backend : {'numpy', 'cpu', 'cuda'}
        The backend timed.
    size : float
        The figure's x-axis: n of an n^3 matmul, elements, or the batch size.
    time_s : float
        Median seconds per call (CUDA: with the data on the device).
    time_xfer_s : float
        CUDA: median seconds per call with the host<->device copies; NaN elsewhere.
    work : float
        Flops (unit GFLOP/s) or bytes (unit GB/s) per call.
    unit : {'GFLOP/s', 'GB/s'}
        The unit of `throughput`.
    throughput : float
        ``work / time_s / 1e9``.
    speedup : float, default nan
        numpy's time / this time (NaN when numpy was not timed).
    inner : int, default 1
        Calls per timed batch.
    repeats : int, default 1
        Timed batches.
    """

    kernel: str
    case: str
    backend: str
    size: float
    time_s: float
    time_xfer_s: float
    work: float
    unit: str
    throughput: float
    speedup: float = math.nan
    inner: int = 1
    repeats: int = 1


@dataclass
class ProfileResult:
    """What :func:`run` measured.

    Parameters
    ----------
    records : list of ProfileRecord
        One per case and backend.
    dtype : {'float32', 'float64'}
        The arrays' dtype.
    backends : tuple of str
        The backends profiled, in canonical order.
    quick : bool
        Whether the quick sizes and timings were used.
    info : dict, optional
        The machine: Python, Numba, CPU count, GPU name and whether CUDA ran on the simulator.
    """

    records: list
    dtype: str
    backends: tuple
    quick: bool
    info: dict = field(default_factory=dict)

    def to_dict(self):
        """The result as plain JSON-ready data (NaN as None).

        Returns
        -------
        dict
            ``dtype``, ``backends``, ``quick``, ``info`` and ``records`` (a list of dicts with
            the fields of :class:`ProfileRecord`).
        """
        return {
            "dtype": self.dtype,
            "backends": list(self.backends),
            "quick": self.quick,
            "info": self.info,
            "records": [_jsonable(asdict(r)) for r in self.records],
        }


def _jsonable(d):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- backends


def _check(name, backend, got, want, dtype, k_dim=1):
    """Raise ``ProfileError`` unless ``got`` matches ``want`` within the dtype's tolerance.

    rtol 1e-3 (float32) or 1e-9 (float64), atol rtol * max|want| * sqrt(K / 1024 + 1):
    far below any error a wrong index or a race would make."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    rtol = 1e-3 if np.dtype(dtype) == np.float32 else 1e-9
    scale = float(np.abs(want).max()) if want.size else 1.0
    atol = rtol * max(scale, 1e-30) * math.sqrt(k_dim / 1024 + 1)
    ok = got.shape == want.shape and bool(np.all(np.abs(got - want) <= atol + rtol * np.abs(want)))
    if not ok:
        bad = float(np.nanmax(np.abs(got - want))) if got.shape == want.shape else math.nan
        raise ProfileError(
            f"{name} on {backend}: result differs from the NumPy reference (max abs error {bad:.3g}, "
            f"atol {atol:.3g}); not timed"
        )


# --------------------------------------------------------------------------- cases


@dataclass
class _Case:
    kernel: str
    case: str
    size: float
    work: float
    unit: str
    make: object  # rng, dtype -> dict of host inputs
    run: object  # (backend, inputs on backend, outputs) -> None; result in outputs
    outputs: object  # (backend, host inputs) -> dict of outputs on backend
    result: object  # outputs -> the array to check
    reference: object  # host inputs -> expected array
    k_dim: int = 1
    to_host_keys: tuple = ()  # outputs copied back in the with-transfers timing


def _matmul_case(label, m, k, n, trans_a=False, trans_b=False, size=None):
    def make(rng, dtype):
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
        return {"a": a, "b": b}

    def run(be, x, out):
        be.k.matmul(x["a"], x["b"], out=out["c"], trans_a=trans_a, trans_b=trans_b)

    def ref(x):
        from fastinit.kernels import reference

        return reference.matmul(x["a"], x["b"], trans_a=trans_a, trans_b=trans_b)

    return _Case(
        "matmul",
        label,
        size or round((m * k * n) ** (1 / 3), 1),
        2.0 * m * k * n,
        "GFLOP/s",
        make,
        run,
        lambda be, x: {"c": be.empty((m, n), x["a"].dtype)},
        lambda out: out["c"],
        ref,
        k_dim=k,
        to_host_keys=("c",),
    )


def _activation_case(name, n):
    def make(rng, dtype):
        return {"x": (rng.standard_normal(n) * 3).astype(dtype)}

    def run(be, x, out):
        getattr(be.k, name)(x["x"], out=out["y"])

    def ref(x):
        from fastinit.kernels import reference

        return getattr(reference, name)(x["x"])

    return _Case(
        name,
        f"{n} elements",
        n,
        2.0 * n,
        "GB/s",
        make,
        run,
        lambda be, x: {"y": be.empty(x["x"].shape, x["x"].dtype)},
        lambda out: out["y"],
        ref,
        to_host_keys=("y",),
    )


def _softmax_case(rows, cols):
    def make(rng, dtype):
        return {
            "logits": (rng.standard_normal((rows, cols)) * 5).astype(dtype),
            "labels": rng.integers(0, cols, rows).astype(np.int64),
        }

    def outputs(be, x):
        out = {"grad": be.empty((rows, cols), x["logits"].dtype)}
        if be.is_cuda:
            out["rows"] = be.empty((rows, 2), np.float64)
            out["stats"] = be.empty(2, np.float64)
        return out

    def run(be, x, out):
        if be.is_cuda:  # the device-level call: no per-call allocation, loss stays on the device
            be.k.softmax_xent_into(x["logits"], x["labels"], out["grad"], out["rows"], out["stats"])
        else:
            be.k.softmax_cross_entropy(x["logits"], x["labels"], grad=out["grad"])

    def ref(x):
        from fastinit.kernels import reference

        return reference.softmax_cross_entropy(x["logits"], x["labels"])[1]

    return _Case(
        "softmax_xent",
        f"{rows}x{cols}",
        rows * cols,
        2.0 * rows * cols,
        "GB/s",
        make,
        run,
        outputs,
        lambda out: out["grad"],
        ref,
        to_host_keys=("grad", "stats"),
    )


def _sgd_case(n, label=None):
    lr = 1e-3

    def make(rng, dtype):
        return {"param": rng.standard_normal(n).astype(dtype), "grad": rng.standard_normal(n).astype(dtype)}

    def outputs(be, x):
        return {"p": be.to_device(x["param"])}

    def run(be, x, out):
        be.k.sgd_update(out["p"], x["grad"], lr)

    def ref(x):
        return x["param"] - x["param"].dtype.type(lr) * x["grad"]

    return _Case(
        "sgd_update",
        label or f"{n} elements",
        n,
        3.0 * n,
        "GB/s",
        make,
        run,
        outputs,
        lambda out: out["p"],
        ref,
        to_host_keys=("p",),
    )


def _element_bytes(case, dtype):
    """Scale the element counts of GB/s cases into bytes for ``dtype``."""
    if case.unit == "GB/s":
        case.work *= np.dtype(dtype).itemsize
    return case


def _cases(quick, sizes, dtype):
    mlp, batch = (QUICK_MLP_SIZES, QUICK_BATCH) if quick else (MLP_SIZES, MLP_BATCH)
    squares = sizes or (QUICK_SQUARES if quick else SQUARES)
    elements = QUICK_ELEMENTS if quick else ELEMENTS
    softmax = QUICK_SOFTMAX_SHAPES if quick else SOFTMAX_SHAPES
    h = mlp[1]
    cases = [
        _matmul_case(f"mlp forward {batch}x{mlp[0]} @ {mlp[0]}x{h}", batch, mlp[0], h),
        _matmul_case(f"mlp dW x.T @ dz {mlp[0]}x{batch} @ {batch}x{h}", mlp[0], batch, h, trans_a=True),
        _matmul_case(f"mlp dx dz @ W.T {batch}x{h} @ {h}x{h}", batch, h, h, trans_b=True),
    ]
    cases += [_matmul_case(f"{n}^2", n, n, n, size=n) for n in squares]
    for name in ("sigmoid", "tanh", "relu"):
        cases += [_activation_case(name, n) for n in elements]
    cases += [_softmax_case(r, c) for r, c in softmax]
    n_params = sum(fi * fo + fo for fi, fo in zip(mlp[:-1], mlp[1:]))
    cases += [_sgd_case(n_params, f"mlp params ({n_params})")] + [_sgd_case(n) for n in elements]
    return [_element_bytes(c, dtype) for c in cases]


# --------------------------------------------------------------------------- measuring


def _record(kernel, case, backend, size, work, unit, timing, with_transfers=None):
    """The record of a timed case: ``timing`` of the call alone, ``with_transfers`` (CUDA) of the
    call with the host<->device copies."""
    return ProfileRecord(
        kernel,
        case,
        backend,
        float(size),
        timing.median_s,
        with_transfers.median_s if with_transfers else math.nan,
        float(work),
        unit,
        work / timing.median_s / 1e9,
        inner=timing.inner,
        repeats=timing.repeats,
    )


def _measure_case(case, be, host_inputs, dtype, budget, repeats):
    inputs = {k: be.to_device(v) for k, v in host_inputs.items()}
    outputs = case.outputs(be, host_inputs)
    case.run(be, inputs, outputs)  # warm-up (compiles) and the checked result
    be.sync()
    _check(
        f"{case.kernel} {case.case}",
        be.name,
        be.to_host(case.result(outputs)),
        case.reference(host_inputs),
        dtype,
        case.k_dim,
    )
    timing = time_calls(lambda: case.run(be, inputs, outputs), be.sync, budget=budget, repeats=repeats)
    xfer = None
    if be.is_cuda:

        def with_transfers():
            dev = {k: be.to_device(v) for k, v in host_inputs.items()}
            case.run(be, dev, outputs)
            for key in case.to_host_keys:
                if key in outputs:
                    be.to_host(outputs[key])

        xfer = time_calls(with_transfers, be.sync, budget=budget, repeats=repeats)
    return _record(case.kernel, case.case, be.name, case.size, case.work, case.unit, timing, xfer)


def _train_records(be, quick, dtype, budget, repeats, ref_loss_cache):
    from ..mlp import MLP

    sizes, batch = (QUICK_MLP_SIZES, QUICK_BATCH) if quick else (MLP_SIZES, MLP_BATCH)
    rng = np.random.default_rng(7)
    x = rng.random((batch, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], batch).astype(np.int64)
    lr = 0.01
    flops = 6.0 * batch * sum(fi * fo for fi, fo in zip(sizes[:-1], sizes[1:]))
    case = f"MLP {'-'.join(map(str, sizes))} relu, batch {batch}"
    if "loss" not in ref_loss_cache:
        ref_loss_cache["loss"] = MLP(sizes, "relu", "he", backend="numpy", dtype=dtype, seed=0).train_step(
            x, labels, lr
        )
    model = MLP(sizes, "relu", "he", backend=be.name, dtype=dtype, seed=0)
    loss = model.train_step(x, labels, lr)  # warm-up and check
    want = ref_loss_cache["loss"]
    if not abs(loss - want) <= (1e-4 if np.dtype(dtype) == np.float32 else 1e-10) * max(1.0, abs(want)):
        raise ProfileError(
            f"train_step on {be.name}: loss {loss} differs from the NumPy reference {want}; not timed"
        )
    on_host = time_calls(lambda: model.train_step(x, labels, lr), be.sync, budget=budget, repeats=repeats)
    if not be.is_cuda:
        return _record("train_step", case, be.name, batch, flops, "GFLOP/s", on_host)
    model.set_dataset(x, labels)  # the kernel-only time: the data set on the device, the loss left there
    idx = np.arange(batch)
    on_device = time_calls(
        lambda: model.train_step_indices(idx, lr, return_loss=False), be.sync, budget=budget, repeats=repeats
    )
    return _record("train_step", case, be.name, batch, flops, "GFLOP/s", on_device, on_host)


def _device_info(backends):
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    if "cuda" in backends:
        from numba import cuda

        info["cuda_simulator"] = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
        try:
            name = cuda.get_current_device().name
            info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as exc:  # the simulator's fake device has no name
            info["gpu"] = (
                "Numba CUDA simulator" if info["cuda_simulator"] else f"unknown ({type(exc).__name__})"
            )
    return info


KERNELS = ("matmul", "sigmoid", "tanh", "relu", "softmax_xent", "sgd_update", "train_step")


@dataclass(frozen=True)
class ProfileConfig:
    """What :func:`run` times.

    Parameters
    ----------
    backends : tuple of {'numpy', 'cpu', 'cuda'}, optional
        The backends to profile; :func:`fastinit.timing.timed_backends` when None or empty
        (cuda only on a real GPU).
    quick : bool, default False
        Small sizes and short timings (tests, smoke runs).
    dtype : {'float32', 'float64'}, default 'float32'
        The arrays' dtype.
    sizes : tuple of int, optional
        The matmul squares n (n x n times n x n); default 1024 2048 4096, with `quick` 32 64.
    budget : float, optional
        Seconds of timing per case and backend; default 0.5, with `quick` 0.02.
    repeats : int, optional
        Timed batches per case, at least (the median is taken); default 5, with `quick` 3.
    kernels : tuple of str, optional
        Only these names of ``KERNELS``; all when None or empty.
    seed : int, default 0
        Seed of the random inputs (the same inputs on every backend).
    """

    backends: tuple = None
    quick: bool = False
    dtype: str = "float32"
    sizes: tuple = None
    budget: float = None
    repeats: int = None
    kernels: tuple = None
    seed: int = 0

    def validate(self):
        """The config with its defaults filled in.

        Returns
        -------
        ProfileConfig
            ``backends`` in ``fastinit.backends.BACKENDS`` order, ``kernels`` a tuple, ``sizes``
            a tuple of int (or None), ``budget`` and ``repeats`` set, ``dtype`` a name.

        Raises
        ------
        fastinit.backends.BackendError
            For an unknown backend.
        ValueError
            For a bad dtype, a repeated backend, a size < 1 or an unknown kernel.
        """
        dtype = np.dtype(self.dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        backends = tuple(timed_backends() if not self.backends else self.backends)
        for name in backends:
            check_backend(name)
        if len(set(backends)) != len(backends):
            raise ValueError(f"backends must not repeat, got {' '.join(backends)}")
        sizes = self.sizes
        if sizes is not None and (not sizes or any(int(s) < 1 for s in sizes)):
            raise ValueError(f"sizes must be positive integers, got {sizes!r}")
        kernels = tuple(KERNELS if not self.kernels else self.kernels)
        unknown = [k for k in kernels if k not in KERNELS]
        if unknown:
            raise ValueError(f"unknown kernel {unknown[0]!r}; expected some of {', '.join(KERNELS)}")
        return replace(
            self,
            backends=tuple(sorted(backends, key=BACKENDS.index)),
            quick=bool(self.quick),
            dtype=dtype.name,
            sizes=tuple(int(s) for s in sizes) if sizes else None,
            budget=self.budget if self.budget is not None else (0.02 if self.quick else 0.5),
            repeats=self.repeats if self.repeats is not None else (3 if self.quick else 5),
            kernels=kernels,
        )


def _stderr_line(message):
    print(f"fastinit: profiling {message}", file=sys.stderr)


def run(config, *, progress=True, log=None):
    """Check, then time every kernel and the training step on each backend.

    Each case is checked against the NumPy reference, then timed with
    :func:`fastinit.timing.time_calls`; the backends are timed one after the other, each
    after :func:`fastinit.timing.settle` (not with ``config.quick``).

    Parameters
    ----------
    config : ProfileConfig
        Validated here.
    progress : bool, default True
        Report each case and backend as it starts; False reports nothing.
    log : callable, optional
        Called with that report (str, e.g. ``"relu 1024 elements on cpu"``); default: the line
        ``fastinit: profiling <report>`` on stderr.

    Returns
    -------
    ProfileResult
        One record per case and backend, in the order of the cases, each case's backends in
        ``fastinit.backends.BACKENDS`` order, with speed-ups over numpy when numpy was timed.

    Raises
    ------
    fastinit.backends.BackendError
        For an unknown backend, or cuda without a GPU.
    ValueError
        For a bad config (see :meth:`ProfileConfig.validate`).
    ProfileError
        If a backend's result disagrees with the NumPy reference (it is not timed).
    """
    c = config.validate()
    log = (log or _stderr_line) if progress else (lambda message: None)
    bes = [KernelBackend(name) for name in c.backends]  # BackendError before any work
    cases = [case for case in _cases(c.quick, c.sizes, c.dtype) if case.kernel in c.kernels]
    records = []
    train_cache = {}
    for be in bes:
        settle(0.0 if c.quick else SETTLE_S)  # the pool of the backend timed before goes idle
        for i, case in enumerate(cases):
            log(f"{case.kernel} {case.case} on {be.name}")
            host_inputs = case.make(np.random.default_rng([c.seed, i]), c.dtype)  # the same on every backend
            records.append(_measure_case(case, be, host_inputs, c.dtype, c.budget, c.repeats))
        if "train_step" in c.kernels:
            log(f"train_step on {be.name}")
            records.append(_train_records(be, c.quick, c.dtype, c.budget, c.repeats, train_cache))
    position = {(case.kernel, case.case): i for i, case in enumerate(cases)}
    records.sort(key=lambda r: (position.get((r.kernel, r.case), len(cases)), c.backends.index(r.backend)))
    _fill_speedups(records)
    return ProfileResult(records, c.dtype, c.backends, c.quick, _device_info(c.backends))


def _fill_speedups(records):
    base = {(r.kernel, r.case): r.time_s for r in records if r.backend == "numpy"}
    for r in records:
        t = base.get((r.kernel, r.case))
        r.speedup = t / r.time_s if t else math.nan


# --------------------------------------------------------------------------- output


def format_table(result):
    """The profile as an aligned text table.

    Parameters
    ----------
    result : ProfileResult
        What :func:`run` measured.

    Returns
    -------
    str
        One row per case and backend (time, time with transfers, throughput, speed-up over
        numpy), then the dtype, the machine and how the times were taken.
    """
    head = ("kernel", "case", "backend", "time", "w/ transfers", "throughput", "vs numpy")
    rows = [head]
    for r in result.records:
        rows.append(
            (
                r.kernel,
                r.case,
                r.backend,
                format_time(r.time_s),
                format_time(r.time_xfer_s),
                f"{r.throughput:.3g} {r.unit}",
                "-" if not math.isfinite(r.speedup) else f"{r.speedup:.2f}x",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    info = ", ".join(f"{k}={v}" for k, v in result.info.items())
    lines.append(f"dtype {result.dtype}; {info}")
    lines.append(
        "time: median per call, warm-up excluded, device synchronised; "
        "w/ transfers: CUDA including host<->device copies"
    )
    if result.info.get("cuda_simulator"):
        lines.append("WARNING: cuda ran on Numba's CUDA simulator: its timings are meaningless")
    return "\n".join(lines)


_COLUMNS = tuple(d.name for d in schema.PROFILE.datasets)


def write(f, result):
    """Write `result` into an open results file under ``/profile/<dtype>/<backend>``.

    Each group holds one column per record field (``kernel``, ``case``,
    ``unit`` as UTF-8 strings; ``size``, ``time_s``, ``time_xfer_s``,
    ``work``, ``throughput``, ``speedup`` float64; ``inner``, ``repeats``
    int64; units and descriptions from :data:`fastinit.schema.PROFILE`) and
    the attrs ``quick`` and the device info; other backends' groups are kept.

    Parameters
    ----------
    f : h5py.File
        A results file open for writing (``fastinit.store.open_results``).
    result : ProfileResult
        What :func:`run` measured.

    Returns
    -------
    list of str
        The group paths written.
    """
    import h5py

    from ..store import replace_group

    paths = []
    for backend in result.backends:
        rows = [r for r in result.records if r.backend == backend]
        path = schema.PROFILE.at(dtype=result.dtype, backend=backend)
        attrs = {"quick": result.quick, "dtype": result.dtype, "backend": backend}
        attrs.update({k: v for k, v in result.info.items() if v is not None})
        g = replace_group(f, path, attrs)
        text = h5py.string_dtype("utf-8")
        for entry in schema.PROFILE.datasets:
            values = [getattr(r, entry.name) for r in rows]
            if entry.dtype == schema.TEXT:
                ds = g.create_dataset(entry.name, data=np.array(values, dtype=object), dtype=text)
            else:
                ds = g.create_dataset(entry.name, data=np.array(values, dtype=entry.dtype))
            schema.label(ds, entry)
        paths.append(path)
    return paths


def write_json(path, result):
    """Write `result` as JSON (NaN as null) in one step.

    Parameters
    ----------
    path : str
        The JSON file.
    result : ProfileResult
        What :func:`run` measured.

    Returns
    -------
    str
        `path`, written in one step (``fastinit.outputs.write_text``).

    Raises
    ------
    ValueError
        If `path` cannot be written (a folder, or a missing or read-only folder).
    """
    reason = why_unwritable(path)
    if reason is not None:
        raise ValueError(reason)
    return write_text(path, json.dumps(result.to_dict(), indent=1))


#: The attrs of a profile group that hold ``ProfileResult.info`` (see ``_device_info``).
_INFO_KEYS = ("python", "machine", "cpu_count", "numba", "cuda_simulator", "gpu")


def read(path, dtype="float32"):
    """Read ``/profile/<dtype>/*`` back from a results file.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.
    dtype : {'float32', 'float64'}, default 'float32'
        Which profile to read.

    Returns
    -------
    ProfileResult
        Every stored backend's records, backend after backend in
        ``fastinit.backends.BACKENDS`` order; ``quick`` and ``info`` from the first backend's
        attrs.

    Raises
    ------
    fastinit.store.StoreError
        For a bad file.
    KeyError
        When the file holds no profile of `dtype`.
    """
    from ..store import open_read

    with open_read(path) as f:
        if f"/profile/{dtype}" not in f:
            raise KeyError(f"{path} holds no /profile/{dtype} group (run 'fastinit profile')")
        group = f[f"/profile/{dtype}"]
        backends = tuple(sorted(group, key=BACKENDS.index))
        records = [record for backend in backends for record in _read_records(group[backend], backend)]
        attrs = group[backends[0]].attrs
        info = {
            k: attrs[k].item() if hasattr(attrs[k], "item") else attrs[k] for k in _INFO_KEYS if k in attrs
        }
        return ProfileResult(records, dtype, backends, bool(attrs["quick"]), info)


def _read_records(g, backend):
    """The :class:`ProfileRecord` list of one ``/profile/<dtype>/<backend>`` group."""
    cols = {c: g[c][()] for c in _COLUMNS}
    records = []
    for i in range(len(cols["kernel"])):
        vals = {c: cols[c][i] for c in _COLUMNS}
        for c in ("kernel", "case", "unit"):
            v = vals[c]
            vals[c] = v.decode() if isinstance(v, bytes) else str(v)
        for c in ("size", "time_s", "time_xfer_s", "work", "throughput", "speedup"):
            vals[c] = float(vals[c])
        vals["inner"], vals["repeats"] = int(vals["inner"]), int(vals["repeats"])
        records.append(ProfileRecord(backend=backend, **vals))
    return records
