"""Matmul GFLOP/s of fastinit.kernels.cuda against cuBLAS (through CuPy) on the same GPU.

Usage: python bench/gpu_cublas.py OUT.json [N ...]   (default N: 1024 2048 4096)

A benchmark-only comparison: CuPy is never a dependency of fastinit. Both
products use the same float32 device operands (CuPy arrays are handed to
``fastinit.kernels.cuda.matmul`` through ``__cuda_array_interface__``, no copy); each
is checked against the other, warmed up, then timed over several launches
with the device synchronised before the clock stops (median of 5 batches).
Exits 2 when CuPy cannot be imported (the caller reports it), 1 when the two
results disagree.
"""

import json
import sys


def _time(fn, sync, repeats=5, budget=1.0):
    """Median seconds per call after one warm-up call (cuBLAS handle, kernel caches)."""
    from fastinit.timing import time_calls

    return time_calls(fn, sync, budget=budget, repeats=repeats).median_s


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out_path = argv[0]
    sizes = [int(s) for s in argv[1:]] or [1024, 2048, 4096]
    try:
        import cupy as cp
    except Exception as exc:  # noqa: BLE001 - any import failure means "no CuPy here"
        print(
            f"gpu_cublas: CuPy not importable ({type(exc).__name__}: {exc}); skipping the cuBLAS comparison",
            file=sys.stderr,
        )
        return 2
    import numpy as np
    from numba import cuda

    import fastinit.kernels.cuda as kc

    rows = []
    for n in sizes:
        rng = cp.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=cp.float32)
        b = rng.standard_normal((n, n), dtype=cp.float32)
        c_ours = cuda.device_array((n, n), dtype=np.float32)
        ours = kc.matmul(a, b, out=c_ours)
        theirs = a @ b
        cuda.synchronize()
        diff = float(cp.abs(cp.asarray(ours) - theirs).max())
        scale = float(cp.abs(theirs).max())
        if not diff <= 1e-3 * scale:
            print(
                f"gpu_cublas: n={n}: fastinit.kernels.cuda.matmul differs from cuBLAS by {diff} "
                f"(scale {scale})",
                file=sys.stderr,
            )
            return 1
        t_ours = _time(lambda: kc.gemm_into(a, b, c_ours), cuda.synchronize)
        c_cublas = cp.empty((n, n), dtype=cp.float32)
        t_cublas = _time(lambda: cp.matmul(a, b, out=c_cublas), cp.cuda.Device().synchronize)
        flops = 2.0 * n**3
        row = {
            "n": n,
            "config": kc.matmul_config(n, n),
            "fastinit_s": t_ours,
            "cublas_s": t_cublas,
            "fastinit_gflops": flops / t_ours / 1e9,
            "cublas_gflops": flops / t_cublas / 1e9,
            "fraction_of_cublas": t_cublas / t_ours,
            "max_abs_diff": diff,
        }
        # every tiling at this size, to show which one a GPU prefers
        for config in kc.MATMUL_CONFIGS:
            row[f"fastinit_gflops_{config}"] = (
                flops
                / _time(lambda config=config: kc.gemm_into(a, b, c_ours, config=config), cuda.synchronize)
                / 1e9
            )
        rows.append(row)
        print(
            f"n={n}: fastinit {row['fastinit_gflops']:.0f} GFLOP/s ({row['config']}), "
            f"cuBLAS {row['cublas_gflops']:.0f} GFLOP/s, fraction {row['fraction_of_cublas']:.2f}"
        )
    name = cuda.get_current_device().name
    info = {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "cupy": cp.__version__,
        "rows": rows,
    }
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
