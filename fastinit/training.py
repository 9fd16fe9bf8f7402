"""The one SGD loop of every experiment that trains a model: seeded mini-batches, divergence, stops.

``batch_indices`` draws the sequence of mini-batches (each epoch a fresh seeded
permutation); ``sgd`` runs a model's (an MLP's) training steps over that sequence and hands
control back at the steps the caller asks for, so that the caller evaluates,
snapshots or stops early there (``fastinit train``, the sweep's cells,
``fastinit spectrum --train`` and the layer-wise pre-training of
``fastinit.datainit`` all train through it). A step whose mini-batch
loss is NaN or Inf ends the training: the network has diverged.

The same model, data, learning rate, batch size and seed always give the same
steps, whatever the stops: a run stopped at step ``s`` holds the parameters of a
run of ``s`` steps, since its mini-batches are a prefix of the same sequence.
"""

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["batch_indices", "Stop", "sgd"]


def batch_indices(n, batch_size, iterations, seed):
    """Yield the row numbers of ``iterations`` mini-batches of a training set of ``n`` rows.

    Sampling without replacement within an epoch: each epoch is a fresh permutation
    from ``numpy.random.default_rng(seed)``, cut into consecutive batches (a batch
    straddling two epochs takes the end of one and the start of the next). The same
    arguments always give the same sequence; memory is one permutation.

    Parameters
    ----------
    n : int
        Rows of the training set.
    batch_size : int
        Rows per mini-batch, at most `n`.
    iterations : int
        Mini-batches to yield.
    seed : int or sequence of int
        Seed of the generator.

    Yields
    ------
    ndarray, shape (batch_size,), int64
        Row numbers in ``range(n)``.

    Raises
    ------
    ValueError
        If `batch_size` is larger than `n` (on the first ``next``).
    """
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training images")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    pos = 0
    for _ in range(iterations):
        if pos + batch_size <= n:
            idx = perm[pos : pos + batch_size]
            pos += batch_size
        else:
            head = perm[pos:]
            perm = rng.permutation(n)
            pos = batch_size - head.size
            idx = np.concatenate([head, perm[:pos]])
        yield idx


@dataclass(frozen=True)
class Stop:
    """Where :func:`sgd` hands control back.

    Parameters
    ----------
    step : int
        SGD steps done so far.
    diverged : bool
        Whether the last step's loss was NaN or Inf; training ended there.
    loss : float
        The last step's mini-batch loss (before its update); NaN before the first step.
    """

    step: int
    diverged: bool = False
    loss: float = math.nan


def sgd(model, x, labels, *, lr, batch_size, seed, stops, on_step=None):
    """Train `model` by plain SGD on mini-batches of (`x`, `labels`), pausing at each of `stops`.

    Calls ``model.set_dataset(x, labels)`` (at once), then, as the returned generator is
    consumed, ``model.train_step_indices`` on the mini-batches of
    ``batch_indices(len(x), batch_size, stops[-1], seed)``. Floating-point warnings of
    the steps are silenced: a diverging network is detected from its loss.

    Parameters
    ----------
    model : fastinit.MLP
        The network, updated in place; or any model with its ``set_dataset`` and
        ``train_step_indices(idx, lr)`` (which returns the mini-batch loss).
    x : ndarray, shape (N, sizes[0]), the MLP's dtype
        The training inputs, C-contiguous (or an array of the model's own kind, with
        ``shape``).
    labels : ndarray, shape (N,), int32 or int64, or None
        Their classes; None for a model whose targets are its inputs (an autoencoder),
        passed to ``set_dataset`` as it is.
    lr : float
        Learning rate.
    batch_size : int
        Rows per mini-batch, at most N.
    seed : int
        Seed of the mini-batch order (:func:`batch_indices`).
    stops : sequence of int
        Increasing step counts >= 0 at which to yield (0: before the first step). The
        training ends at the last one.
    on_step : callable, optional
        ``on_step(step, loss)`` after every step (the diverging one included), `step`
        counting from 1 and `loss` the mini-batch loss as a float; e.g. to record the
        loss curve or ``model.grad_norms()``.

    Returns
    -------
    generator of Stop
        One :class:`Stop` at each of `stops` once that many steps are done; if a step's
        loss is NaN or Inf, the generator instead yields ``Stop(step, diverged=True)``
        at that step and ends. Stopping to consume it stops the training.

    Raises
    ------
    ValueError
        If `stops` is empty, not increasing or negative (at once); if `batch_size` is
        larger than N (on the first step); for bad `x` or `labels` (from
        ``set_dataset``).
    TypeError
        For `x` or `labels` of the wrong dtype (from ``set_dataset``).
    """
    stops = [int(s) for s in stops]
    if not stops or stops[0] < 0 or any(b <= a for a, b in zip(stops, stops[1:])):
        raise ValueError(f"stops must be a non-empty increasing sequence of steps >= 0, got {stops}")
    model.set_dataset(x, labels)
    batches = batch_indices(x.shape[0], batch_size, stops[-1], seed)
    return _stops(model, batches, lr, stops, on_step)


def _stops(model, batches, lr, stops, on_step):
    """The generator of :func:`sgd`."""
    done, loss, diverged = 0, math.nan, False
    for stop in stops:
        # The warnings are silenced around the steps, never across a yield (that would
        # leak the setting into the caller's code).
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for idx in itertools.islice(batches, stop - done):
                loss = float(model.train_step_indices(idx, lr))
                done += 1
                if on_step is not None:
                    on_step(done, loss)
                if not math.isfinite(loss):
                    diverged = True
                    break
        yield Stop(done, diverged, loss)
        if diverged:
            return
