"""Argument validation shared by every backend.

All three kernel modules (reference, cpu, cuda) run these checks in Python
before any compiled code, so a bad argument raises the same clear
``TypeError``/``ValueError`` on every backend, naming the argument and what
was expected. The checks read only ``shape``, ``dtype``, ``ndim`` and the
contiguity flag, so they work on NumPy arrays and on Numba device arrays.

Policy: arrays must be C-contiguous; a non-contiguous array is rejected (not
silently copied) so that no kernel hides a copy or writes into a temporary.

Also the docstring helpers (``shared_doc``, ``fill_doc``, ``with_doc``) with which a
text shared by several functions is written once.
"""

import inspect

import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "ACTIVATIONS",
    "ACTIVATION_CODES",
    "KERNEL_API",
    "writable",
    "float_array",
    "same_dtype",
    "shape_is",
    "same_shape",
    "out_array",
    "activation_code",
    "matmul_shapes",
    "dense_forward_args",
    "dense_backward_args",
    "outputs_overlap",
    "labels_array",
    "label_range",
    "row_indices",
    "softmax_args",
    "mse_args",
    "learning_rate",
    "sgd_args",
    "elementwise_args",
    "backward_args",
    "shared_doc",
    "fill_doc",
    "with_doc",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu")
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}

#: The public functions every backend module (reference, cpu, cuda) defines, same signatures.
KERNEL_API = (
    "matmul",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "relu",
    "relu_backward",
    "activation_forward",
    "activation_backward",
    "dense_forward",
    "dense_backward",
    "softmax_cross_entropy",
    "mean_squared_error",
    "sgd_update",
)


# ---------------------------------------------------------------- shared docstrings


def shared_doc(reference_function, notes=""):
    """Return the docstring of `reference_function`, with `notes` added as its Notes section.

    How ``fastinit.kernels.cpu`` and ``fastinit.kernels.cuda`` document the shared API: the full text lives
    once, in ``fastinit.kernels.reference``; each backend adds only what differs.

    Parameters
    ----------
    reference_function : callable
        The function whose docstring is the full text (its last section is Raises or
        Notes, none of the sections that go after Notes).
    notes : str, default ''
        Paragraphs to add, indented or not; appended to an existing Notes section.

    Returns
    -------
    str
        The docstring, dedented.
    """
    doc = inspect.cleandoc(reference_function.__doc__)
    notes = inspect.cleandoc(notes)
    if not notes:
        return doc
    heading = "" if "\nNotes\n-----\n" in doc else "\n\nNotes\n-----"
    return f"{doc}{heading}\n{notes}" if heading else f"{doc}\n\n{notes}"


def fill_doc(doc, **parts):
    """Return `doc` dedented, with each ``{name}`` in it replaced by ``parts[name]``, dedented.

    For sections that several docstrings share: write the part once, as a constant, and put
    ``{name}`` on a line of its own where it goes, at the docstring's indentation.

    Parameters
    ----------
    doc : str
        The docstring, indented as written.
    **parts : str
        The shared text of each placeholder, indented or not.

    Returns
    -------
    str
        The filled docstring.
    """
    doc = inspect.cleandoc(doc)
    for name, part in parts.items():
        doc = doc.replace("{" + name + "}", inspect.cleandoc(part))
    return doc


def with_doc(doc):
    """Decorate a function so that its docstring is `doc` (one built by `shared_doc`, say).

    Put it under a Numba decorator (``@njit`` then ``@with_doc(...)``): the dispatcher
    takes the docstring of the function it wraps.

    Parameters
    ----------
    doc : str
        The docstring.

    Returns
    -------
    callable
        A decorator that sets ``__doc__`` and returns the function itself.
    """

    def decorate(function):
        function.__doc__ = doc
        return function

    return decorate


#: The Raises section of the ``*_args`` checks below; `also` adds their own ValueErrors.
_ARGS_RAISES = """Raises
------
TypeError
    If an array is not float32/float64, or the dtypes differ.
ValueError
    On a wrong number of dimensions, a shape mismatch, a non-contiguous array,
    or a read-only output{also}.
"""


def _args_doc(doc, also=""):
    """`doc` (Summary to Returns) followed by ``_ARGS_RAISES``."""
    return inspect.cleandoc(doc) + "\n\n" + _ARGS_RAISES.format(also=also)


def _is_array(x):
    # a NumPy scalar (np.float32(1.0)) has shape and dtype too, but is not an array
    return (
        hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim") and not isinstance(x, np.generic)
    )


def writable(name, x):
    """Check that `x`, which a kernel writes, is not read-only.

    Parameters
    ----------
    name : str
        The argument's name, for the error message.
    x : array_like
        A host array (device arrays, which have no ``WRITEABLE`` flag, pass).

    Returns
    -------
    array_like
        `x`.

    Raises
    ------
    ValueError
        If `x` is read-only.
    """
    flags = getattr(x, "flags", None)
    try:
        read_only = flags is not None and not flags["WRITEABLE"]
    except (KeyError, TypeError):
        read_only = False
    if read_only:
        raise ValueError(f"{name} is read-only; pass a writable array (e.g. {name}.copy())")
    return x


def _is_c_contiguous(x):
    flags = getattr(x, "flags", None)
    if flags is not None:
        try:
            return bool(flags["C_CONTIGUOUS"])
        except (KeyError, TypeError):
            pass
    check = getattr(x, "is_c_contiguous", None)
    return bool(check()) if callable(check) else True


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def float_array(name, x, ndim=None):
    """Check that `x` is a C-contiguous float32/float64 array of `ndim` dimensions.

    Parameters
    ----------
    name : str
        The argument's name, for the error message.
    x : object
        The argument: a NumPy or Numba device array passes.
    ndim : int, optional
        The required number of dimensions; any when None.

    Returns
    -------
    array
        `x`.

    Raises
    ------
    TypeError
        If `x` is not an array (a NumPy scalar included) or not float32/float64.
    ValueError
        If `x` has another number of dimensions or is not C-contiguous.
    """
    if not _is_array(x):
        kind = (
            f"a NumPy scalar ({type(x).__name__}); pass numpy.asarray({name})"
            if isinstance(x, np.generic)
            else type(x).__name__
        )
        raise TypeError(f"{name} must be a float32 or float64 array, got {kind}")
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {x.ndim}-D with shape {_shape_str(x.shape)}")
    if not _is_c_contiguous(x):
        raise ValueError(f"{name} must be C-contiguous; pass numpy.ascontiguousarray({name})")
    return x


def same_dtype(**arrays):
    """Check that all given arrays share one dtype.

    Parameters
    ----------
    **arrays : array or None
        The arrays by argument name; None values are skipped.

    Returns
    -------
    numpy.dtype
        The common dtype.

    Raises
    ------
    TypeError
        If two arrays have different dtypes.
    """
    items = [(k, v) for k, v in arrays.items() if v is not None]
    dtype = np.dtype(items[0][1].dtype)
    for name, arr in items[1:]:
        if np.dtype(arr.dtype) != dtype:
            first = items[0][0]
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {first} has dtype {dtype}; "
                "mixed dtypes are not supported, cast one of them"
            )
    return dtype


def shape_is(name, x, shape):
    """Check that ``x.shape == shape``.

    Parameters
    ----------
    name : str
        The argument's name, for the error message.
    x : array
        The argument.
    shape : tuple of int
        The required shape.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {_shape_str(shape)}, got {_shape_str(x.shape)}")


def same_shape(name, x, ref_name, ref):
    """Check that `x` has the shape of `ref`.

    Parameters
    ----------
    name : str
        The name of `x`, for the error message.
    x : array
        The argument to check.
    ref_name : str
        The name of `ref`, for the error message.
    ref : array
        The array whose shape `x` must have.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} must have the same shape as {ref_name} {_shape_str(ref.shape)}, "
            f"got {_shape_str(x.shape)}"
        )


def out_array(name, out, shape, dtype):
    """Check a caller-supplied output array (shape, dtype, contiguity, writability).

    Parameters
    ----------
    name : str
        The argument's name, for the error message.
    out : array or None
        The output; None passes.
    shape : tuple of int
        The required shape.
    dtype : numpy.dtype
        The required dtype.

    Returns
    -------
    array or None
        `out`.

    Raises
    ------
    TypeError
        If `out` is not a float array of `dtype`.
    ValueError
        On a wrong shape, a non-contiguous or a read-only `out`.
    """
    if out is None:
        return None
    float_array(name, out, len(shape))
    shape_is(name, out, shape)
    if np.dtype(out.dtype) != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    return writable(name, out)


def activation_code(activation):
    """Map an activation name to its integer code (used by compiled kernels).

    Parameters
    ----------
    activation : str
        One of ``ACTIVATIONS``.

    Returns
    -------
    int
        The code, a value of ``ACTIVATION_CODES``.

    Raises
    ------
    ValueError
        For an unknown activation.
    """
    try:
        return ACTIVATION_CODES[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}"
        ) from None


def matmul_shapes(a, b, trans_a, trans_b):
    """Validate a matmul's operands.

    Parameters
    ----------
    a : array, shape (M, K), or (K, M) when `trans_a`
        Left operand, float32 or float64, C-contiguous.
    b : array, shape (K, N), or (N, K) when `trans_b`
        Right operand, same dtype.
    trans_a : bool
        Whether `a` is used transposed.
    trans_b : bool
        Whether `b` is used transposed.

    Returns
    -------
    tuple of int
        ``(M, K, N)``.

    Raises
    ------
    TypeError
        If an operand is not float32/float64, or the dtypes differ.
    ValueError
        If an operand is not 2-D or not C-contiguous, or the inner dimensions differ.
    """
    float_array("a", a, 2)
    float_array("b", b, 2)
    same_dtype(a=a, b=b)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k2:
        la = "a.T" if trans_a else "a"
        lb = "b.T" if trans_b else "b"
        raise ValueError(
            f"inner dimensions do not match: {la} is ({m}, {k}) and {lb} is ({k2}, {n}); "
            f"{lb} must have {k} rows"
        )
    return m, k, n


def _fan_in_matches(x, w):
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} features but w has {w.shape[0]} rows; "
            f"w must have shape ({x.shape[1]}, fan_out)"
        )


@with_doc(
    _args_doc(
        """Validate ``dense_forward``'s arguments.

    Parameters
    ----------
    x : array, shape (N, fan_in)
        Input, float32 or float64.
    w : array, shape (fan_in, fan_out)
        Weights, same dtype.
    b : array, shape (fan_out,), or None
        Bias, same dtype.
    activation : str
        One of ``ACTIVATIONS``.
    out : array, shape (N, fan_out), or None
        Output, same dtype.

    Returns
    -------
    tuple of int
        ``(N, fan_out, activation code)``.
    """,
        also="; also for an unknown activation",
    )
)
def dense_forward_args(x, w, b, activation, out):
    float_array("x", x, 2)
    float_array("w", w, 2)
    if b is not None:
        float_array("b", b, 1)
    same_dtype(x=x, w=w, b=b)
    _fan_in_matches(x, w)
    if b is not None:
        shape_is("b", b, (w.shape[1],))
    code = activation_code(activation)
    out_array("out", out, (x.shape[0], w.shape[1]), x.dtype)
    return x.shape[0], w.shape[1], code


@with_doc(
    _args_doc(
        """Validate ``dense_backward``'s arguments.

    Parameters
    ----------
    x : array, shape (N, fan_in)
        Saved input, float32 or float64.
    w : array, shape (fan_in, fan_out)
        Weights, same dtype.
    y : array, shape (N, fan_out)
        Saved output, same dtype.
    dy : array, shape (N, fan_out)
        Upstream gradient, same dtype.
    activation : str
        One of ``ACTIVATIONS``.
    dx : array, shape (N, fan_in), or None
        Output for dL/dx.
    dw : array, shape (fan_in, fan_out), or None
        Output for dL/dw.
    db : array, shape (fan_out,), or None
        Output for dL/db.

    Returns
    -------
    int
        The activation code.
    """,
        also="; also for an unknown activation",
    )
)
def dense_backward_args(x, w, y, dy, activation, dx, dw, db):
    for name, arr in (("x", x), ("w", w), ("y", y), ("dy", dy)):
        float_array(name, arr, 2)
    same_dtype(x=x, w=w, y=y, dy=dy)
    _fan_in_matches(x, w)
    shape_is("y", y, (x.shape[0], w.shape[1]))
    same_shape("dy", dy, "y", y)
    code = activation_code(activation)
    out_array("dx", dx, x.shape, x.dtype)
    out_array("dw", dw, w.shape, x.dtype)
    out_array("db", db, (w.shape[1],), x.dtype)
    return code


def outputs_overlap(outputs, inputs):
    """Tell whether a host output may share memory with an input.

    The caller then computes into fresh arrays and copies, so aliasing never
    changes a result. None and device arrays are skipped.

    Parameters
    ----------
    outputs : dict of str to array or None
        The outputs by argument name.
    inputs : sequence of array
        The inputs.

    Returns
    -------
    bool
        True if some output may overlap some input.

    Raises
    ------
    ValueError
        If two outputs overlap each other (they cannot both hold their result).
    """
    outs = [(k, o) for k, o in outputs.items() if isinstance(o, np.ndarray)]
    for i, (name, o) in enumerate(outs):
        for other, o2 in outs[i + 1 :]:
            if np.may_share_memory(o, o2):
                raise ValueError(f"{name} and {other} overlap; pass separate arrays")
    ins = [a for a in inputs if isinstance(a, np.ndarray)]
    return any(np.may_share_memory(o, a) for _, o in outs for a in ins)


def labels_array(labels, n, n_classes):
    """Check integer class labels: shape (n,), int32/int64, C-contiguous.

    Parameters
    ----------
    labels : object
        The labels argument.
    n : int
        The batch size, the required length.
    n_classes : int
        The number of classes (the values are checked by `label_range`).

    Returns
    -------
    array, shape (n,)
        `labels`.

    Raises
    ------
    TypeError
        If `labels` is not an int32/int64 array.
    ValueError
        On a wrong shape or a non-contiguous array.
    """
    if not _is_array(labels):
        raise TypeError(f"labels must be an int32 or int64 array, got {type(labels).__name__}")
    if np.dtype(labels.dtype) not in INT_DTYPES:
        raise TypeError(f"labels must have dtype int32 or int64, got {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {_shape_str(labels.shape)}")
    if not _is_c_contiguous(labels):
        raise ValueError("labels must be C-contiguous; pass numpy.ascontiguousarray(labels)")
    return labels


def label_range(labels_host, n_classes):
    """Check that host label values lie in [0, n_classes).

    Parameters
    ----------
    labels_host : ndarray, int
        The labels, on the host.
    n_classes : int
        The number of classes.

    Raises
    ------
    ValueError
        If a label is out of range (the first one is named).
    """
    if labels_host.size and (labels_host.min() < 0 or labels_host.max() >= n_classes):
        bad = labels_host[(labels_host < 0) | (labels_host >= n_classes)][0]
        raise ValueError(f"labels must lie in [0, {n_classes}), found {bad}")


def row_indices(idx, n_rows):
    """Check a non-empty 1-D host integer array of row numbers in [0, n_rows).

    Parameters
    ----------
    idx : array_like of int
        The row numbers.
    n_rows : int
        The number of rows they index.

    Returns
    -------
    ndarray, shape (len(idx),), int64
        `idx` as a C-contiguous int64 array.

    Raises
    ------
    ValueError
        If `idx` is empty, not 1-D, not integer, or out of range.
    """
    idx = np.asarray(idx)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(
            f"idx must be a non-empty 1-D integer array, got shape {idx.shape} dtype {idx.dtype}"
        )
    if idx.min() < 0 or idx.max() >= n_rows:
        raise ValueError(f"idx must lie in [0, {n_rows}), found {idx.min()}..{idx.max()}")
    return np.ascontiguousarray(idx, dtype=np.int64)


@with_doc(
    _args_doc(
        """Validate ``softmax_cross_entropy``'s arguments (not the label values).

    Parameters
    ----------
    logits : array, shape (N, C)
        Class scores, float32 or float64, N >= 1.
    labels : array, shape (N,)
        int32 or int64 labels.
    grad : array, shape (N, C), or None
        Output for the gradient, dtype of `logits`.

    Returns
    -------
    tuple of int
        ``(N, C)``.
    """,
        also="; also for an empty batch",
    )
)
def softmax_args(logits, labels, grad):
    float_array("logits", logits, 2)
    n, c = logits.shape
    if n == 0:
        raise ValueError("logits must have at least one row")
    labels_array(labels, n, c)
    out_array("grad", grad, logits.shape, logits.dtype)
    return n, c


@with_doc(
    _args_doc(
        """Validate ``mean_squared_error``'s arguments.

    Parameters
    ----------
    pred : array, shape (N, D)
        Predictions, float32 or float64.
    target : array, shape (N, D)
        Targets, same dtype.
    grad : array, shape (N, D), or None
        Output for the gradient, same dtype.

    Returns
    -------
    tuple of int
        ``(N, D)``.
    """,
        also="; also for N or D of 0",
    )
)
def mse_args(pred, target, grad):
    float_array("pred", pred, 2)
    float_array("target", target, 2)
    same_dtype(pred=pred, target=target)
    same_shape("target", target, "pred", pred)
    if pred.shape[0] == 0 or pred.shape[1] == 0:
        raise ValueError(
            f"pred must have at least one row and one column, got shape {_shape_str(pred.shape)}"
        )
    out_array("grad", grad, pred.shape, pred.dtype)
    return pred.shape


def learning_rate(lr):
    """Check a learning rate.

    Parameters
    ----------
    lr : float
        Any real number convertible with ``float``.

    Returns
    -------
    float
        `lr` as a Python float.

    Raises
    ------
    TypeError
        If `lr` is not a real number.
    ValueError
        If `lr` is not finite.
    """
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise TypeError(f"lr must be a real number, got {type(lr).__name__}") from None
    if not np.isfinite(lr):
        raise ValueError(f"lr must be finite, got {lr}")
    return lr


def sgd_args(param, grad, lr):
    """Validate ``sgd_update``'s arguments.

    Parameters
    ----------
    param : array
        Parameters, float32 or float64, writable.
    grad : array
        Gradient, same shape and dtype.
    lr : float
        Learning rate.

    Returns
    -------
    float
        The checked learning rate.

    Raises
    ------
    TypeError
        On mixed or non-float dtypes, or a non-real `lr`.
    ValueError
        On a shape mismatch, a non-contiguous or read-only array, or a non-finite `lr`.
    """
    writable("param", float_array("param", param))
    float_array("grad", grad)
    same_dtype(param=param, grad=grad)
    same_shape("grad", grad, "param", param)
    return learning_rate(lr)


@with_doc(
    _args_doc("""Validate an elementwise kernel's input and output.

    Parameters
    ----------
    x : array
        Input, float32 or float64, any shape.
    out : array or None
        Output, same shape and dtype.
    name : str, default 'x'
        The input's name, for the error message.
    """)
)
def elementwise_args(x, out, name="x"):
    float_array(name, x)
    out_array("out", out, x.shape, x.dtype)


@with_doc(
    _args_doc("""Validate an activation backward pass's arguments.

    Parameters
    ----------
    y : array
        Saved output, float32 or float64, any shape.
    dy : array
        Upstream gradient, same shape and dtype.
    out : array or None
        Output, same shape and dtype.
    """)
)
def backward_args(y, dy, out):
    float_array("y", y)
    float_array("dy", dy)
    same_dtype(y=y, dy=dy)
    same_shape("dy", dy, "y", y)
    out_array("out", out, y.shape, y.dtype)
