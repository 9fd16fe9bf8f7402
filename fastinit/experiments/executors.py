"""Where the cells of a sweep run: in this process, in a pool of local processes, or on Dask.

Each executor takes ``work`` (a picklable callable of one item, e.g.
``functools.partial(run_cell, config, backend=backend)``) and the items, and
yields ``(item, work(item))`` as the items finish, in any order; the caller
stores the results (only the caller writes files). The pool and Dask
executors run one item per worker process, each on one thread
(``numba.set_num_threads(1)``), so that a machine's cores are shared by
processes, not by threads; the in-process executor runs the items one after
the other on every thread. Closing an executor's generator early (an error,
Ctrl-C) cancels the items not yet finished.
"""

import concurrent.futures as cf
import multiprocessing as mp
import signal
import time

from ..errors import FastinitError

__all__ = ["SweepError", "in_process", "process_pool", "dask"]


class SweepError(FastinitError, RuntimeError):
    """The cells cannot run: a cluster cannot be reached, Dask is missing, a worker pool broke."""


def _one_thread(work, item):
    """``work(item)`` on one thread: a worker runs one item per core (pool and Dask workers).

    Numba's kernels and NumPy's BLAS both run on one thread, so no pool of one worker spins
    on the core of another (``fastinit.threads``)."""
    import numba

    from ..threads import limit_blas

    numba.set_num_threads(1)
    with limit_blas(1):
        return work(item)


def in_process(work, items):
    """Run the items one at a time in this process, each on every thread.

    Parameters
    ----------
    work : callable
        ``work(item)`` computes one item's result.
    items : iterable
        The items.

    Yields
    ------
    tuple
        ``(item, work(item))``, in the order of `items`.
    """
    for item in items:
        yield item, work(item)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool


def process_pool(work, items, processes):
    """Run the items in a pool of fresh (spawned) local processes, one single-threaded item each.

    Parameters
    ----------
    work : callable
        ``work(item)``; picklable, as are the items and results.
    items : iterable
        The items.
    processes : int
        Worker processes.

    Yields
    ------
    tuple
        ``(item, work(item))`` as the items finish.

    Raises
    ------
    SweepError
        If a process of the pool dies.
    """
    pool = cf.ProcessPoolExecutor(
        max_workers=processes, mp_context=mp.get_context("spawn"), initializer=_ignore_sigint
    )
    finished = False
    try:
        futures = {pool.submit(_one_thread, work, item): item for item in items}
        try:
            for future in cf.as_completed(futures):
                yield futures[future], future.result()
        except cf.process.BrokenProcessPool:
            raise SweepError(
                "a process of the pool died. If you call sweep() from a script, call it under "
                "'if __name__ == \"__main__\":' (the pool starts its processes with spawn)"
            ) from None
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=True)
        if not finished:  # stopped or failed: do not wait for the items still running
            for child in mp.active_children():
                child.terminate()
                child.join()


def dask(
    work, items, scheduler=None, workers=None, *, warm=None, name="fastinit-task", log=print, timeout=10.0
):
    """Run the items on a Dask distributed cluster, one single-threaded item per worker at a time.

    A worker that dies mid-item has its item run again on another worker by the scheduler.

    Parameters
    ----------
    work : callable
        ``work(item)``; picklable, as are the items and results.
    items : iterable
        The items; ``str(item)`` names one in errors.
    scheduler : str, optional
        The cluster's scheduler, ``tcp://HOST:PORT``.
    workers : int, optional
        Without `scheduler`: start a local cluster of that many single-threaded worker
        processes here (closed at the end).
    warm : callable, optional
        With `scheduler`: run ``warm()`` on one worker of each host in turn before any
        item, e.g. to compile what the items run once per host, so that the workers of a
        host that share a Numba cache directory only load from it (processes compiling
        the same functions into one cache at once can corrupt it: numba#4807).
    name : str, default 'fastinit-task'
        The start of every task's key (what the Dask dashboard shows).
    log : callable, default print
        Receives one line naming the cluster.
    timeout : float, default 10.0
        Seconds to wait for `scheduler`.

    Yields
    ------
    tuple
        ``(item, work(item))`` as the items finish.

    Raises
    ------
    SweepError
        If Dask is not installed, the scheduler cannot be reached, or an item fails on
        the cluster.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SweepError(
            "--scheduler and --workers need Dask: pip install 'fastinit-numba[cluster]' (dask[distributed])"
        ) from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=timeout)
        except OSError as exc:
            raise SweepError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one with "
                "'dask scheduler' and workers with 'dask worker ADDRESS'"
            ) from None
    try:
        n = len(client.scheduler_info().get("workers", {}))
        log(f"dask: {n} worker(s) at {client.scheduler.address}")
        if scheduler is not None and warm is not None:
            first = {}
            for address, info in client.scheduler_info().get("workers", {}).items():
                first.setdefault(info.get("host", address), address)
            for address in first.values():
                client.run(warm, workers=[address])
        futures = {}
        for i, item in enumerate(items):
            future = client.submit(_one_thread, work, item, pure=False, key=f"{name}-{i}-{time.time_ns()}")
            futures[future] = item
        finished = False
        try:
            for future in as_completed(futures):
                item = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # raised on a worker, or the item's workers kept dying
                    raise SweepError(
                        f"{item} failed on the cluster: {type(exc).__name__}: {exc} (is fastinit "
                        "installed on every worker, and --data-dir readable there?)"
                    ) from None
                yield item, result
            finished = True
        finally:
            if not finished:
                client.cancel(list(futures))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
