"""A tiny reverse-mode autograd on NumPy arrays: the oracle for the MLP tests.

Deliberately independent of ``kernels`` and ``fastinit``: it shares no code
with the backends it checks, and every derivative is written from its
definition. Only the handful of ops an MLP needs:

    x @ w                  matmul(a, b)
    z + b (row broadcast)  add_bias(z, b)
    sigmoid, tanh, relu    elementwise, from the *input* (not the saved output)
    mean softmax CE        softmax_cross_entropy(logits, labels) via log-softmax

Usage::

    w = Var(w0); b = Var(b0)
    loss = softmax_cross_entropy(add_bias(matmul(Var(x), w), b), labels)
    loss.backward()
    w.grad, b.grad

Values are kept in the dtype given (use float64 for oracle checks).
"""

import numpy as np

__all__ = [
    "Var",
    "matmul",
    "add_bias",
    "sigmoid",
    "tanh",
    "relu",
    "activation",
    "softmax_cross_entropy",
    "mlp_loss",
]


class Var:
    """A node in the graph: ``value`` (ndarray), ``grad`` (filled by ``backward``)."""

    def __init__(self, value, parents=(), backward=None):
        self.value = np.asarray(value)
        self.parents = parents  # tuple of Var
        self._backward = backward  # g -> tuple of gradients, one per parent
        self.grad = None

    def backward(self):
        """Reverse-mode sweep from this scalar node; accumulates ``.grad`` on every ancestor."""
        order, seen = [], set()

        def visit(node):
            if id(node) in seen:
                return
            seen.add(id(node))
            for p in node.parents:
                visit(p)
            order.append(node)

        visit(self)
        for node in order:
            node.grad = None
        self.grad = np.ones_like(self.value)
        for node in reversed(order):
            if node._backward is None or node.grad is None:
                continue
            for parent, g in zip(node.parents, node._backward(node.grad)):
                parent.grad = g if parent.grad is None else parent.grad + g


def matmul(a, b):
    return Var(a.value @ b.value, (a, b), lambda g: (g @ b.value.T, a.value.T @ g))


def add_bias(z, b):
    return Var(z.value + b.value[None, :], (z, b), lambda g: (g, g.sum(axis=0)))


def sigmoid(x):
    # 1/(1+exp(-x)) written as 0.5*(1+tanh(x/2)): same function, finite everywhere.
    s = 0.5 * (1.0 + np.tanh(0.5 * x.value))
    return Var(s, (x,), lambda g: (g * s * (1.0 - s),))


def tanh(x):
    t = np.tanh(x.value)
    return Var(t, (x,), lambda g: (g * (1.0 - t * t),))


def relu(x):
    mask = x.value > 0
    return Var(np.where(mask, x.value, 0.0).astype(x.value.dtype), (x,), lambda g: (g * mask,))


def activation(x, name):
    """Apply an activation by name (``linear`` returns ``x`` itself)."""
    if name == "linear":
        return x
    return {"sigmoid": sigmoid, "tanh": tanh, "relu": relu}[name](x)


def softmax_cross_entropy(logits, labels):
    """Mean over rows of ``-log_softmax(logits)[i, labels[i]]`` as a scalar Var."""
    z = logits.value
    n = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    log_softmax = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -log_softmax[rows, labels].mean()

    def back(g):
        d = np.exp(log_softmax)
        d[rows, labels] -= 1.0
        return (g * d / n,)

    return Var(np.asarray(loss), (logits,), back)


def mlp_loss(x, labels, params, hidden_activation):
    """Loss of an MLP with ``params`` [(W, b), ...]: hidden layers use ``hidden_activation``,
    the last is linear. Returns ``(loss Var, [(W Var, b Var), ...])``."""
    h = Var(x)
    leaves = []
    for i, (w, b) in enumerate(params):
        wv, bv = Var(w), Var(b)
        leaves.append((wv, bv))
        h = add_bias(matmul(h, wv), bv)
        if i < len(params) - 1:
            h = activation(h, hidden_activation)
    return softmax_cross_entropy(h, labels), leaves
