"""Start-up time: ``import fastinit`` to the end of the first cpu ``train_step`` in a new process.

Runs the measurement in fresh Python processes against a private, empty
Numba cache directory: the first run compiles everything (cold), the later
runs load the compiled step from that on-disk cache (warm). Prints one line
per run and exits with status 1 when the best warm run is over the limit.

    python bench/startup.py [--runs 3] [--limit 2.0]
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
print(json.dumps(dict(import_s=t_import, first_step_s=t_first, second_step_ms=t_second * 1e3, loss=loss)))
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastinit-numba-cache-") as cache:
        cold = measure(cache)
        warm = [measure(cache) for _ in range(args.runs)]
    fmt = "{:5s} import {import_s:6.3f} s  first train_step done at {first_step_s:6.3f} s  (next step {second_step_ms:.2f} ms)"
    print(fmt.format("cold", **cold))
    for w in warm:
        print(fmt.format("warm", **w))
    best = min(w["first_step_s"] for w in warm)
    verdict = "OK" if best <= args.limit else "TOO SLOW"
    print(f"best warm start-up {best:.3f} s (limit {args.limit:.1f} s): {verdict}")
    return 0 if best <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
