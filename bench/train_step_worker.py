"""One backend's MLP training step, in a process of its own, timed on request.

``python bench/train_step_worker.py BACKEND`` (numpy, cpu or torch) builds the seed's
784-100-100-100-100-10 network (batch 128, float32, the numpy backend's initial weights),
compiles and warms it up (for cpu: waits for the parallel step compiled in the background,
so every timed step is a steady-state one), prints ``{"ready": ...}`` with the loss of its
first step and the machine (``fastinit.machine.describe``), then for each line ``N`` read on
stdin times N steps and prints their seconds as one JSON line; an empty line or EOF ends
it. ``bench/test_bench_train_step.py`` drives one such process per backend, in turns.
"""

import json
import sys

import numpy as np

SIZES = (784, 100, 100, 100, 100, 10)
BATCH = 128
LR = 0.01
SEED = 0
WARMUP = 5


def batch():
    """The fixed batch every backend trains on: pixels in [0, 1) and labels."""
    rng = np.random.default_rng(123)
    x = rng.random((BATCH, SIZES[0]), dtype=np.float32)  # like MNIST pixels in [0, 1)
    labels = rng.integers(0, SIZES[-1], size=BATCH).astype(np.int64)
    return x, labels


def torch_step_factory(torch, params, x, labels):
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


def make_step(backend):
    """``step() -> loss`` of one SGD step on ``backend`` (numpy, cpu, torch), compiled."""
    from fastinit import MLP
    from fastinit.mlp import compile_backend

    x, labels = batch()
    if backend == "torch":
        import numba
        import torch

        torch.set_num_threads(numba.get_num_threads())
        step, _, _ = torch_step_factory(torch, MLP(SIZES, backend="numpy", seed=SEED).params, x, labels)
        return step
    compile_backend(backend, "float32")
    mlp = MLP(SIZES, backend=backend, seed=SEED)
    return lambda: mlp.train_step(x, labels, LR)


def main(backend):
    import time

    from fastinit.machine import describe

    step = make_step(backend)
    first = float(step())
    for _ in range(WARMUP):
        step()
    if backend == "cpu":
        from fastinit.engines import engine_class

        engine_class("cpu").wait_compiled()
        step()
    print(json.dumps({"ready": backend, "first_loss": first, "machine": describe()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        times = []
        for _ in range(int(line)):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
