"""How fastinit times a kernel: the one timing harness of ``fastinit profile`` and ``bench/``.

A timing is the median (and the best) seconds per call of batches of calls, after a warm-up
call, with the device synchronised before each clock stop; each backend is timed after a
pause (:func:`settle`) so that the thread pool of the backend timed before is idle. Which
backends are timed: every one that runs here, but CUDA only on a real GPU
(:func:`timed_backends`).

``pytest bench --benchmark-only`` is the tracked record (pytest-benchmark times the kernels,
its JSON is what ``fastinit bench-report`` reads; every benchmark asserts its result first);
its NumPy baselines are :func:`time_calls`. ``fastinit profile`` is the quick table of every
kernel on numpy, cpu and cuda, each timed with :func:`time_calls`.
"""

import os
import statistics
import time
from dataclasses import dataclass

from .backends import available_backends

__all__ = ["SETTLE_S", "Timing", "time_calls", "settle", "timed_backends"]

#: Seconds of pause before a backend is timed: longer than OpenBLAS's busy-wait (about 0.1 s)
#: and OpenMP's (a few ms) after their last call.
SETTLE_S = 0.5
#: At most this many calls per timed batch.
MAX_INNER = 10000


@dataclass(frozen=True)
class Timing:
    """Seconds per call of a timed function.

    Parameters
    ----------
    median_s : float
        The median over the batches of the seconds per call.
    best_s : float
        The fastest batch's seconds per call (steadier on a busy machine).
    inner : int
        Calls per batch.
    repeats : int
        Batches timed.
    """

    median_s: float
    best_s: float
    inner: int
    repeats: int


def time_calls(fn, sync=None, *, budget=0.5, repeats=5, inner=None):
    """Time `fn`: the median and best seconds per call over batches, after a warm-up call.

    The warm-up call (JIT compilation, caches) also sizes the batches: each takes about
    ``budget / repeats`` seconds. Batches run until `repeats` of them are timed and
    `budget` seconds have passed (at most 10 000 batches). `sync` runs after the warm-up
    and at the end of each batch, inside the clock: CUDA launches are asynchronous.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    sync : callable, optional
        Waits for the device (``KernelBackend.sync``); nothing when None.
    budget : float, default 0.5
        Seconds to spend, at least.
    repeats : int, default 5
        Batches to time, at least.
    inner : int, optional
        Calls per batch; when None, as many as fill ``budget / repeats`` seconds (1 to
        ``MAX_INNER``).

    Returns
    -------
    Timing
        The median and best seconds per call, the calls per batch and the batches.

    Raises
    ------
    ValueError
        If `budget` < 0, `repeats` < 1 or `inner` < 1.
    """
    if budget < 0 or repeats < 1 or (inner is not None and inner < 1):
        raise ValueError(f"need budget >= 0, repeats >= 1, inner >= 1; got {budget}, {repeats}, {inner}")
    sync = sync or (lambda: None)
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    if inner is None:
        inner = max(1, min(MAX_INNER, int(budget / repeats / one)))
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats or (time.perf_counter() - start < budget and len(samples) < 10000):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner)
    return Timing(statistics.median(samples), min(samples), inner, len(samples))


def settle(seconds=SETTLE_S):
    """Pause so that the thread pools of what ran before go idle before the next timing.

    OpenBLAS's threads busy-wait about 0.1 s after a product, Numba's OpenMP threads a few
    milliseconds after a parallel region; on a 2-core machine a spinning pool of the backend
    timed before takes a core from the one timed now.

    Parameters
    ----------
    seconds : float, default SETTLE_S
        How long to pause.
    """
    time.sleep(seconds)


def timed_backends():
    """The backends worth timing here: every available one, cuda only on a real GPU.

    Returns
    -------
    tuple of str
        In canonical order (``fastinit.backends.BACKENDS``); without ``"cuda"`` when there is
        no GPU or when it would run on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``), whose
        timings mean nothing.
    """
    simulator = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
    return tuple(b for b in available_backends() if not (b == "cuda" and simulator))
