"""The reference engine: a Python loop over ``fastinit.kernels.reference``'s layer kernels.

Readable and slow; every other engine is tested against it. Implements
``fastinit.engines.Engine``.
"""

import numpy as np

from fastinit.kernels import reference as k
from fastinit.kernels.checks import fill_doc, shared_doc, with_doc

from . import ENGINE_PARAMETERS, Engine

__all__ = ["NumpyEngine"]


@with_doc(
    fill_doc(
        """Per-layer weights and biases updated with ``fastinit.kernels.reference``: the readable oracle.

    {parameters}
    """,
        parameters=ENGINE_PARAMETERS,
    )
)
class NumpyEngine:
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

    @with_doc(shared_doc(Engine.params))
    def params(self):
        return [(w.copy(), b.copy()) for w, b in zip(self._w, self._b)]

    def _forward(self, x):
        outs = []
        h = x
        for i, (w, b) in enumerate(zip(self._w, self._b)):
            h = k.dense_forward(h, w, b, self._act(i))
            outs.append(h)
        return outs

    @with_doc(shared_doc(Engine.forward))
    def forward(self, x, record):
        outs = self._forward(x)
        return (outs[-1], outs[:-1]) if record else outs[-1]

    @with_doc(shared_doc(Engine.train_step))
    def train_step(self, x, labels, lr):
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

    @with_doc(shared_doc(Engine.set_dataset))
    def set_dataset(self, x, labels):
        self._data = (x, labels)
        self._batch = None

    @with_doc(shared_doc(Engine.train_step_indices))
    def train_step_indices(self, idx, lr, return_loss=True):
        x, labels = self._data
        if self._batch is None or self._batch[0].shape[0] != idx.size:
            self._batch = (
                np.empty((idx.size, x.shape[1]), dtype=x.dtype),
                np.empty(idx.size, dtype=labels.dtype),
            )
        xb, lb = self._batch
        np.take(x, idx, axis=0, out=xb)
        np.take(labels, idx, out=lb)
        loss = self.train_step(xb, lb, lr)
        return loss if return_loss else None

    @with_doc(shared_doc(Engine.last_loss))
    def last_loss(self):
        return self._loss

    @with_doc(shared_doc(Engine.grad_norms))
    def grad_norms(self):
        if self._norms is None:
            self._norms = np.array([np.linalg.norm(g.astype(np.float64)) for g in self._gw])
        return self._norms.copy()
