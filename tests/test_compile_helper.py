"""The cpu engine's cold compile split over two processes (fastinit._compile_helper)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastinit import MLP
from fastinit import _compile_helper as helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run in a fresh process with an empty Numba cache: compile the cpu engine, record
# which cfuncs came from the cache, then check a step and a forward against numpy.
COLD_COMPILE = textwrap.dedent(
    """
    import json, subprocess, sys
    import numpy as np
    from fastinit import _compile_helper, mlp
    if sys.argv[1] == "failing-helper":
        _compile_helper.start = lambda *args: subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    k = mlp._cpu_kernels("float32")
    hits = {name: c.cache_hits for name, c in k.cfuncs.items()}
    rng = np.random.default_rng(0)
    x = rng.random((40, 12), dtype=np.float32)
    labels = rng.integers(0, 3, size=40)
    cpu, ref = (mlp.MLP((12, 9, 7, 3), backend=b, seed=4) for b in ("cpu", "numpy"))
    for _ in range(3):
        assert abs(cpu.train_step(x, labels, 0.2) - ref.train_step(x, labels, 0.2)) < 1e-5
    np.testing.assert_allclose(cpu.forward(x), ref.forward(x), rtol=1e-4, atol=1e-5)
    print(json.dumps(hits))
    """
)


def _cold_compile(tmp_path, mode):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run([sys.executable, "-c", COLD_COMPILE, mode], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the helper process runs only on two or more cores")
def test_cold_compile_loads_the_helpers_part_from_the_cache(tmp_path):
    from fastinit.mlp import _HELPER_CFUNCS

    hits = _cold_compile(tmp_path, "helper")
    assert set(hits) == {"forward_slice", "backward_slice", "update_slice", "product_rows"}
    assert {name: hits[name] for name in _HELPER_CFUNCS} == dict.fromkeys(_HELPER_CFUNCS, 1)
    assert sum(hits.values()) == len(_HELPER_CFUNCS)  # the rest was compiled here


def test_a_failing_helper_only_means_compiling_here(tmp_path):
    hits = _cold_compile(tmp_path, "failing-helper")
    assert set(hits.values()) == {0}


def test_entry_points_are_compiled_for_the_types_the_engine_passes():
    """``_compile_entry_points`` compiles ``_parallel_for``/``_cpu_train_step`` ahead for a cold cache:
    with the same types as the engine's real calls, so that those calls compile nothing more."""
    import numba

    from fastinit import mlp

    x = np.random.default_rng(0).random((16, 6))
    for dtype in ("float32", "float64"):
        m = MLP((6, 5, 2), backend="cpu", dtype=dtype)
        m.train_step(x.astype(dtype), np.zeros(16, dtype=np.int64), 0.1)
        m.forward(x.astype(dtype), record=True)
    for dtype in ("float32", "float64"):
        real = numba.from_dtype(np.dtype(dtype))

        def takes_x_of_dtype(sig):
            return any(getattr(a, "dtype", None) == real and a.ndim == 2 for a in sig)

        for func, values in mlp._entry_values(np.dtype(dtype)).items():
            of_dtype = [sig for sig in func.signatures if takes_x_of_dtype(sig)]
            assert of_dtype == [tuple(numba.typeof(v) for v in values)], func


def test_is_cached_answers_true_when_the_lookup_fails():
    assert helper.is_cached(len, None)  # not a Python function: Numba cannot even locate a cache


def test_finish_kills_a_helper_that_runs_too_long(monkeypatch):
    monkeypatch.setattr(helper, "TIMEOUT_S", 0.2)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    helper.finish(proc)
    assert proc.returncode is not None and proc.returncode != 0
    helper.finish(None)


def test_an_error_while_compiling_here_stops_the_helper_at_once(monkeypatch):
    """``_compile_cfuncs`` does not wait for its helper when its own part fails (or Ctrl-C)."""
    from fastinit import mlp

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(helper, "is_cached", lambda *args: False)
    monkeypatch.setattr(helper, "start", lambda *args: sleeper)

    def broken(name, key):
        raise KeyboardInterrupt

    monkeypatch.setattr(mlp, "_cfunc", broken)
    with pytest.raises(KeyboardInterrupt):
        mlp._compile_cfuncs("float32")
    assert sleeper.returncode is not None and sleeper.returncode != 0
