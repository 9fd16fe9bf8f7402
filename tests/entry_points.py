"""Every public entry point of the cpu kernels, the MLP and the CLI, each runnable alone in a
process of its own: ``python tests/entry_points.py NAME`` runs entry point NAME once and exits.

Used by ``tests/test_cache_processes.py`` to run real processes in sequence against one
Numba cache directory: what one process leaves in the cache must never crash the next
(numba#8578: a cached serial function that calls a parallel one, compiled while its callee
came from the cache, calls a null pointer in a process that has not started the threading
layer). Inputs are large enough to take the parallel paths.
"""

import sys

import numpy as np
from commands import argv

from fastinit.kernels import cpu

#: Every public function of fastinit.kernels.cpu (its ``__all__``, constants aside).
KERNELS = [name for name in cpu.__all__ if name not in ("ACTIVATIONS", "CACHE")]
MLP_ENTRY = "MLP.train_step"


def cli_commands(work):
    """``{name: argv}`` of each CLI command on tiny settings, writing under the folder ``work``.

    Not listed: ``reproduce`` (it runs histogram and train, both listed, for minutes) and
    ``bench-report`` (it reads a JSON file and compiles nothing).
    """
    quiet = dict(no_plot=True, q=True, out=f"{work}/r.h5")
    tiny_mnist = dict(train_limit=256, test_limit=128, batch_size=32)
    return {
        "cli:histogram": argv("histogram", samples=64, units=16, layers=3, init="xavier", **quiet),
        "cli:train": argv("train", init="he", seeds=0, iterations=4, eval_every=2, **tiny_mnist, **quiet),
        "cli:sweep": argv(
            "sweep", sw2=(1, 2), depths=2, seeds=0, steps=3, executor="engine", activation="relu", **quiet
        ),
        "cli:theory": argv("theory", q=True, out=quiet["out"]),
        "cli:profile": argv("profile", quick=True, backends=("numpy", "cpu"), q=True, out=quiet["out"]),
        "cli:spectrum": argv(
            "spectrum", activation="tanh", weights="gaussian", depths=2, width=16, samples=2, **quiet
        ),
        "cli:show": ["show", f"{work}/show.h5"],  # a file the test writes first
    }


def _kernel_args(name, rng):
    """Arguments for kernel ``name`` of ``fastinit.kernels.cpu``: float32, big enough for the threads."""
    f = np.float32
    n, k = 256, 300
    a = rng.standard_normal((n, k)).astype(f)
    b = rng.standard_normal((k, n)).astype(f)
    sq = rng.standard_normal((n, n)).astype(f)
    out = np.empty((n, n), f)
    bias = rng.standard_normal(n).astype(f)
    i0, i1, code, threads = np.int64(0), np.int64(n), np.int64(2), np.int64(2)
    blocks = cpu.machine_blocks(f)
    logits = rng.standard_normal((8192, 10)).astype(f)
    labels = rng.integers(0, 10, 8192)
    act = ("sigmoid", "tanh", "relu")
    if name == "matmul":
        return (a, b)
    if name in act:
        return (sq,)
    if name in tuple(f"{x}_backward" for x in act):
        return (sq, sq.copy())
    if name == "activation_forward":
        return (sq, "tanh")
    if name == "activation_backward":
        return (sq, sq.copy(), "tanh")
    if name == "dense_forward":
        return (a, b, bias, "relu")
    if name == "dense_backward":
        y = np.maximum(a @ b + bias, 0)
        return (a, b, y, y.copy(), "relu")
    if name == "softmax_cross_entropy":
        return (logits, labels)
    if name in ("mean_squared_error", "mse_into"):
        return (sq, sq.copy()) if name == "mean_squared_error" else (sq, sq.copy(), np.empty_like(sq))
    if name == "sgd_update":
        return (sq, sq.copy(), 0.1)
    if name == "dot_nt_into":
        return (sq, sq.copy(), out, i0, i1, i0, i1, np.int64(n), blocks)
    if name == "dot_nn_into":
        return (sq, sq.copy(), out, i0, i1, i0, i1, np.int64(n))
    if name == "matmul_into":
        return (a, b, out, False, False, threads, blocks)
    if name == "transpose_into":
        return (sq, out, i0, i1)
    if name == "activation_rows_into":
        return (sq, bias, code, i0, i1)
    if name == "dense_forward_into":
        return (a, np.ascontiguousarray(b.T), bias, code, out, threads, blocks)
    if name == "activation_into":
        return (sq, code, out, threads)
    if name == "activation_backward_into":
        return (sq, sq.copy(), code, out, threads)
    if name == "activation_backward_rows_into":
        return (sq, sq.copy(), code, i0, i1)
    if name.endswith("_backward_rows_into"):
        return (sq, sq.copy(), i0, i1)
    if name.endswith("_rows_into"):
        return (sq, bias, i0, i1)
    if name == "softmax_xent_rows":
        return (logits, labels, np.empty_like(logits), i0, np.int64(8192), np.int64(8192), np.int64(10))
    if name == "softmax_xent_into":
        return (logits, labels, np.empty_like(logits), threads)
    if name == "column_sum_into":
        return (sq, np.empty(n, f))
    if name == "product_blocks":
        return (f, 32 * 1024, 1024 * 1024)
    if name == "machine_blocks":
        return (f,)
    if name == "product_tiles":
        return (np.int64(1024), np.int64(1024), np.int64(1024), threads)
    if name == "sgd_into":
        return (sq, sq.copy(), f(0.1), threads)
    raise KeyError(name)


def run(name):
    """Run the entry point ``name`` (a kernel of ``fastinit.kernels.cpu`` or :data:`MLP_ENTRY`) once."""
    rng = np.random.default_rng(0)
    if name == MLP_ENTRY:
        from fastinit import MLP

        mlp = MLP([784, 100, 100, 10], activation="relu", backend="cpu", seed=0)
        x = rng.random((128, 784), dtype=np.float32)
        labels = rng.integers(0, 10, 128)
        for _ in range(3):
            assert np.isfinite(mlp.train_step(x, labels, 0.01))
        return
    getattr(cpu, name)(*_kernel_args(name, rng))


if __name__ == "__main__":
    for entry in sys.argv[1:]:
        run(entry)
