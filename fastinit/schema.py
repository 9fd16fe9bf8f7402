"""The HDF5 layout of fastinit's results, declared once: every group, dataset, unit and description.

Writers label what they write from these entries (:func:`label`), ``fastinit show`` explains groups
and fills in units for files written before datasets carried them (:func:`find`), the layout block
of ``docs/storage.md`` is :func:`render`'s output, and the tests compare written files with the
entries (:func:`check`).

Importing it is cheap (no h5py): experiments import it at the top.

Paths are patterns: ``<name>`` stands for one path component or part of one (``/train/<run>``,
``/spectrum/<activation>-<weights>``, ``depth=<L>``); :meth:`Group.at` fills them in. A
description may hold placeholders too (``<depth> layers``), filled when the dataset is written
(:meth:`Dataset.text`).

Use::

    from fastinit import schema

    g = replace_group(f, schema.HISTOGRAM_RUN.at(activation="tanh", init="xavier"))
    schema.label(g.create_dataset("mean", data=mean), schema.HISTOGRAM_RUN["mean"])
"""

import re
from dataclasses import dataclass, replace

__all__ = [
    "Dataset",
    "Group",
    "GROUPS",
    "ROOT_ATTRS",
    "RUN_DTYPE",
    "TEXT",
    "RUN_ATTRS",
    "HISTOGRAM_RUN",
    "TRAIN_RUN",
    "SWEEP",
    "SWEEP_CHECKPOINTS",
    "SPECTRUM_DEPTH",
    "SPECTRUM_RUN",
    "SPECTRUM_TRAINING",
    "SPECTRUM_TRAINING_DEPTH",
    "THEORY",
    "PROFILE",
    "fill",
    "find",
    "label",
    "check",
    "render",
]

_PLACEHOLDER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")

#: dtype words of a dataset whose values are text (h5py's UTF-8 string dtype).
TEXT = "utf-8 string"
#: dtype words of a dataset stored in the dtype its run computed in: float32 or float64.
RUN_DTYPE = "run dtype"


def fill(pattern, **values):
    """Replace every ``<name>`` of ``pattern`` by ``str(values[name])``.

    Parameters
    ----------
    pattern : str
        A path or description pattern such as ``/histogram/<activation>/<init>``.
    **values
        One value per placeholder.

    Returns
    -------
    str
        The pattern with its placeholders filled in.

    Raises
    ------
    KeyError
        If ``values`` lacks a placeholder of ``pattern`` (naming it).
    """

    def one(match):
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{pattern!r} needs a value for <{name}>")
        return str(values[name])

    return _PLACEHOLDER.sub(one, pattern)


def _regex(pattern, any_text):
    """A compiled regex matching what ``pattern`` gives for any values (``any_text``: what one matches)."""
    parts = _PLACEHOLDER.split(pattern)  # literal, name, literal, name, ...
    body = "".join(re.escape(p) if i % 2 == 0 else any_text for i, p in enumerate(parts))
    return re.compile(body, re.DOTALL)


@dataclass(frozen=True)
class Dataset:
    """One dataset of the layout.

    Parameters
    ----------
    path : str
        Its path pattern, e.g. ``/train/<run>/loss`` (set by the :class:`Group` that holds it).
    shape : str
        The shape in words, e.g. ``(iterations, layers)``.
    dtype : str
        ``float64``, ``int64``, ``uint8``, :data:`TEXT` (``utf-8 string``) or :data:`RUN_DTYPE`
        (``run dtype``: float32 or float64, as the run computed).
    units : str
        The ``units`` attr written with it.
    description : str
        The ``description`` attr, with ``<name>`` placeholders where it depends on the run.
    when : str
        When it is written, if not always (e.g. "with --checkpoints").
    attrs : tuple of (str, str)
        Its other attrs: (name, meaning) pairs.
    """

    path: str
    shape: str
    dtype: str
    units: str
    description: str
    when: str = ""
    attrs: tuple = ()

    @property
    def name(self):
        """The dataset's name in its group (the last component of :attr:`path`).

        Returns
        -------
        str
            E.g. ``loss``.
        """
        return self.path.rsplit("/", 1)[-1]

    def text(self, **values):
        """The description to write, its placeholders filled in.

        Parameters
        ----------
        **values
            One value per ``<name>`` in :attr:`description`.

        Returns
        -------
        str
            The description of one written dataset.

        Raises
        ------
        KeyError
            If a placeholder has no value.
        """
        return fill(self.description, **values)

    def describes(self, description):
        """Whether ``description`` is this entry's description for some values of its placeholders.

        Parameters
        ----------
        description : str
            A ``description`` attr read from a file.

        Returns
        -------
        bool
            True if it matches.
        """
        return _regex(self.description, ".+").fullmatch(str(description)) is not None

    def allows(self, dtype):
        """Whether a dataset of ``dtype`` fits this entry's :attr:`dtype`.

        Parameters
        ----------
        dtype : numpy.dtype
            The dtype of a stored dataset.

        Returns
        -------
        bool
            True for a text dtype when the entry is :data:`TEXT`, float32 and float64 when it is
            :data:`RUN_DTYPE`, else when the dtype's name is the entry's.
        """
        import h5py

        if h5py.check_string_dtype(dtype) is not None:
            return self.dtype == TEXT
        if self.dtype == RUN_DTYPE:
            return dtype.name in ("float32", "float64")
        return dtype.name == self.dtype


@dataclass(frozen=True)
class Group:
    """One group of the layout, with the datasets directly in it.

    Parameters
    ----------
    path : str
        Its path pattern, e.g. ``/histogram/<activation>/<init>``.
    description : str
        What it holds and which command writes it.
    attrs : tuple of (str, str)
        Its attrs worth knowing: (name, meaning) pairs.
    datasets : tuple of Dataset
        Its datasets; their ``path`` is filled in from the group's.
    also : tuple of str
        Other path patterns with the same layout (e.g. ``/train/<run>/seed=<s>``).
    """

    path: str
    description: str
    attrs: tuple = ()
    datasets: tuple = ()
    also: tuple = ()

    def __post_init__(self):
        full = tuple(replace(d, path=f"{self.path}/{d.path}") for d in self.datasets)
        object.__setattr__(self, "datasets", full)

    @property
    def paths(self):
        """Every path pattern of the group: :attr:`path` first, then :attr:`also`.

        Returns
        -------
        tuple of str
            The patterns.
        """
        return (self.path,) + tuple(self.also)

    def at(self, **values):
        """The group's path for one run.

        Parameters
        ----------
        **values
            One value per placeholder of :attr:`path`.

        Returns
        -------
        str
            E.g. ``/histogram/tanh/xavier``.

        Raises
        ------
        KeyError
            If a placeholder has no value.
        """
        return fill(self.path, **values)

    def __getitem__(self, name):
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"{self.path} declares no dataset {name!r}")

    def matches(self, path):
        """Whether the concrete group path ``path`` is one of this group's patterns.

        Parameters
        ----------
        path : str
            An absolute path in a results file.

        Returns
        -------
        bool
            True if it matches :attr:`path` or one of :attr:`also`.
        """
        return any(_regex(p, "[^/]+").fullmatch(path) for p in self.paths)


# --------------------------------------------------------------------------- the layout

#: Root attrs of the top file (written by fastinit.store): (name, meaning) pairs.
ROOT_ATTRS = (
    ("fastinit_version", "the fastinit that last wrote the file"),
    ("fastinit_layout", "2: a top file with one part file per run"),
    ("created_utc", "when the file was created"),
    ("modified_utc", "when it was last updated"),
    ("command_line", "the command of the last update"),
    ("cpu_model", "the CPU of the last update"),
    ("cpu_isa", "its vector instruction set"),
    ("code_isa", "the instruction set Numba compiled for"),
    ("cores", "its cores"),
    ("threads", "Numba threads"),
    ("python_version", "the Python of the last update"),
    ("numpy_version", "its NumPy"),
    ("numba_version", "its Numba"),
    ("numba_cuda_version", "its numba-cuda"),
    ("h5py_version", "its h5py"),
    ("llvmlite_version", "its llvmlite"),
    ("platform", "operating system"),
    ("gpu", "the GPU, when a command ran on one"),
)

#: Attrs of every run's group (made by fastinit.store.replace_group): (name, meaning) pairs.
RUN_ATTRS = (
    ("status", "running, complete, interrupted, diverged (sweeps: complete or incomplete)"),
    ("written_utc", "when the group was written"),
    ("command_line", "the command that wrote it"),
)

_PER_LAYER = "(layers,)"

HISTOGRAM_RUN = Group(
    "/histogram/<activation>/<init>",
    "one init: the activations (and gradients) at init and their statistics per layer",
    attrs=(
        ("init", "the init spec"),
        ("activation", "sigmoid, tanh or relu"),
        ("seed", "seed of the input and the weights"),
        ("backend", "numpy, cpu or cuda"),
        ("dtype", "float32 or float64"),
        ("layers", "dense layers"),
        ("units", "units per layer"),
        ("samples", "input samples"),
        ("weight_std", "nominal std of each W"),
        ("bias_std", "std of the biases"),
        ("saturation", "the rule for 'saturated'"),
    ),
    datasets=(
        Dataset(
            "activations",
            "(layers, samples, units)",
            RUN_DTYPE,
            "activation value",
            "outputs of every layer for every sample: (layer, sample, unit)",
            attrs=(("init, activation, ...", "the group's attrs"),),
        ),
        Dataset(
            "gradients",
            "(layers, samples, units)",
            RUN_DTYPE,
            "dL/dz (L: the random loss)",
            "gradient at init of each layer's pre-activation z_l = x_{l-1} @ W_l (+ b_l) for every sample: "
            "(layer, sample, unit). The loss is L = sum(G * z_last) with G ~ N(0, 1), one draw per seed "
            "shared by every init, so the last layer's row is G itself and d_l = (d_{l+1} @ W_{l+1}.T) * "
            "phi'(z_l) going down; computed in float64 from the stored activations, stored in the run's "
            "dtype (a float32 |dL/dz| below about 1e-45 is 0)",
            when="not with --no-gradients",
            attrs=(("init, activation, ...", "the group's attrs"),),
        ),
        Dataset(
            "mean", _PER_LAYER, "float64", "activation value", "mean of the finite activations of each layer"
        ),
        Dataset(
            "std",
            _PER_LAYER,
            "float64",
            "activation value",
            "standard deviation of the finite activations of each layer",
        ),
        Dataset(
            "saturated",
            _PER_LAYER,
            "float64",
            "fraction (0-1)",
            "fraction of each layer's activations that are saturated: <rule>",
        ),
        Dataset(
            "weight_std",
            _PER_LAYER,
            "float64",
            "weight value",
            "standard deviation the init scheme asks for, per layer",
        ),
        Dataset(
            "theory_std",
            _PER_LAYER,
            "float64",
            "activation value",
            "std of each layer's activations predicted by the mean-field "
            "variance recursion (infinite width, Gaussian pre-activations)",
        ),
        Dataset(
            "nonfinite",
            _PER_LAYER,
            "float64",
            "fraction (0-1)",
            "fraction of each layer's activations that are NaN or Inf (overflow)",
        ),
        Dataset(
            "weight_std_measured",
            _PER_LAYER,
            "float64",
            "weight value",
            "standard deviation of the weights actually drawn, per layer",
        ),
        Dataset(
            "grad_rms",
            _PER_LAYER,
            "float64",
            "relative to the last layer",
            "RMS of a N(0, 1) gradient backpropagated from the last layer to each layer's pre-activation, "
            "at init",
        ),
        Dataset(
            "grad_theory",
            _PER_LAYER,
            "float64",
            "relative to the last layer",
            "mean-field prediction of grad_rms (the product of sqrt(chi) per layer; chi1^depth at the fixed "
            "point)",
        ),
    ),
)

_PROBE_ATTRS = (
    ("layers", "the hidden layers, numbered from 1"),
    ("probe", "which images"),
    ("padding", "what fills a layer narrower than the widest"),
)

TRAIN_RUN = Group(
    "/train/<run>",
    "one run; with several --seeds only attrs (init, activation, seeds) and one seed=<s> group per seed",
    attrs=(
        ("init, activation, seed", "this run's"),
        ("config", "this run's config (JSON)"),
        ("runs, sizes, lr, batch_size, ...", "every field of the command's TrainConfig"),
        ("final_test_accuracy", "the last test accuracy"),
        ("final_train_loss", "mean loss of the last final_window steps"),
        ("iterations_done", "SGD steps done"),
        ("diverged_step", "the step whose loss was NaN or Inf, else -1"),
        ("wall_time_s", "seconds the run took"),
        ("init_seconds", "seconds the init took"),
        ("init_info", "lsuv, pretrain: the per-layer numbers of the init (JSON)"),
    ),
    datasets=(
        Dataset(
            "loss",
            "(iterations,)",
            "float64",
            "nats",
            "mean softmax cross-entropy of each mini-batch, before its SGD step; one row per iteration",
        ),
        Dataset(
            "grad_norm",
            "(iterations, layers)",
            "float64",
            "1 (norm of dL/dW)",
            "Frobenius norm of each layer's weight gradient at each iteration, one column per layer",
            attrs=(("columns", "the name of each column"),),
        ),
        Dataset(
            "test_accuracy",
            "(evaluations,)",
            "float64",
            "fraction (0-1)",
            "fraction of the test images classified correctly, at the iterations in eval_steps",
        ),
        Dataset(
            "eval_steps",
            "(evaluations,)",
            "int64",
            "iterations",
            "SGD steps done when each test_accuracy was measured",
        ),
        Dataset(
            "snapshot_steps",
            "(snapshots,)",
            "int64",
            "iterations",
            "SGD steps done when each snapshot of the probe activations was taken",
        ),
        Dataset(
            "activations",
            "(snapshots, hidden layers, probe samples, width)",
            RUN_DTYPE,
            "activation value",
            "hidden-layer outputs of a fixed probe batch: (snapshot, layer, sample, unit)",
            when="first seed only",
            attrs=_PROBE_ATTRS,
        ),
        Dataset(
            "gradients",
            "(4 snapshots, hidden layers, probe samples, width)",
            RUN_DTYPE,
            "dloss_i/dz (nats per unit of pre-activation)",
            "gradient of each probe image's own softmax cross-entropy loss_i with respect to each hidden "
            "layer's pre-activation z_l = h_{l-1} @ W_l + b_l, at each snapshot: (snapshot, layer, sample, "
            "unit); N times the gradient of the probe batch's mean loss. Computed in float64 on the host "
            "from the recorded activations and weights, stored in the run's dtype",
            when="with activations",
            attrs=_PROBE_ATTRS,
        ),
        Dataset(
            "gradient_steps",
            "(4 snapshots,)",
            "int64",
            "iterations",
            "SGD steps done when each snapshot of the probe gradients was taken: the "
            "snapshots the gradient figure draws",
            when="with gradients",
        ),
    ),
    also=("/train/<run>/seed=<s>", "/history/lr=<lr>/<run>", "/history/lr=<lr>/<run>/seed=<s>"),
)

_SWEEP_GRID = "(n_sw2, n_depths, n_seeds)"
_SWEEP_CHECKPOINTS = "(n_sw2, n_depths, n_seeds, n_checkpoints)"
_SWEEP_METRICS = (  # name, units, description, description at the checkpoints
    (
        "train_loss",
        "nats",
        "mean softmax cross-entropy on the first eval_samples training images after training",
        "mean softmax cross-entropy on the first eval_samples training images after each checkpoint's steps",
    ),
    (
        "train_accuracy",
        "fraction (0-1)",
        "accuracy on the first eval_samples training images after training",
        "accuracy on the first eval_samples training images after each checkpoint's steps",
    ),
    (
        "test_accuracy",
        "fraction (0-1)",
        "accuracy on the first eval_samples test images after training",
        "accuracy on the first eval_samples test images after each checkpoint's steps",
    ),
    (
        "diverged",
        "1 = yes",
        "1 if a mini-batch loss became NaN or Inf (training stopped there), else 0",
        "1 if a mini-batch loss became NaN or Inf (training stopped there), else 0",
    ),
    (
        "wall_time_s",
        "seconds",
        "wall time of the cell on the process that ran it (not deterministic)",
        "wall time from the cell's start to the end of each checkpoint's evaluation",
    ),
)

SWEEP = Group(
    "/sweep/<name>",
    "one sweep: each metric per cell of the grid sw2 x depth x seed, and the theory",
    attrs=(
        ("config", "the SweepConfig (JSON)"),
        ("activation, width, sb2, steps, ...", "every field of the SweepConfig"),
        ("critical_sw2", "the edge of chaos"),
        ("cells_done, cells_total", "cells measured, cells of the grid"),
        ("status", "complete or incomplete"),
    ),
    datasets=(
        Dataset(
            "sw2",
            "(n_sw2,)",
            "float64",
            "1 (times 1/fan_in)",
            "weight variance sigma_w^2 of each row of the grid: weights N(0, sw2 / fan_in)",
        ),
        Dataset("depths", "(n_depths,)", "int64", "layers", "hidden layers of each column of the grid"),
        Dataset(
            "seeds",
            "(n_seeds,)",
            "int64",
            "1",
            "seed of each run along the last axis (weights, biases and mini-batches)",
        ),
        Dataset(
            "xi_c",
            "(n_sw2,)",
            "float64",
            "layers",
            "mean-field depth scale of information propagation at each sw2 (inf at the edge of chaos)",
        ),
        Dataset(
            "xi_q",
            "(n_sw2,)",
            "float64",
            "layers",
            "mean-field depth scale of the variance's approach to q* at each sw2 (ReLU with sb2 = 0: "
            "the only finite one)",
        ),
        Dataset(
            "done",
            _SWEEP_GRID,
            "uint8",
            "1 = measured",
            "which cells have been run; the metrics are NaN elsewhere",
        ),
    )
    + tuple(
        Dataset(name, _SWEEP_GRID, "float64", units, text + "; axes (sw2, depth, seed)")
        for name, units, text, _ in _SWEEP_METRICS
    ),
)

SWEEP_CHECKPOINTS = Group(
    "/sweep/<name>/checkpoints",
    "with --checkpoints: each metric after each checkpoint's steps (the plain ones: the last)",
    datasets=(
        Dataset(
            "steps",
            "(n_checkpoints,)",
            "int64",
            "SGD steps",
            "the steps after which each cell was evaluated (the last axis of the datasets beside)",
        ),
    )
    + tuple(
        Dataset(
            name,
            _SWEEP_CHECKPOINTS,
            "float64",
            units,
            text + "; axes (sw2, depth, seed, checkpoint)",
            attrs=(("steps", "the checkpoints' steps"),),
        )
        for name, units, _, text in _SWEEP_METRICS
    ),
)

SPECTRUM_RUN = Group(
    "/spectrum/<activation>-<weights>",
    "one activation and weight distribution: the Jacobian's singular values at init",
    attrs=(
        ("activation, weights", "tanh, relu, sigmoid or linear; gaussian or orthogonal"),
        ("sw2, sb2", "weight and bias variance"),
        ("q_star, chi1, mu1, mu2", "the theory at the fixed point"),
        ("width, samples, seed, backend", "the config"),
    ),
)

SPECTRUM_DEPTH = Group(
    "/spectrum/<activation>-<weights>/depth=<L>",
    "the Jacobian of the first <L> layers",
    datasets=(
        Dataset(
            "singular_values",
            "(samples * width,)",
            "float64",
            "1",
            "singular values of the input-output Jacobian of <depth> layers, <samples> draws of <width> "
            "one after the other (each draw: a fresh network and input)",
            attrs=(
                ("depth", "<L>"),
                ("theory_mean, theory_variance", "of the squared singular values, infinite width"),
                ("mean, variance", "measured, of the squared singular values"),
                ("activation, weights, sw2, ...", "the group's attrs"),
            ),
        ),
    ),
)

SPECTRUM_TRAINING = Group(
    "/spectrum/training",
    "fastinit spectrum --train: learning speed, orthogonal against Gaussian weights",
    attrs=(
        ("config", "the TrainingConfig (JSON)"),
        ("depths, width, lr, target, ...", "every field of the TrainingConfig"),
        ("sw2, sb2, q_star, chi1", "the edge of chaos trained at"),
    ),
)

SPECTRUM_TRAINING_DEPTH = Group(
    "/spectrum/training/<weights>/depth=<L>",
    "the runs of one weight distribution and depth, one row per seed",
    attrs=(("weights, depth", "which"), ("median_steps_to_target", "over the seeds")),
    datasets=(
        Dataset(
            "eval_steps",
            "(n_evals,)",
            "int64",
            "SGD steps",
            "steps at which the train accuracy was measured",
        ),
        Dataset("seeds", "(n_seeds,)", "int64", "1", "seed of each row"),
        Dataset(
            "train_accuracy",
            "(n_seeds, n_evals)",
            "float64",
            "fraction (0-1)",
            "accuracy on the first <eval_samples> training images; axes (seed, eval); NaN after the run "
            "stopped (target reached or diverged)",
        ),
        Dataset(
            "train_loss",
            "(n_seeds, n_evals)",
            "float64",
            "nats",
            "mean softmax cross-entropy on the same images; axes (seed, eval)",
        ),
        Dataset(
            "steps_to_target",
            "(n_seeds,)",
            "float64",
            "SGD steps",
            "first measured step with train accuracy >= <target>; NaN if not within max_steps",
            attrs=(("target", "the train accuracy to reach"),),
        ),
        Dataset("wall_time_s", "(n_seeds,)", "float64", "seconds", "wall time of each run"),
    ),
)

THEORY = Group(
    "/theory/<activation>/sb2=<sb2>",
    "one bias variance: the mean-field quantities over the weight variances",
    attrs=(("activation, sb2", "which"), ("critical_sw2", "the edge of chaos")),
    datasets=(
        Dataset("sw2", "(n_sw2,)", "float64", "1 (times 1/fan_in)", "weight variance sigma_w^2"),
        Dataset("q_star", "(n_sw2,)", "float64", "variance", "fixed point of the pre-activation variance"),
        Dataset(
            "chi1",
            "(n_sw2,)",
            "float64",
            "1",
            "slope of the correlation map at c = 1 (< 1 ordered, > 1 chaotic)",
        ),
        Dataset(
            "c_star",
            "(n_sw2,)",
            "float64",
            "correlation",
            "fixed point of the correlation of two inputs",
        ),
        Dataset("chi_c", "(n_sw2,)", "float64", "1", "slope of the correlation map at c*"),
        Dataset(
            "xi_c",
            "(n_sw2,)",
            "float64",
            "layers",
            "depth scale of information propagation, 1 / |ln chi_c| (inf at the edge of chaos)",
        ),
    ),
)

_PER_CASE = "(cases,)"

PROFILE = Group(
    "/profile/<dtype>/<backend>",
    "one backend: one row per timed case",
    attrs=(
        ("quick, dtype, backend", "the command's settings"),
        ("python, machine, cpu_count, numba, gpu, ...", "the machine"),
    ),
    datasets=(
        Dataset("kernel", _PER_CASE, TEXT, "name", "the kernel (or train_step) timed"),
        Dataset("case", _PER_CASE, TEXT, "name", "the case: shapes or size"),
        Dataset(
            "size",
            _PER_CASE,
            "float64",
            "n, elements or samples",
            "x-axis of the figure: n of an n^3 matmul, elements, batch size",
        ),
        Dataset("time_s", _PER_CASE, "float64", "seconds", "median time per call, warm-up excluded"),
        Dataset(
            "time_xfer_s",
            _PER_CASE,
            "float64",
            "seconds",
            "cuda: median time per call with the host<->device copies; NaN on the other backends",
        ),
        Dataset(
            "work", _PER_CASE, "float64", "flops or bytes", "flops (GFLOP/s rows) or bytes moved per call"
        ),
        Dataset("unit", _PER_CASE, TEXT, "name", "the unit of throughput: GFLOP/s or GB/s"),
        Dataset("throughput", _PER_CASE, "float64", "GFLOP/s or GB/s (see unit)", "work / time_s / 1e9"),
        Dataset(
            "speedup",
            _PER_CASE,
            "float64",
            "1",
            "numpy's time / this time, same run (NaN when numpy was not run)",
        ),
        Dataset("inner", _PER_CASE, "int64", "calls", "calls timed together"),
        Dataset("repeats", _PER_CASE, "int64", "1", "timed batches; the median is reported"),
    ),
)

#: Every group of the layout, in the order of the docs. Groups that only hold other groups come
#: before what they hold.
GROUPS = (
    Group("/histogram", "fastinit histogram: activation histograms at init"),
    Group("/histogram/<activation>", "one activation function, one group per init"),
    HISTOGRAM_RUN,
    Group("/train", "fastinit train: training runs on MNIST, one group per run"),
    TRAIN_RUN,
    Group("/history", "fastinit reproduce: the sigmoid history runs at other learning rates"),
    Group(
        "/history/lr=<lr>",
        "one learning rate (curves only: no probe snapshots)",
    ),
    Group("/sweep", "fastinit sweep: one group per sweep (--name)"),
    SWEEP,
    SWEEP_CHECKPOINTS,
    Group("/spectrum", "fastinit spectrum: Jacobian spectra at init and (--train) learning speed"),
    SPECTRUM_RUN,
    SPECTRUM_DEPTH,
    SPECTRUM_TRAINING,
    Group("/spectrum/training/<weights>", "one weight distribution: orthogonal or gaussian"),
    SPECTRUM_TRAINING_DEPTH,
    Group("/theory", "fastinit theory --out: mean-field theory"),
    Group("/theory/<activation>", "one activation function, one group per bias variance"),
    THEORY,
    Group("/profile", "fastinit profile: kernel timings"),
    Group("/profile/<dtype>", "one dtype, one group per backend"),
    PROFILE,
)


def find(path):
    """The entry of the layout that the concrete path ``path`` of a results file is an instance of.

    Parameters
    ----------
    path : str
        An absolute path such as ``/histogram/tanh/xavier/mean``.

    Returns
    -------
    Group or Dataset or None
        The group or dataset entry; None if the layout declares no such path. Where two patterns
        match, the one with fewer placeholders wins (``/spectrum/training`` over
        ``/spectrum/<activation>-<weights>``).
    """
    path = "/" + path.strip("/")
    found = []
    for g in GROUPS:
        if g.matches(path):
            found.append((g.path.count("<"), g))
        parent, _, name = path.rpartition("/")
        if g.datasets and g.matches(parent or "/"):
            found += [(g.path.count("<"), d) for d in g.datasets if d.name == name]
    return min(found, key=lambda pair: pair[0])[1] if found else None


def label(dataset, entry, values=None, **extra):
    """Give an h5py dataset the ``units`` and ``description`` of its entry (and ``extra`` attrs).

    Parameters
    ----------
    dataset : h5py.Dataset
        The dataset just written.
    entry : Dataset
        Its entry in the layout.
    values : dict, optional
        The values of the placeholders in the entry's description.
    **extra
        Further attrs of the dataset.

    Returns
    -------
    h5py.Dataset
        ``dataset``.

    Raises
    ------
    KeyError
        If a placeholder of the description has no value.
    ValueError
        If ``dataset`` is not named as ``entry``.
    """
    from .store import label as set_units

    if dataset.name.rsplit("/", 1)[-1] != entry.name:
        raise ValueError(f"dataset {dataset.name} is labelled as {entry.path}")
    return set_units(dataset, entry.units, entry.text(**(values or {})), **extra)


def check(group):
    """What in ``group`` (and below) the layout does not declare, or declares otherwise.

    Parameters
    ----------
    group : h5py.Group
        Usually a results file open for reading.

    Returns
    -------
    list of str
        One line per problem: a group or dataset the layout does not declare, a dataset whose
        dtype, ``units`` or ``description`` differ from its entry's. Empty when all agree.

    Raises
    ------
    fastinit.store.StoreError
        If a linked part file is missing or unreadable.
    """
    import h5py

    from .store import walk

    problems = []
    for path, obj in walk(group):
        entry = find(path)
        kind = "dataset" if isinstance(obj, h5py.Dataset) else "group"
        if not isinstance(entry, Dataset if kind == "dataset" else Group):
            problems.append(f"{path}: a {kind} the schema does not declare")
            continue
        if kind == "group":
            continue
        units, text = obj.attrs.get("units"), obj.attrs.get("description")
        if units != entry.units:
            problems.append(f"{path}: units {units!r}, the schema says {entry.units!r}")
        if text is None or not entry.describes(text):
            problems.append(f"{path}: description {text!r}, the schema says {entry.description!r}")
        if not entry.allows(obj.dtype):
            problems.append(f"{path}: dtype {obj.dtype}, the schema says {entry.dtype}")
    return problems


def render():
    """The layout as an indented tree of text: the layout block of ``docs/storage.md``.

    Returns
    -------
    str
        The root's attrs, then each group (its path component, what it holds, its attrs) with its
        datasets (name, shape, dtype, ``[units]``, when written if not always) and the groups
        below it, one line each (attrs wrapped), ending in a newline.
    """
    entries = {}  # path pattern -> (description, group or None)
    for g in GROUPS:
        entries[g.path] = (g.description, g)
        entries.update({p: (f"the layout of {g.path}", None) for p in g.also})
    lines = ["/  the top file (fastinit.h5)"]
    lines += _wrapped("   attrs: ", [name for name, _ in ROOT_ATTRS])
    lines += _wrapped("   every run's group: attrs ", [name for name, _ in RUN_ATTRS])

    def tree(parent, depth):
        for path, (description, g) in entries.items():
            if path.rpartition("/")[0] != parent:
                continue
            indent = "  " * depth
            lines.append(f"{indent}{path if depth == 0 else path.rpartition('/')[2]}/  {description}")
            if g is not None and g.attrs:
                lines.extend(_wrapped(f"{indent}    attrs: ", [name for name, _ in g.attrs]))
            rows = [(d.name, d.shape, d.dtype, f"[{d.units}]", d.when) for d in (g.datasets if g else ())]
            widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
            for row in rows:
                cells = [cell.ljust(w) for cell, w in zip(row, widths)] + [row[4]]
                lines.append(f"{indent}  " + "  ".join(cells).rstrip())
            tree(path, depth + 1)

    tree("", 0)
    return "\n".join(lines) + "\n"


def _wrapped(first, words, width=100):
    """``first`` and the comma-separated ``words``, continued on lines indented as ``first``."""
    lines, line = [], first
    for i, word in enumerate(words):
        word += "," if i < len(words) - 1 else ""
        if len(line) + len(word) + 1 > width and line.strip() != first.strip():
            lines.append(line.rstrip())
            line = " " * len(first)
        line += word + " "
    return lines + [line.rstrip()]
