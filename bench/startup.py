"""Start-up time: ``import fastinit`` to the end of the first cpu ``train_step`` in a new process.

Runs the measurement in fresh Python processes against a private, empty
Numba cache directory: the first run compiles everything (cold), the later
runs load the compiled step from that on-disk cache (warm). Each run also
waits for the cpu engine's parallel step (compiled in the background while the
first steps run serially) and reports when it was ready. Prints one line per
run and exits with status 1 when the cold first step takes over
``--cold-limit`` or the best warm one over ``--limit``.

    python bench/startup.py [--runs 3] [--limit 2.0] [--cold-limit 8.0]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastinit
t_import = time.perf_counter() - t0
from fastinit import MLP
mlp = MLP((784, 100, 100, 100, 100, 10), backend="cpu", seed=0)
rng = np.random.default_rng(0)
x = rng.random((128, 784), dtype=np.float32)
labels = rng.integers(0, 10, size=128)
loss = mlp.train_step(x, labels, 0.01)
t_first = time.perf_counter() - t0
t1 = time.perf_counter()
mlp.train_step(x, labels, 0.01)
t_second = time.perf_counter() - t1
from fastinit.engines import engine_class
# the parallel step, compiled (or loaded from the cache) in the background
engine_class("cpu").wait_compiled()
t_parallel = time.perf_counter() - t0
print(json.dumps(dict(import_s=t_import, first_step_s=t_first, second_step_ms=t_second * 1e3, loss=loss,
                      parallel_s=t_parallel)))
"""


def measure(cache_dir):
    """One child process; returns its timings (seconds from ``import fastinit``)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm runs after the cold one (default 3)")
    parser.add_argument("--limit", type=float, default=2.0, help="warm start-up limit in seconds (default 2)")
    parser.add_argument(
        "--cold-limit", type=float, default=8.0, help="cold start-up limit in seconds (default 8)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastinit-numba-cache-") as cache:
        cold = measure(cache)
        warm = [measure(cache) for _ in range(args.runs)]
    fmt = (
        "{:5s} import {import_s:6.3f} s  first train_step done at {first_step_s:6.3f} s  (next step "
        "{second_step_ms:.2f} ms; parallel step ready at {parallel_s:.1f} s)"
    )
    print(fmt.format("cold", **cold))
    for w in warm:
        print(fmt.format("warm", **w))
    best = min(w["first_step_s"] for w in warm)
    ok = best <= args.limit and cold["first_step_s"] <= args.cold_limit
    print(
        f"cold start-up {cold['first_step_s']:.3f} s (limit {args.cold_limit:.1f} s), best warm start-up "
        f"{best:.3f} s (limit {args.limit:.1f} s): {'OK' if ok else 'TOO SLOW'}"
    )
    print(describe_machine())
    return 0 if ok else 1


def describe_machine():
    from fastinit.machine import describe

    d = describe()
    return (
        f"{d['cpu_model']} ({d['host_cpu']}, {d['host_isa']}; code for {d['code_cpu']}, {d['code_isa']}), "
        f"{d['cores']} cores, numba {d['numba']}, numpy {d['numpy']}"
    )


if __name__ == "__main__":
    sys.exit(main())
