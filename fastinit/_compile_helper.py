"""Compile part of a cold Numba compile in a second process, into the on-disk cache.

A cold compile of the cpu MLP engine is seconds of single-threaded work
(Numba holds one lock for the whole compile, so threads cannot share it). On a
machine with two or more cores, ``start`` launches a helper Python process
that compiles some of the functions while this process compiles the others;
this process then loads the helper's part from Numba's cache.

Safe by construction: the helper writes only the cache files of functions
this process does not compile meanwhile, Numba replaces a cache file
atomically, and every failure (caching disabled or unwritable, a crash, a
time-out) only means that this process compiles that part itself when it
loads it. Internal; imports Numba.
"""

import os
import subprocess
import sys

__all__ = ["is_cached", "start", "finish", "stop"]

TIMEOUT_S = 300.0


def is_cached(py_func, sig):
    """True when Numba's on-disk cache holds a fresh entry of ``py_func`` compiled for ``sig`` (cpu target).

    Looks the entry up without loading it; any failure of the lookup counts as cached
    (then nothing is started and this process compiles or loads as usual)."""
    try:
        from numba.core.caching import FunctionCache
        from numba.core.registry import cpu_target

        cache = FunctionCache(py_func)
        key = cache._index_key(sig, cpu_target.target_context.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - a heuristic: never let it break a compile
        return True


def start(module, function, args):
    """Run ``module.function(*args)`` (strings) in a new Python process; return it, or None.

    None on a single core or when the process cannot start. The child sees the same
    source files as this process (their directory goes first on its path), so it
    fills the same cache entries."""
    if (os.cpu_count() or 1) < 2:
        return None
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    code = f"import sys; from {module} import {function}; {function}(*sys.argv[1:])"
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def finish(proc):
    """Wait for a process from ``start`` (None is fine); one still running after ``TIMEOUT_S``
    or when the wait is interrupted (Ctrl-C, which is re-raised) is killed."""
    if proc is None:
        return
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(proc)
    except BaseException:
        stop(proc)
        raise


def stop(proc):
    """Kill a process from ``start`` now (None is fine) and reap it."""
    if proc is not None:
        proc.kill()
        proc.wait()
