"""The arithmetic behind ``fastinit.MLP``: one engine per backend, one interface.

- ``numpy``: ``fastinit.engines.numpy.NumpyEngine``, a Python loop over the
  ``kernels.reference`` layer kernels (the readable oracle);
- ``cpu``: ``fastinit.engines.cpu.CpuEngine``, a whole training step in two
  parallel regions composed of ``kernels.cpu``'s compiled building blocks;
- ``cuda``: ``fastinit.engines.cuda.CudaEngine``, everything resident on the GPU.

``engine_class(backend)`` imports only the engine asked for, so the numpy
backend never imports Numba and nothing imports ``numba.cuda`` until a GPU
engine is built. The MLP validates every argument before an engine sees it.
"""

from typing import Optional, Protocol

import numpy as np

from ..backends import BackendError, check_backend, require_cuda

__all__ = ["Engine", "engine_class"]


class Engine(Protocol):
    """What ``fastinit.MLP`` needs from a backend.

    ``Engine(weights, biases, activation, dtype)``: ``weights`` a list of host
    arrays (fan_in, fan_out) and ``biases`` of (fan_out,), C-contiguous, of
    ``dtype`` (a float32 or float64 ``numpy.dtype``); ``activation`` the
    hidden activation's name (``kernels.ACTIVATIONS``); the last layer is
    linear. The engine copies what it needs.
    """

    dtype: np.dtype

    def params(self) -> list:
        """``[(W, b), ...]``: host copies (never views of the engine's storage)."""

    def forward(self, x: np.ndarray, record: bool):
        """Logits (N, classes) for a validated batch ``x`` (N, fan_in); with ``record``,
        ``(logits, hidden)``, ``hidden`` the list of the hidden layers' outputs."""

    def train_step(self, x: np.ndarray, labels: np.ndarray, lr: float) -> float:
        """One SGD step on the mean softmax cross-entropy; the loss before the update."""

    def set_dataset(self, x: np.ndarray, labels: np.ndarray) -> None:
        """Keep a validated training set (``labels`` int64) for ``train_step_indices``."""

    def train_step_indices(self, idx: np.ndarray, lr: float, return_loss: bool = True) -> Optional[float]:
        """``train_step`` on rows ``idx`` (validated int64) of the kept set; ``None`` unless
        ``return_loss`` (then the GPU engine does not wait for the step)."""

    def last_loss(self) -> float:
        """The loss of the last step."""

    def grad_norms(self) -> np.ndarray:
        """(layers,) float64 Frobenius norms of each layer's dL/dW in the last step."""


def engine_class(backend):
    """The engine class for ``backend`` (``BackendError`` if unknown, or cuda without a GPU)."""
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
