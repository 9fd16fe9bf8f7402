"""The reference engine: a Python loop over ``kernels.reference``'s layer kernels.

Readable and slow; every other engine is tested against it. Implements
``fastinit.engines.Engine``.
"""

import numpy as np

from kernels import reference as k

__all__ = ["NumpyEngine"]


class NumpyEngine:
    """Per-layer weights and biases updated with ``kernels.reference``: the readable oracle.

    Parameters
    ----------
    weights : list of ndarray, each shape (fan_in, fan_out)
        Each layer's weights, host arrays of `dtype`, C-contiguous.
    biases : list of ndarray, each shape (fan_out,)
        Each layer's biases, host arrays of `dtype`.
    activation : {'linear', 'sigmoid', 'tanh', 'relu'}
        The hidden layers' activation (``kernels.ACTIVATIONS``); the last layer is linear.
    dtype : numpy.dtype
        float32 or float64.
    """

    def __init__(self, weights, biases, activation, dtype):
        self.activation = activation
        self.dtype = np.dtype(dtype)
        self._w = [np.array(w, dtype=self.dtype, order="C") for w in weights]
        self._b = [np.array(b, dtype=self.dtype, order="C") for b in biases]
        self._gw = [np.zeros_like(w) for w in self._w]
        self._gb = [np.zeros_like(b) for b in self._b]
        self._norms = None
        self._loss = None
        self._data = self._batch = None

    def _act(self, i):
        return self.activation if i < len(self._w) - 1 else "linear"

    @staticmethod
    def wait_compiled():
        """Return at once: this engine compiles nothing in the background."""

    def params(self):
        """Copy the parameters to the host.

        Returns
        -------
        list of tuple of ndarray
            ``[(W, b), ...]``: W (fan_in, fan_out) and b (fan_out,) per layer, host
            copies (never views of the engine's storage).
        """
        return [(w.copy(), b.copy()) for w, b in zip(self._w, self._b)]

    def _forward(self, x):
        outs = []
        h = x
        for i, (w, b) in enumerate(zip(self._w, self._b)):
            h = k.dense_forward(h, w, b, self._act(i))
            outs.append(h)
        return outs

    def forward(self, x, record):
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
        outs = self._forward(x)
        return (outs[-1], outs[:-1]) if record else outs[-1]

    def train_step(self, x, labels, lr):
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
        outs = self._forward(x)
        loss, dy = k.softmax_cross_entropy(outs[-1], labels)
        for i in range(len(self._w) - 1, -1, -1):
            inp = x if i == 0 else outs[i - 1]
            dy, _, _ = k.dense_backward(
                inp, self._w[i], outs[i], dy, self._act(i), dw=self._gw[i], db=self._gb[i], compute_dx=i > 0
            )
        for w, b, gw, gb in zip(self._w, self._b, self._gw, self._gb):
            k.sgd_update(w, gw, lr)
            k.sgd_update(b, gb, lr)
        self._norms = None
        self._loss = loss
        return loss

    def set_dataset(self, x, labels):
        """Keep a validated training set for `train_step_indices`.

        Parameters
        ----------
        x : ndarray, shape (N, fan_in), the engine's dtype
            The inputs.
        labels : ndarray, shape (N,), int64
            Their labels.
        """
        self._data = (x, labels)
        self._batch = None

    def train_step_indices(self, idx, lr, return_loss=True):
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
            The loss before the update, None unless `return_loss`.
        """
        x, labels = self._data
        if self._batch is None or self._batch[0].shape[0] != idx.size:
            self._batch = (np.empty((idx.size, x.shape[1]), dtype=x.dtype), np.empty(idx.size, dtype=labels.dtype))
        xb, lb = self._batch
        np.take(x, idx, axis=0, out=xb)
        np.take(labels, idx, out=lb)
        loss = self.train_step(xb, lb, lr)
        return loss if return_loss else None

    def last_loss(self):
        """Return the loss of the last step.

        Returns
        -------
        float
            The mean loss before the last update.
        """
        return self._loss

    def grad_norms(self):
        """Return each layer's gradient norm from the last step.

        Returns
        -------
        ndarray, shape (layers,), float64
            Frobenius norms of each layer's dL/dW.
        """
        if self._norms is None:
            self._norms = np.array([np.linalg.norm(g.astype(np.float64)) for g in self._gw])
        return self._norms.copy()
