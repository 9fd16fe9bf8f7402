"""Thread pools that take turns: keep NumPy's BLAS pool from taxing the cpu kernels that run next.

Two pools share the cores of a process that mixes NumPy and the cpu kernels: the BLAS
library's (OpenBLAS, MKL or BLIS, behind NumPy's products) and Numba's (OpenMP, behind
every ``parallel=True`` kernel). Each keeps its threads busy-waiting for a while after its
last call so the next call starts fast. OpenBLAS's threads wait about 0.1 s (2**28 cycles)
after each product; on a 2-core machine a parallel kernel started in that window gets about
one core. A 128x784 @ 784x100 product of ``fastinit.kernels.cpu`` ran 3-4x slower right after a
block of ``np.matmul`` than after a pause, and one 2000-step training run about 1.7x
slower, because the run does a few small float64 NumPy products every 100 steps. Numba's
OpenMP threads wait a few milliseconds only, so NumPy after a cpu kernel loses little.

Nothing here changes a setting unless called, and what is changed is restored on exit:

- :func:`limit_blas` holds the BLAS pool to one thread (threadpoolctl) for a ``with``
  block. One-thread BLAS never wakes its pool, so nothing spins; the cost is that NumPy's
  large products inside the block use one core.
- :func:`pools_for` is what ``fastinit``'s own commands hold around a run: ``limit_blas(1)``
  on the ``cpu`` backend (its heavy work is the OpenMP kernels; its NumPy work is small),
  nothing on the ``numpy`` backend (BLAS does its heavy work) or on ``cuda``.

Process-wide alternatives, for a user who wants both pools at full width, are environment
variables read once when the library loads, so they must be set before Python starts (a
library cannot set them for you): ``OPENBLAS_THREAD_TIMEOUT=4`` makes OpenBLAS's threads
sleep at once after a product (the shortest wait it allows), ``OMP_WAIT_POLICY=passive``
does the same for the OpenMP threads (it makes each of the cpu engine's fork/joins wake
sleeping threads). ``OPENBLAS_NUM_THREADS=1`` is ``limit_blas(1)`` for the whole process.
"""

import contextlib

__all__ = ["limit_blas", "pools_for", "blas_threads"]

#: The backends whose heavy work runs on Numba's OpenMP pool, not on BLAS.
OPENMP_BACKENDS = ("cpu",)


@contextlib.contextmanager
def limit_blas(threads=1):
    """Hold the BLAS libraries that NumPy loaded to ``threads`` threads for a ``with`` block.

    Uses threadpoolctl's ``threadpool_limits(limits=threads, user_api="blas")``: it sets
    OpenBLAS's (or MKL's, BLIS's) thread count on entry and restores each library's own
    count on exit, also when the block raises. Numba's OpenMP pool is not touched.

    Parameters
    ----------
    threads : int, default 1
        The BLAS thread count inside the block; 1 keeps BLAS's pool asleep, so nothing of
        it spins when a parallel cpu kernel runs next.

    Yields
    ------
    threadpoolctl.threadpool_limits
        The limiter (its ``get_original_num_threads()`` gives the counts it will restore).

    Raises
    ------
    ValueError
        If ``threads`` < 1.

    Notes
    -----
    threadpoolctl changes a library's setting for the whole process, so use it from one
    thread: another Python thread calling NumPy during the block gets the limit too.

    Examples
    --------
    >>> import numpy as np
    >>> from fastinit.threads import limit_blas
    >>> with limit_blas(1):
    ...     y = np.ones((64, 64)) @ np.ones((64, 64))
    """
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(threads), user_api="blas") as limiter:
        yield limiter


def pools_for(backend):
    """The thread-pool setting a run on ``backend`` should hold: a context manager.

    ``limit_blas(1)`` for the ``cpu`` backend, whose heavy work is Numba's OpenMP pool;
    a context that changes nothing for ``numpy`` (BLAS does the heavy work there) and
    ``cuda``. ``fastinit``'s commands hold it around their runs; library functions such as
    ``fastinit.experiments.train.train`` do not, so a program that imports fastinit keeps
    its own settings unless it asks for this.

    Parameters
    ----------
    backend : str or None
        ``'cpu'``, ``'numpy'``, ``'cuda'``; None (a command without a backend) changes
        nothing.

    Returns
    -------
    contextlib.AbstractContextManager
        Enter it with ``with``; the settings are restored on exit.

    Examples
    --------
    >>> from fastinit.threads import pools_for
    >>> with pools_for("cpu"):
    ...     pass  # train on the cpu backend here
    """
    if backend in OPENMP_BACKENDS:
        return limit_blas(1)
    return contextlib.nullcontext()


def blas_threads():
    """The thread count of each BLAS library loaded in this process.

    Returns
    -------
    dict of str to int
        ``{library file path: threads}`` (threadpoolctl's ``threadpool_info``); empty when
        no BLAS library is loaded.
    """
    from threadpoolctl import threadpool_info

    return {d["filepath"]: int(d["num_threads"]) for d in threadpool_info() if d["user_api"] == "blas"}
