"""Sweeps over weight variance x depth x seed: where deep networks stop training, against theory.

Each cell of the grid trains one MLP on MNIST: ``depth`` hidden layers of
``width`` units with the activation, weights drawn from N(0, sw2 / fan_in)
(``lecun`` with gain sqrt(sw2)) and biases from N(0, sb2), then plain SGD for
``steps`` mini-batches. The mean-field theory (:mod:`fastinit.theory`)
predicts that such a network trains only while ``depth`` is below about
6 xi_c(sw2, sb2) (Schoenholz et al., "Deep Information Propagation", 2017);
the sweep measures it.

A cell depends only on its own values (sw2, depth, seed) and the config: the
weights come from ``default_rng(seed)`` (so cells of one seed and depth share
their Gaussian draws, scaled), the biases from ``default_rng([seed, 1])`` and
the mini-batches from ``fastinit.training.batch_indices(..., seed)``. The
engine's arithmetic does not depend on its thread count, and the metrics are
computed after training in a fixed order, so a cell gives bit-identical
numbers in any process, on any worker, in any order. Where the cells run:
:mod:`fastinit.experiments.executors`.

Results live in the HDF5 group ``/sweep/<name>/`` (see :func:`write`): one
float64 dataset per metric shaped (n_sw2, n_depths, n_seeds), the grid, the
theory's xi_c and xi_q per sw2, a ``done`` mask and the config as attributes.

Checkpoints (``checkpoints=(100, 300, 1000, 3000)``): each cell is evaluated
after each of those steps within its one training run, so the sweep costs
what its longest run costs. The per-checkpoint metrics go to
``/sweep/<name>/checkpoints/<metric>``, shaped (n_sw2, n_depths, n_seeds,
n_checkpoints), the steps in ``checkpoints/steps`` and in each dataset's
``steps`` attribute; the plain metrics are those at the last checkpoint.
:func:`fit_multiplier` fits n(t) in "deepest trainable depth = n xi_c" per
phase and checkpoint. Running a sweep again with the same config skips the
cells already done (a stopped sweep resumes); a grid that grew keeps the
cells it shares with the old one.
"""

import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import schema
from ..data import load_mnist
from ..mlp import MLP, compile_backend
from ..progress import Progress
from ..theory import critical_sw2, mean_field
from ..training import sgd
from . import executors
from .config_checks import float_dtype, positive_int, positive_number, train_limit
from .executors import SweepError

__all__ = [
    "SweepConfig",
    "SweepError",
    "Cell",
    "PRESETS",
    "METRICS",
    "run_cell",
    "run",
    "sweep",
    "SweepResult",
    "read",
    "write",
    "trainable_depth",
    "seed_mean",
    "mnist_arrays",
    "depth_scales",
    "phases",
    "MultiplierFit",
    "fit_multiplier",
    "caveats",
    "format_summary",
    "MNIST_MEAN_SQUARE",
]

#: Metrics of a cell, all float64 in the file; their units and descriptions: :data:`fastinit.schema.SWEEP`.
METRICS = ("train_loss", "train_accuracy", "test_accuracy", "diverged", "wall_time_s")

#: Mean of x^2 over the pixels of the MNIST training images as fastinit feeds them (pixels / 255):
#: the first hidden layer's pre-activations have variance sw2 * MNIST_MEAN_SQUARE + sb2.
MNIST_MEAN_SQUARE = 0.112

#: Named grids for ``fastinit sweep --preset``. ``schoenholz-time``: 7 sigma_w^2 (both phases, the edge
#: of chaos at 1.76 between 1.5 and 2) x 9 depths to 80, evaluated at steps 100, 300, 1000 and 3000 on
#: 2000 images: 63 cells sized to run in under 30 min on 2 cores (a depth-100 step costs about 38 ms
#: on each of 2 busy cores, and a step's cost grows like depth + 5.5 layers).
PRESETS = {
    "schoenholz": dict(
        activation="tanh",
        sb2=0.05,
        width=100,
        lr=0.01,
        steps=800,
        batch_size=128,
        sw2=tuple(1.0 + 0.25 * i for i in range(13)),
        depths=(5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 100),
        seeds=(0,),
    ),
}
PRESETS["schoenholz-time"] = dict(
    PRESETS["schoenholz"],
    steps=3000,
    checkpoints=(100, 300, 1000, 3000),
    eval_samples=2000,
    sw2=(1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0),
    depths=(5, 10, 15, 20, 30, 40, 50, 60, 80),
)


@dataclass(frozen=True)
class Cell:
    """One grid point: indices into the grid and the values they stand for.

    Parameters
    ----------
    i, j, k : int
        Indices into ``sw2``, ``depths`` and ``seeds`` of the config.
    sw2 : float
        The weight variance sigma_w^2.
    depth : int
        The number of hidden layers.
    seed : int
        The seed of the weights, biases and mini-batches.
    """

    i: int
    j: int
    k: int
    sw2: float
    depth: int
    seed: int

    def __str__(self):
        return f"cell sw2={self.sw2:g} depth={self.depth} seed={self.seed}"


@dataclass(frozen=True)
class SweepConfig:
    """A grid of training runs (defaults: a small tanh grid that runs in about a minute).

    Parameters
    ----------
    sw2 : tuple of float
        Weight variances sigma_w^2 (weights N(0, sw2 / fan_in)).
    depths : tuple of int
        Numbers of hidden layers.
    seeds : tuple of int
        One run per seed.
    sb2 : float
        Bias variance.
    activation : str
        The activation of every hidden layer.
    width : int
        Units per hidden layer.
    steps : int
        Plain SGD steps.
    lr : float
        SGD learning rate.
    batch_size : int
        Images per mini-batch.
    dtype : {"float32", "float64"}
        Floating-point type.
    eval_samples : int
        Training and test images the metrics are measured on.
    train_limit : int or None
        Use only the first n training images for SGD (tests).
    data_dir : str or None
        MNIST files (default: the copy shipped with fastinit; on a cluster the folder must
        exist on the workers).
    checkpoints : tuple of int
        Steps (each from 1 to ``steps``) after which every cell is also evaluated, within the
        same run; ``validate`` sorts them and adds ``steps`` as the last. ``()`` (default):
        evaluated once, after ``steps``.
    """

    sw2: tuple = (1.0, 1.75, 2.5, 4.0)
    depths: tuple = (5, 20, 50)
    seeds: tuple = (0,)
    sb2: float = 0.05
    activation: str = "tanh"
    width: int = 100
    steps: int = 300
    lr: float = 0.005
    batch_size: int = 128
    dtype: str = "float32"
    eval_samples: int = 10000
    train_limit: int = None
    data_dir: str = None
    checkpoints: tuple = ()

    def validate(self):
        """The config with normalised types.

        Returns
        -------
        SweepConfig
            A checked copy: tuples of float/int, ``checkpoints`` sorted and ending at ``steps``.

        Raises
        ------
        ValueError, TypeError
            Naming a bad field.
        """

        def values(name, cast, ok, what):
            raw = getattr(self, name)
            if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
                raise TypeError(f"{name} must be a sequence of {what}, got {raw!r}")
            out = []
            for v in raw:
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise TypeError(f"{name} must hold numbers, got {v!r}")
                if cast is int and v != int(v):
                    raise ValueError(f"{name} must hold integers, got {v!r}")
                v = cast(v)
                if not ok(v):
                    raise ValueError(f"{name} must hold {what}, got {v!r}")
                out.append(v)
            if not out:
                raise ValueError(f"{name} is empty: give at least one value")
            if len(set(out)) != len(out):
                raise ValueError(f"{name} has repeated values: {out}")
            return tuple(out)

        sw2 = values("sw2", float, lambda v: 0 < v < math.inf, "finite numbers > 0")
        depths = values("depths", int, lambda v: 1 <= v <= 10000, "integers from 1 to 10000")
        seeds = values("seeds", int, lambda v: 0 <= v < 2**63, "integers >= 0")
        for name in ("width", "steps", "batch_size", "eval_samples"):
            positive_int(name, getattr(self, name))
        train_limit(self.train_limit, self.batch_size)
        float_dtype(self.dtype)
        mean_field(self.activation, 1.0, self.sb2)  # checks the activation and sb2
        checkpoints = ()
        if (
            self.checkpoints is None
            or isinstance(self.checkpoints, (str, bytes))
            or not hasattr(self.checkpoints, "__iter__")
        ):
            raise TypeError(f"checkpoints must be a sequence of steps, got {self.checkpoints!r}")
        if len(tuple(self.checkpoints)):
            given = values(
                "checkpoints", int, lambda v: 1 <= v <= self.steps, f"integers from 1 to steps ({self.steps})"
            )
            checkpoints = tuple(sorted(set(given) | {int(self.steps)}))
        return replace(
            self,
            sw2=sw2,
            depths=depths,
            seeds=seeds,
            sb2=float(self.sb2),
            lr=positive_number("lr", self.lr),
            width=int(self.width),
            steps=int(self.steps),
            batch_size=int(self.batch_size),
            eval_samples=int(self.eval_samples),
            checkpoints=checkpoints,
        )

    @property
    def shape(self):
        """(n_sw2, n_depths, n_seeds)."""
        return len(self.sw2), len(self.depths), len(self.seeds)

    @property
    def stops(self):
        """The steps after which a cell is evaluated: ``checkpoints``, or ``(steps,)`` without them."""
        return tuple(self.checkpoints) or (self.steps,)

    def cells(self):
        """Every :class:`Cell`, deepest first (long cells start early, so a pool ends evenly).

        Returns
        -------
        list of Cell
            Sorted by depth (deepest first), then sw2 and seed index.
        """
        out = [
            Cell(i, j, k, s, d, seed)
            for i, s in enumerate(self.sw2)
            for j, d in enumerate(self.depths)
            for k, seed in enumerate(self.seeds)
        ]
        return sorted(out, key=lambda c: (-c.depth, c.i, c.k))

    def identity(self):
        """What a cell's numbers depend on besides its grid values (resuming needs these equal).

        Returns
        -------
        dict
            Every field but ``sw2``, ``depths`` and ``seeds``.
        """
        d = asdict(self)
        for axis in ("sw2", "depths", "seeds"):
            d.pop(axis)
        return d


# --------------------------------------------------------------------------- one cell


def mnist_arrays(data_dir, dtype):
    """MNIST as ``(train_images, train_labels, test_images, test_labels)``.

    Parameters
    ----------
    data_dir : str or None
        The folder of the four IDX files; ``None``: the shipped copy.
    dtype : str
        float32 or float64, for the images.

    Returns
    -------
    tuple of ndarray
        Read-only arrays, cached in memory by :func:`fastinit.data.load_mnist`.
    """
    d = load_mnist(data_dir, dtype=dtype)
    return d.train_images, d.train_labels, d.test_images, d.test_labels


def run_cell(config, cell, backend="cpu"):
    """Train and evaluate one cell.

    Pure: the result depends only on ``config`` and the cell's values, never on the process,
    thread count or order (``wall_time_s`` aside). Loads MNIST once per process. With
    ``config.checkpoints`` the one training run stops after each checkpoint to evaluate (the
    same numbers as a run of that many steps: the mini-batches are a prefix of the same
    sequence); a run that diverged keeps its last parameters, so the later checkpoints repeat
    the evaluation made where it stopped.

    Parameters
    ----------
    config : SweepConfig
        Validated (:meth:`SweepConfig.validate`).
    cell : Cell
        The grid point to train.
    backend : {"cpu", "numpy", "cuda"}, default "cpu"
        The engine.

    Returns
    -------
    dict
        The :data:`METRICS` (floats) after ``config.steps``; with checkpoints also
        ``"checkpoints"``: metric name -> list of floats, one per checkpoint (``wall_time_s``
        there counts from the cell's start).

    Raises
    ------
    fastinit.data.DataError
        If the data cannot be read.
    """
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = mnist_arrays(config.data_dir, config.dtype)
    if config.train_limit is not None:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    sizes = [x_train.shape[1]] + [config.width] * cell.depth + [10]
    model = MLP(
        sizes,
        activation=config.activation,
        init=f"lecun,gain={math.sqrt(cell.sw2)!r}",
        backend=backend,
        dtype=config.dtype,
        seed=cell.seed,
    )
    if config.sb2 > 0:
        model.draw_biases(math.sqrt(config.sb2), np.random.default_rng([cell.seed, 1]))
    n = config.eval_samples
    rows = []
    steps = sgd(
        model,
        x_train,
        y_train,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=cell.seed,
        stops=config.stops,
    )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for stop in steps:
            train_loss, train_acc = model.evaluate(x_train[:n], y_train[:n])
            _, test_acc = model.evaluate(x_test[:n], y_test[:n])
            rows.append(
                dict(
                    train_loss=float(train_loss),
                    train_accuracy=float(train_acc),
                    test_accuracy=float(test_acc),
                    diverged=float(stop.diverged),
                    wall_time_s=time.perf_counter() - t0,
                )
            )
    rows += rows[-1:] * (len(config.stops) - len(rows))  # diverged: its evaluation holds for the rest
    series = {m: [row[m] for row in rows] for m in METRICS}
    out = {m: v[-1] for m, v in series.items()}
    if config.checkpoints:
        out["checkpoints"] = series
    return out


# --------------------------------------------------------------------------- storage


@dataclass
class SweepResult:
    """A sweep's grid and measurements (see :func:`read`).

    Parameters
    ----------
    name : str
        The sweep's name (its group ``/sweep/<name>``).
    config : SweepConfig
        The validated grid.
    metrics : dict
        Name -> float64 (n_sw2, n_depths, n_seeds), NaN where not done (with checkpoints: the
        values at the last one).
    done : numpy.ndarray
        bool (n_sw2, n_depths, n_seeds): which cells are done.
    xi_c : numpy.ndarray
        float64 (n_sw2,): the theory's correlation depth scale.
    critical_sw2 : float
        The edge of chaos.
    checkpoint_metrics : dict, optional
        Name -> float64 (n_sw2, n_depths, n_seeds, n_checkpoints) at ``config.checkpoints``
        (empty without checkpoints).
    xi_q : numpy.ndarray, optional
        float64 (n_sw2,): the theory's variance depth scale; computed from ``config`` when None.
    """

    name: str
    config: SweepConfig
    metrics: dict
    done: np.ndarray
    xi_c: np.ndarray
    critical_sw2: float
    checkpoint_metrics: dict = field(default_factory=dict)
    xi_q: np.ndarray = None

    def __post_init__(self):
        if self.xi_q is None:
            self.xi_q = _theory(self.config)[2]

    @property
    def complete(self):
        """bool: Whether every cell is done."""
        return bool(self.done.all())

    # The result's own statistics, so that figures (fastinit.plots) need only the result.

    def seed_mean(self, metric, checkpoint=None):
        """The mean of ``metric`` over the done seeds of each cell.

        Parameters
        ----------
        metric : str
            One of :data:`METRICS`.
        checkpoint : int, optional
            As in :func:`seed_mean`.

        Returns
        -------
        numpy.ndarray
            As :func:`seed_mean` returns it.
        """
        return seed_mean(self, metric, checkpoint)

    def trainable_depth(self, threshold=0.5, metric="train_accuracy", checkpoint=None):
        """The deepest depth that trains at each sw2.

        Parameters
        ----------
        threshold : float, default 0.5
            As in :func:`trainable_depth`.
        metric : str, default "train_accuracy"
            As in :func:`trainable_depth`.
        checkpoint : int, optional
            As in :func:`seed_mean`.

        Returns
        -------
        numpy.ndarray
            As :func:`trainable_depth` returns it.
        """
        return trainable_depth(self, threshold, metric, checkpoint)

    def fit_multiplier(self, threshold=0.5, checkpoint=None):
        """n in "deepest trainable depth = n xi" per phase.

        Parameters
        ----------
        threshold : float, default 0.5
            As in :func:`fit_multiplier`.
        checkpoint : int, optional
            As in :func:`fit_multiplier`.

        Returns
        -------
        dict
            As :func:`fit_multiplier` returns it.
        """
        return fit_multiplier(self, threshold, checkpoint)


def _theory(config):
    fields = [mean_field(config.activation, s, config.sb2) for s in config.sw2]
    return (
        np.array([m.xi_c for m in fields], dtype=np.float64),
        critical_sw2(config.activation, config.sb2),
        np.array([m.xi_q for m in fields], dtype=np.float64),
    )


def _empty(name, config):
    xi, crit, xi_q = _theory(config)
    shape = config.shape
    n_cp = len(config.checkpoints)
    per_step = {m: np.full(shape + (n_cp,), np.nan) for m in METRICS} if n_cp else {}
    return SweepResult(
        name,
        config,
        {m: np.full(shape, np.nan) for m in METRICS},
        np.zeros(shape, bool),
        xi,
        crit,
        per_step,
        xi_q,
    )


def _store_cell(result, cell, metrics):
    """Put what :func:`run_cell` returned for ``cell`` into ``result``."""
    at = (cell.i, cell.j, cell.k)
    for m in METRICS:
        result.metrics[m][at] = metrics[m]
        if result.checkpoint_metrics:
            result.checkpoint_metrics[m][at] = metrics["checkpoints"][m]
    result.done[at] = True


def _config_json(config):
    return json.dumps(asdict(config), sort_keys=True)


def check_name(name):
    """Raise ``ValueError`` unless ``name`` can be an HDF5 group name under /sweep."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"sweep name must be a non-empty name without '/' or a leading '.', got {name!r}")
    return name


def read(path, name):
    """The :class:`SweepResult` stored as ``/sweep/<name>`` in ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.
    name : str
        The sweep's name.

    Returns
    -------
    SweepResult
        As stored (``xi_q`` computed for sweeps stored before it was).

    Raises
    ------
    fastinit.store.StoreError
        For a missing or unreadable file.
    KeyError
        For a missing sweep (the message lists the sweeps the file has).
    """
    from ..store import open_read

    with open_read(path) as f:
        group = f.get(schema.SWEEP.at(name=name))
        if group is None:
            have = sorted(f["sweep"].keys()) if "sweep" in f else []
            raise KeyError(
                f"{path} has no sweep named {name!r}"
                + (f"; it has: {', '.join(have)}" if have else "; run 'fastinit sweep' first")
            )
        config = SweepConfig(**json.loads(group.attrs["config"]))
        config = replace(
            config,
            sw2=tuple(config.sw2),
            depths=tuple(config.depths),
            seeds=tuple(config.seeds),
            checkpoints=tuple(config.checkpoints),
        )
        metrics = {m: group[m][()] for m in METRICS}
        per_step = {}
        if config.checkpoints and "checkpoints" in group:
            per_step = {m: group["checkpoints"][m][()] for m in METRICS}
        xi_q = group["xi_q"][()] if "xi_q" in group else None  # sweeps stored before xi_q: computed
        return SweepResult(
            name,
            config,
            metrics,
            group["done"][()].astype(bool),
            group["xi_c"][()],
            float(group.attrs["critical_sw2"]),
            per_step,
            xi_q,
        )


def _resume(path, name, config, restart):
    """An empty result for ``config``, filled with the cells a stored sweep of the same name
    already has, if its settings match. Raises ``ValueError`` if they differ (unless ``restart``)."""
    result = _empty(name, config)
    if restart or not os.path.exists(path):
        return result
    try:
        old = read(path, name)
    except KeyError:
        return result
    if old.config.identity() != config.identity():
        diff = ", ".join(
            f"{k} {v!r} (now {config.identity()[k]!r})"
            for k, v in old.config.identity().items()
            if config.identity()[k] != v
        )
        raise ValueError(
            f"sweep {name!r} in {path} was run with {diff}; resuming needs the same settings. "
            "Give this sweep another --name, or --restart to discard the stored one"
        )
    pos = {
        (s, d, seed): (i, j, k)
        for i, s in enumerate(old.config.sw2)
        for j, d in enumerate(old.config.depths)
        for k, seed in enumerate(old.config.seeds)
    }
    for cell in config.cells():
        src = pos.get((cell.sw2, cell.depth, cell.seed))
        if src is not None and old.done[src]:
            result.done[cell.i, cell.j, cell.k] = True
            for m in METRICS:
                result.metrics[m][cell.i, cell.j, cell.k] = old.metrics[m][src]
                if result.checkpoint_metrics:
                    result.checkpoint_metrics[m][cell.i, cell.j, cell.k] = old.checkpoint_metrics[m][src]
    return result


def write(f, result, **attrs):
    """Write ``result`` as the group ``/sweep/<name>`` of an open results file (replacing it).

    The group holds ``sw2`` (n_sw2,), ``depths`` (n_depths,), ``seeds``
    (n_seeds,), ``xi_c`` and ``xi_q`` (n_sw2,), ``done`` (uint8) and one float64
    dataset per metric shaped (n_sw2, n_depths, n_seeds); with checkpoints also
    ``checkpoints/steps`` (n_checkpoints,) and ``checkpoints/<metric>`` shaped
    (n_sw2, n_depths, n_seeds, n_checkpoints), each with a ``steps`` attribute.
    Attrs: ``config`` (JSON), every config field, ``critical_sw2``,
    ``cells_done``, ``cells_total`` and ``status`` ("complete" or
    "incomplete").

    Parameters
    ----------
    f : h5py.File
        The results file, open for writing (``fastinit.store.open_results``).
    result : SweepResult
        What to store.
    **attrs
        More attrs of the group (``where`` the cells ran).

    Returns
    -------
    str
        The group written.
    """
    from ..store import replace_group

    config = result.config
    fields = {
        k: ("none" if v is None else v)
        for k, v in asdict(config).items()
        if k not in ("sw2", "depths", "seeds", "checkpoints")
    }
    if config.checkpoints:
        fields["checkpoints"] = np.asarray(config.checkpoints, np.int64)
    g = replace_group(
        f,
        schema.SWEEP.at(name=result.name),
        attrs=dict(
            fields,
            config=_config_json(config),
            critical_sw2=result.critical_sw2,
            cells_done=int(result.done.sum()),
            cells_total=int(result.done.size),
            **attrs,
        ),
    )
    for name, data in (
        ("sw2", np.asarray(config.sw2, np.float64)),
        ("depths", np.asarray(config.depths, np.int64)),
        ("seeds", np.asarray(config.seeds, np.int64)),
        ("xi_c", result.xi_c),
        ("xi_q", result.xi_q),
        ("done", result.done.astype(np.uint8)),
    ) + tuple((m, result.metrics[m]) for m in METRICS):
        schema.label(g.create_dataset(name, data=data), schema.SWEEP[name])
    if result.checkpoint_metrics:
        steps = np.asarray(config.checkpoints, np.int64)
        sub = g.create_group("checkpoints")
        schema.label(sub.create_dataset("steps", data=steps), schema.SWEEP_CHECKPOINTS["steps"])
        for m in METRICS:
            schema.label(
                sub.create_dataset(m, data=result.checkpoint_metrics[m]),
                schema.SWEEP_CHECKPOINTS[m],
                steps=steps,
            )
    g.attrs["status"] = "complete" if result.complete else "incomplete"
    return g.name


def _save(path, result, **attrs):
    """:func:`write` into the file ``path`` in one atomic update: a stop signal during it leaves
    the file as it was."""
    from ..store import open_results

    with open_results(path, keep_on_interrupt=False) as f:
        write(f, result, **attrs)


# --------------------------------------------------------------------------- the sweep


def run(
    config=None,
    *,
    name="sweep",
    backend="cpu",
    executor="pool",
    processes=None,
    scheduler=None,
    workers=None,
    connect_timeout=10.0,
    progress=True,
    log=print,
    **overrides,
):
    """Run every cell of ``config`` (plus keyword ``overrides``) in memory; write nothing.

    :func:`sweep` is the stored, resumable form; :func:`write` stores a result.

    Parameters
    ----------
    config : SweepConfig, optional
        Validated here; default: ``SweepConfig()``.
    name : str, default "sweep"
        The result's name (its group ``/sweep/<name>`` once saved).
    backend : {"cpu", "numpy", "cuda"}, default "cpu"
        The engine every cell trains on.
    executor : {"pool", "engine"}, default "pool"
        ``"pool"``: the cells run in ``processes`` local processes (default: one per core), one
        single-threaded cell each; ``"engine"``: one cell at a time here on the engine's
        parallel step.
    processes : int, optional
        How many local processes the ``"pool"`` executor uses.
    scheduler : str, optional
        ``tcp://HOST:PORT``: send the cells to that Dask cluster instead.
    workers : int, optional
        Start a local Dask cluster of that many processes instead.
    connect_timeout : float, default 10.0
        Seconds to wait for the ``scheduler``.
    progress : bool, default True
        Show a progress bar (``fastinit.progress``).
    log : callable, default print
        Receives one-line messages.
    **overrides
        Fields of ``config`` to replace.

    Returns
    -------
    SweepResult
        Every cell done.

    Raises
    ------
    ValueError, TypeError
        For a bad config, name or executor.
    SweepError
        For an unreachable cluster or a broken pool.
    """
    config = replace(config or SweepConfig(), **overrides).validate()
    check_name(name)
    result = _empty(name, config)
    where = _Where(backend, executor, processes, scheduler, workers, connect_timeout)
    _fill(result, config.cells(), where, progress, log)
    return result


def sweep(
    config=None,
    out="fastinit-results.h5",
    name="sweep",
    *,
    scheduler=None,
    workers=None,
    processes=None,
    executor="pool",
    backend="cpu",
    restart=False,
    save_every=10.0,
    connect_timeout=10.0,
    progress=True,
    log=print,
    **overrides,
):
    """Run every cell of ``config`` (plus keyword ``overrides``) not yet in ``out``.

    Only this process writes ``out``: the done cells are saved at least every ``save_every``
    seconds, at the end and when stopped, so a stopped sweep resumes where it was.

    Parameters
    ----------
    config : SweepConfig, optional
        Validated here; default: ``SweepConfig()``.
    out : str or os.PathLike, default "fastinit-results.h5"
        The HDF5 results file.
    name : str, default "sweep"
        The sweep's group, ``/sweep/<name>``.
    scheduler : str, optional
        As in :func:`run`.
    workers : int, optional
        As in :func:`run`.
    processes : int, optional
        As in :func:`run`.
    executor : {"pool", "engine"}, default "pool"
        As in :func:`run`.
    backend : {"cpu", "numpy", "cuda"}, default "cpu"
        As in :func:`run`.
    restart : bool, default False
        Discard a stored sweep of the same name.
    save_every : float, default 10.0
        Seconds between saves at most, while cells are done.
    connect_timeout : float, default 10.0
        As in :func:`run`.
    progress : bool, default True
        As in :func:`run`.
    log : callable, default print
        As in :func:`run`.
    **overrides
        As in :func:`run`.

    Returns
    -------
    SweepResult
        Every cell done, those stored before included.

    Raises
    ------
    ValueError, TypeError
        For a bad config, name or executor, or a stored sweep of the same name with other
        settings (unless ``restart``).
    fastinit.store.StoreError
        For an unwritable file.
    SweepError
        For an unreachable cluster or a broken pool.
    """
    from ..store import check_output_path

    config = replace(config or SweepConfig(), **overrides).validate()
    check_name(name)
    check_output_path(out)
    _check_executor(executor)
    result = _resume(out, name, config, restart)
    pending = [c for c in config.cells() if not result.done[c.i, c.j, c.k]]
    if len(pending) < result.done.size:
        log(
            f"sweep {name}: {result.done.size - len(pending)} of {result.done.size} cells already in {out}; "
            f"running the other {len(pending)}"
        )
    where = _Where(backend, executor, processes, scheduler, workers, connect_timeout)
    _fill(result, pending, where, progress, log, _Saving(out, result, save_every))
    return result


def _check_executor(executor):
    if executor not in ("pool", "engine"):
        raise ValueError(f"executor must be 'pool' or 'engine', got {executor!r}")


class _Saving:
    """Saves a sweep's result to ``path`` at least every ``every`` seconds as cells are done, when
    the sweep is stopped (if a cell was done since the last save) and at its end."""

    def __init__(self, path, result, every):
        self.path, self.result, self.every = path, result, every
        self.last, self.unsaved = time.monotonic(), 0

    def cell_done(self, where):
        self.unsaved += 1
        if time.monotonic() - self.last >= self.every:
            self.save(where)

    def stopped(self, where):
        if self.unsaved:  # keep what finished; a sweep that never started writes nothing
            self.save(where)

    def save(self, where):
        _save(self.path, self.result, where=where)
        self.last, self.unsaved = time.monotonic(), 0


@dataclass(frozen=True)
class _Where:
    """Where the cells run: the arguments of :func:`run` that say it."""

    backend: str
    executor: str
    processes: int
    scheduler: str
    workers: int
    timeout: float

    def start(self, config, pending, log):
        """Start running the ``pending`` cells of ``config``; return a description of where and the
        iterator of ``(cell, metrics)`` from :mod:`fastinit.experiments.executors`."""
        _check_executor(self.executor)
        backend, cluster = self.backend, self.scheduler is not None or self.workers is not None
        if pending and (cluster or (self.executor == "pool" and len(pending) > 1)):
            # Workers start cold and would compile the same functions into one cache directory
            # at the same moment (numba#4807, #10128: mismatched symbols, segfaults). Compile here
            # first, so that the workers on this machine only load; executors.dask warms the others.
            compile_backend(backend, config.dtype, config.activation, parallel=False)
        work = functools.partial(run_cell, config, backend=backend)
        if cluster:
            warm = functools.partial(compile_backend, backend, config.dtype, config.activation, False)
            runs = executors.dask(
                work,
                pending,
                self.scheduler,
                self.workers,
                warm=warm,
                name="fastinit-sweep-cell",
                log=log,
                timeout=self.timeout,
            )
            if self.scheduler:
                return f"dask cluster at {self.scheduler}", runs
            return f"local dask cluster of {self.workers} workers", runs
        if self.executor == "engine" or len(pending) <= 1:
            return "this process, parallel engine", executors.in_process(work, pending)
        processes = self.processes or os.cpu_count() or 1
        runs = executors.process_pool(work, pending, min(processes, len(pending)))
        return f"{processes} local processes", runs


def _fill(result, pending, placement, progress, log, saving=None):
    """Run the ``pending`` cells of ``result`` where ``placement`` (a :class:`_Where`) says, storing
    each into ``result`` as it comes; ``saving`` (a :class:`_Saving`) is told of each cell, of a stop
    and of the end."""
    where, runs = placement.start(result.config, pending, log)
    bar = Progress(len(pending), f"sweep {result.name}", "cell", enabled=progress)
    try:
        for cell, metrics in runs:
            _store_cell(result, cell, metrics)
            bar.update(
                1, last=f"sw2={cell.sw2:g} depth={cell.depth}: acc {100 * metrics['train_accuracy']:.0f}%"
            )
            if saving is not None:
                saving.cell_done(where)
    except BaseException:
        bar.close()
        if saving is not None:
            saving.stopped(where)
        raise
    finally:
        runs.close()
    if saving is not None:
        saving.save(where)
    bar.close(f"{int(result.done.sum())}/{result.done.size} cells on {where}")


# --------------------------------------------------------------------------- reading it


def trainable_depth(result, threshold=0.5, metric="train_accuracy", checkpoint=None):
    """Per sw2, the deepest depth of the grid whose mean ``metric`` over seeds is at least ``threshold``.

    Parameters
    ----------
    result : SweepResult
        The sweep.
    threshold : float, default 0.5
        The mean from which a depth counts as trainable.
    metric : str, default "train_accuracy"
        One of :data:`METRICS`: its mean over seeds (:func:`seed_mean`) is compared with ``threshold``.
    checkpoint : int, optional
        As in :func:`seed_mean`.

    Returns
    -------
    numpy.ndarray
        float64 (n_sw2,): NaN where no depth reaches ``threshold`` or the row is not done.

    Raises
    ------
    IndexError
        For a ``checkpoint`` the sweep does not have.
    """
    mean = seed_mean(result, metric, checkpoint)
    depths = np.asarray(result.config.depths, dtype=np.float64)
    out = np.full(mean.shape[0], np.nan)
    for i, row in enumerate(mean):
        ok = np.flatnonzero(row >= threshold)
        if ok.size:
            out[i] = depths[ok].max()
    return out


def seed_mean(result, metric, checkpoint=None):
    """The mean of ``metric`` over the done seeds of each (sw2, depth) cell of the grid.

    Parameters
    ----------
    result : SweepResult
        The sweep.
    metric : str
        One of :data:`METRICS`.
    checkpoint : int, optional
        Index into ``result.config.checkpoints`` (negative counts from the end); ``None``: the
        values after all ``steps``.

    Returns
    -------
    numpy.ndarray
        float64 (n_sw2, n_depths): NaN where no seed of the cell is done.

    Raises
    ------
    IndexError
        For a ``checkpoint`` the sweep does not have.
    KeyError
        For an unknown ``metric``.
    """
    if checkpoint is None:
        source = result.metrics[metric]
    else:
        if not result.checkpoint_metrics:
            raise IndexError(f"sweep {result.name} has no checkpoints")
        source = result.checkpoint_metrics[metric][..., checkpoint]
    values = np.where(result.done, source, np.nan)
    with np.errstate(invalid="ignore"):
        count = result.done.sum(axis=2)
        total = np.nansum(values, axis=2)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def depth_scales(result):
    """The theory's depth scale each row of the sweep is compared with.

    ``xi_c`` (the correlation depth scale of Schoenholz et al.) where it is finite; where it
    is infinite away from the edge of chaos (ReLU and linear units with ``q*`` 0 or infinite,
    e.g. ReLU at ``sb2 = 0``, whose correlations approach 1 only polynomially), ``xi_q``, the
    depth scale of the variance (and gradient) shrinking or growing geometrically, if finite.

    Parameters
    ----------
    result : SweepResult
        The sweep.

    Returns
    -------
    scale : numpy.ndarray
        float64 (n_sw2,), inf where neither is finite (at the edge of chaos).
    names : list of str
        ``"xi_c"``, ``"xi_q"`` or ``"none"`` per row.
    """
    xi_c, xi_q = np.asarray(result.xi_c, np.float64), np.asarray(result.xi_q, np.float64)
    names = [
        "xi_c" if math.isfinite(c) else "xi_q" if math.isfinite(q) else "none" for c, q in zip(xi_c, xi_q)
    ]
    scale = np.where(np.isfinite(xi_c), xi_c, np.where(np.isfinite(xi_q), xi_q, np.inf))
    return scale, names


def phases(result):
    """Each row's phase by the theory's chi1.

    ``"ordered"`` (chi1 < 1), ``"chaotic"`` (chi1 > 1; for unbounded activations the theory
    calls it exploding) or ``"critical"``.

    Parameters
    ----------
    result : SweepResult
        The sweep.

    Returns
    -------
    list of str
        One per sw2.
    """
    c = result.config
    chi = [mean_field(c.activation, s, c.sb2).chi1 for s in c.sw2]
    return ["ordered" if x < 1 - 1e-12 else "chaotic" if x > 1 + 1e-12 else "critical" for x in chi]


@dataclass(frozen=True)
class MultiplierFit:
    """n in "deepest trainable depth = n xi" for one phase at one checkpoint (see :func:`fit_multiplier`).

    Parameters
    ----------
    phase : {"ordered", "chaotic"}
        The phase.
    step : int
        The SGD step of the checkpoint.
    n : float
        Geometric mean of D / xi over the rows used, D the deepest grid depth that trains;
        NaN when no row is usable.
    n_upper : float
        The same with D replaced by the next grid depth (which does not train), so the
        boundary's multiplier lies in [n, n_upper) up to the grid's resolution; NaN when no
        row is usable.
    ratios : tuple of float
        D / xi per row used.
    sw2 : tuple of float
        Those rows.
    above : tuple of float
        The sw2 of rows where the deepest grid depth trains (boundary beyond the grid, only a
        lower bound).
    below : tuple of float
        The sw2 of rows where no depth trains.
    scale : str
        The depth scale compared with (``xi_c``, or ``xi_q`` where ``xi_c`` is infinite).
    """

    phase: str
    step: int
    n: float
    n_upper: float
    ratios: tuple
    sw2: tuple
    above: tuple
    below: tuple
    scale: str


def fit_multiplier(result, threshold=0.5, checkpoint=None):
    """Fit n in "deepest trainable depth = n xi" per phase (ordered: chi1 < 1; chaotic: chi1 > 1).

    Uses the rows whose boundary lies inside the grid (some depth trains, the deepest does not)
    and whose depth scale is finite (:func:`depth_scales`); the fit is the geometric mean of
    D / xi, so each row counts the same whatever its xi.

    Parameters
    ----------
    result : SweepResult
        The sweep.
    threshold : float, default 0.5
        Mean train accuracy from which a network counts as trainable.
    checkpoint : int, optional
        Index into ``result.config.checkpoints``; ``None``: after all ``steps``.

    Returns
    -------
    dict
        ``{"ordered": MultiplierFit, "chaotic": MultiplierFit}`` (a phase with no row of the grid
        is left out).

    Raises
    ------
    IndexError
        For a ``checkpoint`` the sweep does not have.
    """
    c = result.config
    step = c.steps if checkpoint is None else int(c.checkpoints[checkpoint])
    deepest = trainable_depth(result, threshold, checkpoint=checkpoint)
    order = np.argsort(c.depths)
    grid = np.asarray(c.depths, np.float64)[order]
    scale, names = depth_scales(result)
    phase_of = phases(result)
    out = {}
    for phase in ("ordered", "chaotic"):
        rows = [i for i, p in enumerate(phase_of) if p == phase]
        if not rows:
            continue
        used, ratios, uppers, above, below, kinds = [], [], [], [], [], set()
        for i in rows:
            d, xi = deepest[i], scale[i]
            if not result.done[i].all():
                continue
            if math.isnan(d):
                below.append(c.sw2[i])
            elif d >= grid[-1]:
                above.append(c.sw2[i])
            elif math.isfinite(xi) and xi > 0:
                used.append(c.sw2[i])
                ratios.append(d / xi)
                uppers.append(grid[np.searchsorted(grid, d, side="right")] / xi)
                kinds.add(names[i])
        n = float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan
        n_up = float(np.exp(np.mean(np.log(uppers)))) if uppers else math.nan
        out[phase] = MultiplierFit(
            phase,
            step,
            n,
            n_up,
            tuple(float(r) for r in ratios),
            tuple(used),
            tuple(above),
            tuple(below),
            "/".join(sorted(kinds)) or "xi_c",
        )
    return out


def caveats(result, threshold=0.5):
    """What the measured boundary depends on besides the theory, as short lines for summaries.

    Parameters
    ----------
    result : SweepResult
        The sweep the caveats are about: its config gives the numbers they quote.
    threshold : float, optional
        The mean train accuracy from which a cell counts as trainable, quoted in the first line.

    Returns
    -------
    list of str
        One caveat per line, each starting with ``"- "``.
    """
    c = result.config
    q1 = [s * MNIST_MEAN_SQUARE + c.sb2 for s in (min(c.sw2), max(c.sw2))]
    qs = [mean_field(c.activation, s, c.sb2).q_star for s in (min(c.sw2), max(c.sw2))]
    depths = sorted(c.depths)
    steps = sorted(set(b - a for a, b in zip(depths, depths[1:])))
    lines = [
        f"- trainable = mean train accuracy >= {threshold:g} on the first {c.eval_samples} training images "
        "(chance 0.1): a cut through a continuous accuracy, not a convergence test",
        f"- {len(c.seeds)} seed(s) per cell: one draw of weights, biases and mini-batches; cells near the "
        "boundary can flip with the seed",
        f"- width {c.width}: the theory is for infinite width",
        f"- inputs are pixels / 255 (E[x^2] = {MNIST_MEAN_SQUARE:g}), so the first layer's pre-activation "
        f"variance is sw2 * {MNIST_MEAN_SQUARE:g} + sb2 = {q1[0]:.3g} to {q1[1]:.3g}, below q* = "
        f"{qs[0]:.3g} to {qs[1]:.3g}: the first layers approach q* instead of starting there",
        "- the grid steps by " + (", ".join(map(str, steps)) if steps else "-") + " layers: the boundary "
        "lies between the deepest depth that trains and the next one, so n is a lower estimate "
        "(the bracket [n, n_upper) is to the next grid depth)",
    ]
    _, names = depth_scales(result)
    if "xi_q" in names:
        lines.append(
            "- xi_c is infinite here (correlations approach 1 only polynomially, as for ReLU at "
            "sb2 = 0): rows marked xi_q are compared with the variance depth scale xi_q instead"
        )
    return lines


def format_summary(result, threshold=0.5):
    """A few lines comparing the deepest depth that trains with the theory's 6 xi_c.

    Per sw2 the deepest depth that trains (mean train accuracy >= ``threshold``) against the
    theory's 6 xi_c, at each checkpoint if the sweep has them, n in "deepest = n xi_c" per
    phase, and the caveats.

    Parameters
    ----------
    result : SweepResult
        A sweep, complete or not (the summary counts the cells done).
    threshold : float, optional
        Mean train accuracy over seeds from which a depth counts as trainable.

    Returns
    -------
    str
        Lines joined by newlines, without a trailing one.
    """
    c = result.config
    cps = tuple(c.checkpoints)
    scale, names = depth_scales(result)
    lines = [
        f"sweep {result.name}: {c.activation}, sb2 = {c.sb2:g}, width {c.width}, {c.steps} SGD steps at lr "
        f"{c.lr:g}, {len(c.seeds)} seed(s); {int(result.done.sum())}/{result.done.size} cells; "
        f"edge of chaos sw2 = {result.critical_sw2:.3g}",
        f"trainable = mean train accuracy >= {threshold:g} (chance is 0.1)",
    ]
    columns = [None] if not cps else list(range(len(cps)))
    deepest = [trainable_depth(result, threshold, checkpoint=k) for k in columns]
    what = "6 xi_c" if "xi_q" not in names else "6 xi"
    if cps:
        lines.append(
            f"{'sw2':>6} {what:>8}  deepest trainable after step "
            + " ".join(f"{s:>6}" for s in cps)
            + f"   (grid depths {min(c.depths)}-{max(c.depths)})"
        )
    else:
        lines.append(
            f"{'sw2':>6} {'deepest trainable':>18} {what:>8}  within grid depths "
            f"{min(c.depths)}-{max(c.depths)}"
        )

    def shown(d):
        return "none" if math.isnan(d) else f"{d:.0f}" + ("+" if d == max(c.depths) else "")

    for i, (s, xi) in enumerate(zip(c.sw2, scale)):
        tag = " (xi_q)" if names[i] == "xi_q" else ""
        if cps:
            cells = " ".join(f"{shown(d[i]):>6}" for d in deepest)
            lines.append(f"{s:6.3g} {6 * xi:8.1f}  {'':29}" + cells + tag)
        else:
            lines.append(f"{s:6.3g} {shown(deepest[0][i]):>18} {6 * xi:8.1f}{tag}")
    lines.append(_against_theory(result, deepest[-1], scale, "6 xi_c" if "xi_q" not in names else "6 xi"))
    lines.append(
        "n in 'deepest trainable = n xi_c' (geometric mean over the rows whose boundary lies inside "
        "the grid; [n, n_upper) to the next grid depth; Schoenholz et al.: about 6 after long "
        "training):"
    )
    for k in columns:
        fits = fit_multiplier(result, threshold, k)
        parts = []
        for phase, f in fits.items():
            label_ = f"{phase} (chi1 {'<' if phase == 'ordered' else '>'} 1)"
            if f.ratios:
                parts.append(
                    f"{label_} n = {f.n:.2f} [{f.n:.2f}, {f.n_upper:.2f}) from {len(f.ratios)} rows"
                    + (f", {len(f.above)} beyond the grid" if f.above else "")
                )
            else:
                parts.append(
                    f"{label_}: no boundary inside the grid ({len(f.above)} rows beyond it, "
                    f"{len(f.below)} with none)"
                )
        step = c.steps if k is None else cps[k]
        lines.append(f"  step {step:>6}: " + "; ".join(parts))
    lines.append("caveats:")
    lines.extend("  " + line for line in caveats(result, threshold))
    return "\n".join(lines)


def _against_theory(result, deepest, scale=None, what="6 xi_c"):
    """One line: the measured boundary over ``what`` (6 xi_c), per phase, where both lie inside the grid."""
    c = result.config
    scale = result.xi_c if scale is None else scale
    ratios = {"ordered": [], "chaotic": []}
    for s, d, xi in zip(c.sw2, deepest, scale):
        if 6 * xi <= max(c.depths) and not math.isnan(d) and d < max(c.depths):
            ratios["ordered" if s < result.critical_sw2 else "chaotic"].append(d / (6 * xi))
    parts = [f"{phase} phase {min(r):.2f} to {max(r):.2f}" for phase, r in ratios.items() if r]
    if not parts:
        return f"neither {what} nor the measured boundary lies inside the grid anywhere: add deeper depths"
    return (
        f"deepest trainable / {what}: " + ", ".join(parts) + ". Schoenholz et al. (2017) find networks "
        "train up to about 6 xi_c, the boundary growing towards it with training time"
    )
