"""How the cpu kernels are compiled: the options every ``@njit`` of ``fastinit.kernels.cpu`` (and the
cpu engine) uses, the on-disk cache, and the threading layer started before any cached code
loads.

Importing this module starts Numba's threading layer. A cached serial function that calls a
parallel one, compiled in a process where the parallel callee came from the cache, does not
record that the threading layer must be started first, and calls a null pointer in a fresh
process that has not started it (numba#8578, open upstream). ``numba.get_num_threads()``
starts it (public API; a few milliseconds), so every module that compiles cached code
imports this one first.
"""

import os
import sys

import numba

__all__ = ["CACHE", "JIT", "FAST", "FMA"]


def _cache_is_writable():
    """Whether Numba can write its on-disk cache beside this module (or in ``NUMBA_CACHE_DIR``)."""
    where = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "__pycache__")
    probe = where
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    if os.access(probe, os.W_OK):
        return True
    # Numba falls back to a user-wide cache directory when the package's is read-only.
    return not os.environ.get("NUMBA_CACHE_DIR") and os.access(os.path.expanduser("~"), os.W_OK)


#: Whether compiled kernels are cached on disk (False when no cache directory is writable).
CACHE = _cache_is_writable()
if not CACHE:
    print("fastinit: no writable Numba cache directory; compiling without an on-disk cache", file=sys.stderr)

numba.get_num_threads()  # start the threading layer (see the module docstring)

#: Options of every compiled kernel: cached when possible, NumPy's error model, GIL released.
JIT = dict(cache=CACHE, error_model="numpy", nogil=True)
#: ``JIT`` plus reassociation (sums vectorise, in another equally accurate order) and
#: contraction (FMAs); no "nnan"/"ninf", so NaN and Inf still propagate.
FAST = dict(JIT, fastmath={"reassoc", "contract"})
#: ``JIT`` plus contraction only: FMAs, in the order written.
FMA = dict(JIT, fastmath={"contract"})
