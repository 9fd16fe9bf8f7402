"""The arithmetic behind ``fastinit.MLP``: one engine per backend, one interface.

- ``numpy``: ``fastinit.engines.numpy.NumpyEngine``, a Python loop over the
  ``fastinit.kernels.reference`` layer kernels (the readable oracle);
- ``cpu``: ``fastinit.engines.cpu.CpuEngine``, a whole training step in two
  parallel regions composed of ``fastinit.kernels.cpu``'s compiled building blocks;
- ``cuda``: ``fastinit.engines.cuda.CudaEngine``, everything resident on the GPU.

``engine_class(backend)`` imports only the engine asked for, so the numpy
backend never imports Numba and nothing imports ``numba.cuda`` until a GPU
engine is built. The MLP validates every argument before an engine sees it.
"""

from typing import Protocol

import numpy as np

from fastinit.kernels.checks import fill_doc, with_doc

from ..backends import BackendError, check_backend, require_cuda

__all__ = ["ENGINE_PARAMETERS", "Engine", "engine_class"]

#: The Parameters section of ``Engine`` and of every engine class: what ``fastinit.MLP`` passes.
ENGINE_PARAMETERS = """
    Parameters
    ----------
    weights : list of ndarray, each shape (fan_in, fan_out)
        Each layer's weights, host arrays of `dtype`, C-contiguous.
    biases : list of ndarray, each shape (fan_out,)
        Each layer's biases, host arrays of `dtype`.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}
        The hidden layers' activation (``fastinit.kernels.ACTIVATIONS``); the last layer is linear.
    dtype : numpy.dtype
        float32 or float64.
"""


@with_doc(
    fill_doc(
        """What ``fastinit.MLP`` needs from a backend.

    The engine copies what it needs. ``fastinit.MLP`` validates every argument
    before an engine sees it. The engines' methods take these methods' docstrings
    (``fastinit.kernels.checks.shared_doc``), adding what differs.

    {parameters}
    """,
        parameters=ENGINE_PARAMETERS,
    )
)
class Engine(Protocol):  # numpydoc ignore=PR01,PR02
    dtype: np.dtype

    def params(self) -> list:
        """Copy the parameters to the host.

        Returns
        -------
        list of tuple of ndarray
            ``[(W, b), ...]``: W (fan_in, fan_out) and b (fan_out,) per layer, host
            copies (never views of the engine's storage).
        """

    def forward(self, x: np.ndarray, record: bool):
        """Compute the logits of a validated batch.

        Parameters
        ----------
        x : ndarray, shape (N, fan_in), the engine's dtype
            The batch.
        record : bool
            Also return the hidden layers' outputs.

        Returns
        -------
        ndarray, shape (N, classes), or tuple
            The logits on the host; with `record`, ``(logits, hidden)``, `hidden`
            the list of the hidden layers' outputs (N, fan_out).
        """

    def train_step(self, x: np.ndarray, labels: np.ndarray, lr: float) -> float:
        """Take one SGD step on the mean softmax cross-entropy of a batch.

        Parameters
        ----------
        x : ndarray, shape (N, fan_in), the engine's dtype
            The batch, validated.
        labels : ndarray, shape (N,), int32 or int64
            Its labels, in [0, classes).
        lr : float
            Learning rate.

        Returns
        -------
        float
            The loss before the update.
        """

    def set_dataset(self, x: np.ndarray, labels: np.ndarray) -> None:
        """Keep a validated training set for `train_step_indices`.

        Parameters
        ----------
        x : ndarray, shape (N, fan_in), the engine's dtype
            The inputs.
        labels : ndarray, shape (N,), int64
            Their labels.
        """

    @staticmethod
    def wait_compiled() -> None:
        """Block until what the engine compiles in the background is ready (a no-op for most)."""

    def train_step_indices(self, idx: np.ndarray, lr: float, return_loss: bool = True) -> float | None:
        """Take `train_step` on the rows `idx` of the kept data set.

        Parameters
        ----------
        idx : ndarray, shape (B,), int64
            Validated row numbers.
        lr : float
            Learning rate.
        return_loss : bool, default True
            Return the loss.

        Returns
        -------
        float or None
            The loss before the update, None unless `return_loss`
            (then the GPU engine does not wait for the step).
        """

    def last_loss(self) -> float:
        """Return the loss of the last step.

        Returns
        -------
        float
            The mean loss before the last update.
        """

    def grad_norms(self) -> np.ndarray:
        """Return each layer's gradient norm from the last step.

        Returns
        -------
        ndarray, shape (layers,), float64
            Frobenius norms of each layer's dL/dW.
        """


def engine_class(backend):
    """Import and return the engine class for a backend.

    Only the engine asked for is imported.

    Parameters
    ----------
    backend : {'numpy', 'cpu', 'cuda'}
        The backend.

    Returns
    -------
    type
        ``NumpyEngine``, ``CpuEngine`` or ``CudaEngine``.

    Raises
    ------
    BackendError
        If the backend is unknown, or is cuda without a GPU or without numba-cuda.
    """
    check_backend(backend)
    if backend == "numpy":
        from .numpy import NumpyEngine

        return NumpyEngine
    if backend == "cpu":
        from .cpu import CpuEngine

        return CpuEngine
    require_cuda()
    try:
        from .cuda import CudaEngine
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastinit.engines.cuda", "numba.cuda"):
            raise
        raise BackendError("the cuda engine cannot be imported: is numba-cuda installed?") from None
    return CudaEngine
