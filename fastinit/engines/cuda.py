"""The MLP engine on the GPU (``MLP(..., backend="cuda")``).

Implements ``fastinit.engines.Engine`` with the device-level building blocks
of ``fastinit.kernels.cuda``. Everything the
network owns stays on the device across steps:

- ``_params``: one flat device buffer holding every layer's W (fan_in,
  fan_out) then b (fan_out,); ``_grads`` has the same layout, so the SGD
  update of the whole network is one launch;
- per batch size N (reallocated only when N changes): every layer's output
  (N, fan_out), two ping-pong delta buffers, the staged input batch and
  labels, and the softmax scratch.

A training step launches, per layer, one fused ``act(x @ W + b)`` matmul
forward; the softmax cross-entropy; per layer ``dW = x.T @ dz``, ``dz_prev =
act'(h) * (dz @ W.T)`` with the bias gradient (column sums) fused into the
activation-backward kernel; one SGD launch. Per step only the mini-batch goes
to the device (``train_step``), or only its indices when the data set was
made resident with ``set_dataset`` (``train_step_indices``). The loss stays
on the device until asked for: ``train_step`` returns it (the interface
wants a float; that copy is the step's only synchronisation),
``train_step_indices(..., return_loss=False)`` does not, and ``last_loss()``
fetches it later.

Importing this module imports ``numba.cuda``; ``fastinit.engines.engine_class``
does so only after ``fastinit.backends.require_cuda()`` has passed.
"""

import numpy as np

from fastinit.kernels import checks as chk
from fastinit.kernels import cuda as kc
from fastinit.kernels.checks import fill_doc, shared_doc, with_doc

from . import ENGINE_PARAMETERS, Engine

__all__ = ["CudaEngine"]


@with_doc(
    fill_doc(
        """MLP engine whose parameters, activations and gradients live on the GPU.

    The host arrays are copied to the device once. `set_dataset`,
    `train_step_indices` and `last_loss` are the device-resident training path.

    {parameters}
    """,
        parameters=ENGINE_PARAMETERS,
    )
)
class CudaEngine:
    def __init__(self, weights, biases, activation, dtype):
        from numba import cuda

        self._cuda = cuda
        self.dtype = np.dtype(dtype)
        self.activation = activation
        self.code = chk.activation_code(activation)
        layout, off = [], 0
        for w in weights:
            fi, fo = (int(s) for s in w.shape)
            layout.append((fi, fo, off, off + fi * fo))
            off += fi * fo + fo
        self._layout = layout
        host = np.empty(off, dtype=self.dtype)
        for (fi, fo, wo, bo), w, b in zip(layout, weights, biases):
            host[wo : wo + fi * fo] = np.asarray(w, dtype=self.dtype).ravel()
            host[bo : bo + fo] = np.asarray(b, dtype=self.dtype)
        self._params = cuda.to_device(host)
        self._grads = cuda.to_device(np.zeros(off, dtype=self.dtype))
        self._w = [self._view(self._params, i) for i in range(len(layout))]
        self._gw = [self._view(self._grads, i) for i in range(len(layout))]
        self._width_max = max(fo for _, fo, _, _ in layout)
        self._stats = cuda.to_device(np.zeros(2, dtype=np.float64))
        self._wsegments = cuda.to_device(
            np.array([(wo, fi * fo) for fi, fo, wo, _ in layout], dtype=np.int64)
        )
        self._sumsq = cuda.device_array(len(layout), dtype=np.float64)
        self._n = -1
        self._data = None
        self._stepped = False

    # -- storage --------------------------------------------------------------

    def _view(self, flat, i):
        fi, fo, wo, bo = self._layout[i]
        return flat[wo : wo + fi * fo].reshape(fi, fo), flat[bo : bo + fo]

    def _workspace(self, n):
        """(Re)allocate the per-batch buffers when the batch size changes."""
        if n == self._n:
            return
        cuda, dt = self._cuda, self.dtype
        self._acts = [cuda.device_array((n, fo), dtype=dt) for _, fo, _, _ in self._layout]
        self._delta = [cuda.device_array(n * self._width_max, dtype=dt) for _ in range(2)]
        self._rows = cuda.device_array((n, 2), dtype=np.float64)
        self._xbuf = cuda.device_array((n, self._layout[0][0]), dtype=dt)
        self._lbuf = {}
        self._ibuf = cuda.device_array(n, dtype=np.int64)
        self._n = n

    def _labels_buffer(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._lbuf:
            self._lbuf[dtype] = self._cuda.device_array(self._n, dtype=dtype)
        return self._lbuf[dtype]

    def _delta_view(self, k, n, width):
        return self._delta[k][: n * width].reshape(n, width)

    # -- interface ------------------------------------------------------------

    @staticmethod
    def wait_compiled():
        """Return at once: this engine compiles nothing in the background."""

    @with_doc(shared_doc(Engine.params))
    def params(self):
        host = self._params.copy_to_host()
        out = []
        for fi, fo, wo, bo in self._layout:
            out.append((host[wo : wo + fi * fo].reshape(fi, fo).copy(), host[bo : bo + fo].copy()))
        return out

    def _forward_into(self, x, acts):
        last = len(self._layout) - 1
        h = x
        for i, ((w, b), out) in enumerate(zip(self._w, acts)):
            kc.gemm_into(h, w, out, False, False, b, self.code if i < last else 0)
            h = out
        return acts

    @with_doc(
        shared_doc(
            Engine.forward,
            """
        `x` may also be a device array; the outputs are copied to the host.
    """,
        )
    )
    def forward(self, x, record):
        cuda = self._cuda
        n = x.shape[0]
        x = kc.as_device(x)
        acts = [cuda.device_array((n, fo), dtype=self.dtype) for _, fo, _, _ in self._layout]
        self._forward_into(x, acts)
        outs = [a.copy_to_host() for a in (acts if record else acts[-1:])]
        return (outs[-1], outs[:-1]) if record else outs[-1]

    def _step(self, x, labels, lr):
        """Launch one full training step on device-resident ``x`` and ``labels`` (no sync)."""
        n = x.shape[0]
        last = len(self._layout) - 1
        acts = self._forward_into(x, self._acts)
        dz = self._delta_view(last % 2, n, self._layout[last][1])
        kc.softmax_xent_into(acts[last], labels, dz, self._rows, self._stats)
        kc.column_sums_into(dz, self._gw[last][1])
        for i in range(last, -1, -1):
            inp = x if i == 0 else acts[i - 1]
            kc.gemm_into(inp, dz, self._gw[i][0], True, False)
            if i == 0:
                break
            dprev = self._delta_view((i - 1) % 2, n, self._layout[i][0])
            kc.gemm_into(dz, self._w[i][0], dprev, False, True)
            # dz_prev = act'(h) * dprev in place, bias gradient fused in
            kc.activation_backward_colsum_into(inp, dprev, self.code, dprev, self._gw[i - 1][1])
            dz = dprev
        kc.sgd_into(self._params, self._grads, lr)
        self._stepped = True

    def train_step(self, x, labels, lr):
        """Take one SGD step on a batch given as host or device arrays.

        Host `x` and `labels` are copied into preallocated device buffers.
        Device labels are range-checked on the device.

        Parameters
        ----------
        x : device array or ndarray, shape (N, fan_in), the engine's dtype
            The batch.
        labels : device array or ndarray, shape (N,), int32 or int64
            Its labels, in [0, classes).
        lr : float
            Learning rate.

        Returns
        -------
        float
            The loss before the update (copying it is the step's one synchronisation).

        Raises
        ------
        ValueError
            If device labels were out of range (after the step ran: its update used
            a meaningless gradient).
        """
        n = x.shape[0]
        self._workspace(n)
        if kc.is_device_array(x):
            xd = kc.as_device(x)
        else:
            xd = self._xbuf
            xd.copy_to_device(x)
        if kc.is_device_array(labels):
            ld = kc.as_device(labels)
        else:
            ld = self._labels_buffer(labels.dtype)
            ld.copy_to_device(labels)
        self._step(xd, ld, lr)
        return kc.read_stats(self._stats)

    @with_doc(
        shared_doc(
            Engine.grad_norms,
            """
        Reduced on the device: only the L norms are copied back.
    """,
        )
    )
    def grad_norms(self):
        kc.segment_sumsq_into(self._grads, self._wsegments, self._sumsq)
        return np.sqrt(self._sumsq.copy_to_host())

    # -- device-resident data set ---------------------------------------------

    def set_dataset(self, x, labels):
        """Copy a whole training set to the device once, for `train_step_indices`.

        Replaces a previous data set.

        Parameters
        ----------
        x : ndarray, shape (N, fan_in), the engine's dtype
            The inputs, a host array.
        labels : ndarray, shape (N,), int32 or int64
            Their labels in [0, n_classes), a host array (range-checked here).

        Raises
        ------
        TypeError
            If `x` is not a float array of the engine's dtype, or `labels` not int32/int64.
        ValueError
            On a wrong shape, or labels out of range.
        """
        chk.float_array("x", x, 2)
        if np.dtype(x.dtype) != self.dtype:
            raise TypeError(f"x must have dtype {self.dtype}, got {x.dtype}")
        if x.shape[1] != self._layout[0][0]:
            raise ValueError(f"x must have shape (N, {self._layout[0][0]}), got {tuple(x.shape)}")
        n_classes = self._layout[-1][1]
        chk.labels_array(labels, x.shape[0], n_classes)
        chk.label_range(np.asarray(labels), n_classes)
        cuda = self._cuda
        self._data = (
            cuda.to_device(np.ascontiguousarray(x)),
            cuda.to_device(np.asarray(labels, dtype=np.int64)),
        )

    def train_step_indices(self, idx, lr, return_loss=True):
        """Take one SGD step on the rows `idx` of the resident data set.

        Only the B indices are copied to the device; the batch is gathered there.

        Parameters
        ----------
        idx : array_like of int, shape (B,)
            Row numbers on the host, checked against the data set's size.
        lr : float
            Learning rate.
        return_loss : bool, default True
            Return the loss (one synchronisation); when false, return without waiting
            for the GPU (`last_loss` fetches it later).

        Returns
        -------
        float or None
            The loss before the update, None unless `return_loss`.

        Raises
        ------
        RuntimeError
            Without `set_dataset` first.
        ValueError
            For indices out of range, a non-finite `lr`, or device labels out of range.
        """
        if self._data is None:
            raise RuntimeError("train_step_indices needs set_dataset(x, labels) first")
        xs, ls = self._data
        idx = chk.row_indices(idx, xs.shape[0])
        lr = chk.learning_rate(lr)
        n = idx.size
        self._workspace(n)
        self._ibuf.copy_to_device(idx)
        xb, lb = self._xbuf, self._labels_buffer(np.int64)
        kc.gather_rows_into(xs, self._ibuf, xb)
        kc.gather_into(ls, self._ibuf, lb)
        self._step(xb, lb, lr)
        return kc.read_stats(self._stats) if return_loss else None

    def last_loss(self):
        """Return the loss of the last step (copies it from the device; waits for the step).

        Returns
        -------
        float
            The mean loss before the last update.

        Raises
        ------
        RuntimeError
            Before any training step.
        ValueError
            If the last step's labels were out of range.
        """
        if not self._stepped:
            raise RuntimeError("last_loss() needs a training step first")
        return kc.read_stats(self._stats)
