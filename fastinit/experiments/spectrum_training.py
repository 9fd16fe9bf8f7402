"""Learning speed under dynamical isometry: deep tanh networks at the edge of chaos, orthogonal against
Gaussian weights (``fastinit spectrum --train``).

Pennington, Schoenholz and Ganguli (2017) find that deep tanh networks at the edge of chaos with a
small variance fixed point ``q*`` learn much faster from orthogonal weights (whose input-output
Jacobian is then an isometry: all singular values near 1, :mod:`fastinit.experiments.spectrum`)
than from Gaussian ones (whose singular values spread more the deeper the network). This
experiment measures it on MNIST with fastinit's MLP and plain SGD: for each depth, weight
distribution and seed, a network of ``depth`` hidden tanh layers of ``width`` units, weights
``sqrt(sw2)`` times a (semi-)orthogonal matrix (``orthogonal,gain=sqrt(sw2)``) or
``N(0, sw2 / fan_in)`` (``lecun,gain=sqrt(sw2)``; the same scale), biases ``N(0, sb2)``, trained
until the train accuracy on a fixed subset (the first ``eval_samples`` training images), measured
every ``eval_every`` steps, reaches ``target``, or for ``max_steps`` steps.

Seeding, as in :mod:`fastinit.experiments.sweep`: weights from ``default_rng(seed)``, biases from
``default_rng([seed, 1])`` (``MLP.draw_biases``) and the mini-batches from
``fastinit.training.batch_indices(..., seed)``, so for one seed both weight distributions see the
same biases and the same mini-batches.

HDF5 layout written by :func:`write`: ``/spectrum/training`` (attrs: the config, sw2, sb2,
q_star) with one ``<weights>/depth=<L>`` group per run, as :data:`fastinit.schema.SPECTRUM_TRAINING`
and :data:`fastinit.schema.SPECTRUM_TRAINING_DEPTH` declare them (``docs/storage.md``).
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import schema
from ..mlp import MLP
from ..progress import Progress
from ..theory import edge_of_chaos, mean_field
from ..training import sgd
from .config_checks import (
    choices,
    float_dtype,
    integers,
    optional_number,
    positive_int,
    positive_number,
    train_limit,
)
from .spectrum import DEFAULT_Q_STAR
from .sweep import mnist_arrays

__all__ = [
    "TrainingConfig",
    "TrainingRun",
    "TrainingResult",
    "WEIGHT_INITS",
    "run",
    "write",
    "read",
    "format_training_summary",
    "GROUP",
]

#: Weight distribution -> the MLP init spec (formatted with the gain sqrt(sw2)).
WEIGHT_INITS = {"orthogonal": "orthogonal,gain={gain!r}", "gaussian": "lecun,gain={gain!r}"}
GROUP = schema.SPECTRUM_TRAINING.path


@dataclass(frozen=True)
class TrainingConfig:
    """What :func:`run` trains.

    The point: ``q_star`` (default 1/64, as in Pennington et al.) picks the edge of chaos with
    that fixed point; ``sw2`` and ``sb2`` given instead take that point as it is.

    Parameters
    ----------
    depths : tuple of int
        Numbers of hidden tanh layers.
    width : int
        Units per hidden layer.
    weights : tuple of str
        Weight distributions, from :data:`WEIGHT_INITS`.
    seeds : tuple of int
        One run per seed, depth and weights.
    q_star : float or None
        The fixed point of the edge of chaos to train at.
    sw2, sb2 : float or None
        The point as it is (both or neither; not with ``q_star``).
    lr : float
        Plain SGD learning rate.
    batch_size : int
        Images per mini-batch.
    target : float
        The train accuracy to reach, in (0, 1].
    eval_every : int
        Steps between measurements of the train accuracy.
    eval_samples : int
        The train accuracy is measured on the first ``eval_samples`` training images.
    max_steps : int
        Where a run gives up.
    backend : {"numpy", "cpu", "cuda"}
        The engine.
    dtype : {"float32", "float64"}
        Floating-point type.
    train_limit : int or None
        SGD on the first n training images only (tests).
    data_dir : str or None
        MNIST files (default: fastinit's copy).
    """

    depths: tuple = (32, 64)
    width: int = 100
    weights: tuple = ("orthogonal", "gaussian")
    seeds: tuple = (0, 1, 2)
    q_star: float = None
    sw2: float = None
    sb2: float = None
    lr: float = 0.05
    batch_size: int = 128
    target: float = 0.9
    eval_every: int = 25
    eval_samples: int = 1000
    max_steps: int = 1000
    backend: str = "cpu"
    dtype: str = "float32"
    train_limit: int = None
    data_dir: str = None

    def validate(self):
        """The config with normalised types.

        Returns
        -------
        TrainingConfig
            A checked copy.

        Raises
        ------
        ValueError
            Naming the bad field.
        TypeError
            For a dtype that is not a float dtype.
        """

        def positive(name):
            return positive_int(name, getattr(self, name))

        weights = choices("weights", self.weights, WEIGHT_INITS)
        target = positive_number("target", self.target)
        if target > 1:
            raise ValueError(f"target must be an accuracy in (0, 1], got {target}")
        q_star, sw2, sb2 = (optional_number(f, getattr(self, f)) for f in ("q_star", "sw2", "sb2"))
        if q_star is not None and (sw2 is not None or sb2 is not None):
            raise ValueError("give q_star or sw2/sb2, not both")
        if (sw2 is None) != (sb2 is None):
            raise ValueError("give sw2 and sb2 together (or q_star for a point of the edge of chaos)")
        if q_star == 0.0 or sw2 == 0.0:
            raise ValueError("q_star and sw2 must be > 0")
        float_dtype(self.dtype)
        if self.backend not in ("numpy", "cpu", "cuda"):
            raise ValueError(f"backend must be numpy, cpu or cuda, got {self.backend!r}")
        batch = positive("batch_size")
        train_limit(self.train_limit, batch)
        return replace(
            self,
            depths=integers("depths", self.depths, 1),
            width=positive("width"),
            weights=weights,
            seeds=integers("seeds", self.seeds, 0),
            q_star=q_star,
            sw2=sw2,
            sb2=sb2,
            lr=positive_number("lr", self.lr),
            batch_size=batch,
            target=target,
            eval_every=positive("eval_every"),
            eval_samples=positive("eval_samples"),
            max_steps=positive("max_steps"),
        )

    def point(self):
        """The point ``(sw2, sb2)`` the networks train at.

        Returns
        -------
        tuple of float
            ``(sw2, sb2)`` as given, or the tanh edge of chaos with fixed point ``q_star``
            (default 1/64).
        """
        if self.sw2 is not None:
            return self.sw2, self.sb2
        return edge_of_chaos("tanh", self.q_star or DEFAULT_Q_STAR)

    @property
    def eval_steps(self):
        """The steps at which the train accuracy is measured: 0, every ``eval_every``, ``max_steps``."""
        steps = list(range(0, self.max_steps + 1, self.eval_every))
        if steps[-1] != self.max_steps:
            steps.append(self.max_steps)
        return np.asarray(steps, dtype=np.int64)


@dataclass
class TrainingRun:
    """One weight distribution at one depth, one row per seed.

    Parameters
    ----------
    weights : str
        The weight distribution.
    depth : int
        Hidden layers.
    seeds : tuple of int
        The seeds, one row each.
    eval_steps : numpy.ndarray
        int64 (n_evals,): the steps of the measurements.
    train_accuracy, train_loss : numpy.ndarray
        float64 (n_seeds, n_evals) at ``eval_steps``; NaN after the run stopped.
    steps_to_target : numpy.ndarray
        float64 (n_seeds,): the step at which the target was reached; NaN where not reached.
    wall_time_s : numpy.ndarray, optional
        float64 (n_seeds,): each run's wall time in seconds.
    """

    weights: str
    depth: int
    seeds: tuple
    eval_steps: np.ndarray
    train_accuracy: np.ndarray
    train_loss: np.ndarray
    steps_to_target: np.ndarray
    wall_time_s: np.ndarray = None

    @property
    def median_steps(self):
        """Median over seeds of ``steps_to_target``, a run that never reached it counted as ``inf``.

        A median of inf means most did not reach it.
        """
        return float(np.median(np.where(np.isnan(self.steps_to_target), np.inf, self.steps_to_target)))


@dataclass
class TrainingResult:
    """What :func:`run` returns.

    Parameters
    ----------
    config : TrainingConfig
        The validated config.
    sw2, sb2 : float
        The point.
    q_star, chi1 : float
        The theory's fixed point and chi1 there.
    runs : dict, optional
        ``(weights, depth)`` -> :class:`TrainingRun`.
    """

    config: TrainingConfig
    sw2: float
    sb2: float
    q_star: float
    chi1: float
    runs: dict = field(default_factory=dict)


def _train_one(config, weights, depth, seed, sw2, sb2, data):
    """Train one network until the target or ``max_steps``; return (accuracy, loss, steps, seconds)."""
    t0 = time.perf_counter()
    x_train, y_train = data
    sizes = [x_train.shape[1]] + [config.width] * depth + [10]
    init = WEIGHT_INITS[weights].format(gain=math.sqrt(sw2))
    model = MLP(sizes, activation="tanh", init=init, backend=config.backend, dtype=config.dtype, seed=seed)
    if sb2 > 0:
        model.draw_biases(math.sqrt(sb2), np.random.default_rng([seed, 1]))
    n = config.eval_samples
    x_eval, y_eval = x_train[:n], y_train[:n]
    steps = config.eval_steps
    acc, loss = np.full(steps.size, np.nan), np.full(steps.size, np.nan)
    reached = math.nan
    stops = sgd(model, x_train, y_train, lr=config.lr, batch_size=config.batch_size, seed=seed, stops=steps)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for e, stop in enumerate(stops):
            if stop.diverged:
                break
            loss[e], acc[e] = model.evaluate(x_eval, y_eval)
            if acc[e] >= config.target:
                reached = float(stop.step)
                break
    return acc, loss, reached, time.perf_counter() - t0


def run(config, *, progress=True):
    """Train every (weights, depth, seed) of ``config``, one after the other in this process.

    Parameters
    ----------
    config : TrainingConfig
        Validated here.
    progress : bool, optional
        A progress bar over the runs.

    Returns
    -------
    TrainingResult
        One run per weight distribution and depth.

    Raises
    ------
    ValueError, TypeError
        For a bad config.
    fastinit.data.DataError
        If MNIST cannot be read.
    """
    config = config.validate()
    sw2, sb2 = config.point()
    m = mean_field("tanh", sw2, sb2)
    result = TrainingResult(config, sw2, sb2, m.q_star, m.chi1)
    x_train, y_train, _, _ = mnist_arrays(config.data_dir, config.dtype)
    if config.train_limit is not None:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    n_evals = config.eval_steps.size
    bar = Progress(
        len(config.weights) * len(config.depths) * len(config.seeds),
        "spectrum --train",
        "run",
        enabled=progress,
    )
    for depth in sorted(config.depths, reverse=True):
        for weights in config.weights:
            shape = (len(config.seeds), n_evals)
            r = TrainingRun(
                weights,
                depth,
                config.seeds,
                config.eval_steps,
                np.full(shape, np.nan),
                np.full(shape, np.nan),
                np.full(len(config.seeds), np.nan),
                np.zeros(len(config.seeds)),
            )
            for k, seed in enumerate(config.seeds):
                acc, loss, reached, seconds = _train_one(
                    config, weights, depth, seed, sw2, sb2, (x_train, y_train)
                )
                r.train_accuracy[k], r.train_loss[k], r.steps_to_target[k], r.wall_time_s[k] = (
                    acc,
                    loss,
                    reached,
                    seconds,
                )
                shown = "not reached" if math.isnan(reached) else f"{reached:.0f} steps"
                bar.update(1, last=f"{weights} depth {depth} seed {seed}: {shown}")
            result.runs[(weights, depth)] = r
    bar.close(f"{len(result.runs) * len(config.seeds)} runs")
    return result


def write(f, result):
    """Write ``result`` as ``/spectrum/training`` of the open results file ``f`` (replacing it).

    Parameters
    ----------
    f : h5py.File
        From :func:`fastinit.store.open_results`.
    result : TrainingResult
        What :func:`run` returned.

    Returns
    -------
    str
        The group path written.
    """
    from ..store import replace_group

    c = result.config
    fields = {
        k: ("none" if v is None else np.asarray(v) if isinstance(v, tuple) and k != "weights" else v)
        for k, v in asdict(c).items()
        if k != "weights"
    }
    g = replace_group(
        f,
        GROUP,
        attrs=dict(
            fields,
            weights=",".join(c.weights),
            config=json.dumps(asdict(c)),
            sw2=result.sw2,
            sb2=result.sb2,
            q_star=result.q_star,
            chi1=result.chi1,
        ),
    )
    values = {"eval_samples": c.eval_samples, "target": f"{c.target:g}"}
    for (weights, depth), r in result.runs.items():
        sub = g.create_group(f"{weights}/depth={depth}")
        sub.attrs.update(weights=weights, depth=depth, median_steps_to_target=r.median_steps)
        for entry in schema.SPECTRUM_TRAINING_DEPTH.datasets:
            data = np.asarray(r.seeds, np.int64) if entry.name == "seeds" else getattr(r, entry.name)
            extra = {"target": c.target} if entry.name == "steps_to_target" else {}
            schema.label(sub.create_dataset(entry.name, data=data), entry, values, **extra)
    return g.name


def read(path):
    """Read ``/spectrum/training`` of the results file ``path`` back into a :class:`TrainingResult`.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.

    Returns
    -------
    TrainingResult
        Its config rebuilt from the stored ``config`` attr (JSON).

    Raises
    ------
    fastinit.store.StoreError
        For a bad file.
    KeyError
        When the file holds no ``/spectrum/training``.
    """
    from ..store import open_read

    with open_read(path) as f:
        g = f.get(GROUP)
        if g is None:
            raise KeyError(f"{path} holds no {GROUP} group (run 'fastinit spectrum --train')")
        raw = json.loads(g.attrs["config"])
        config = TrainingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        a = g.attrs
        result = TrainingResult(config, *(float(a[k]) for k in ("sw2", "sb2", "q_star", "chi1")))
        for weights in config.weights:
            for key, sub in g[weights].items():
                depth = int(key.split("=", 1)[1])
                result.runs[(weights, depth)] = TrainingRun(
                    weights,
                    depth,
                    tuple(int(s) for s in sub["seeds"][()]),
                    sub["eval_steps"][()],
                    sub["train_accuracy"][()],
                    sub["train_loss"][()],
                    sub["steps_to_target"][()],
                    sub["wall_time_s"][()],
                )
    return result


def format_training_summary(result):
    """A table of how many steps each run took to reach the target train accuracy.

    Parameters
    ----------
    result : TrainingResult
        From :func:`run` or :func:`read`.

    Returns
    -------
    str
        Per depth and weight distribution, the steps each seed took to reach the target train
        accuracy, their median, and the Gaussian/orthogonal ratio of the medians.
    """
    c = result.config
    lines = [
        f"learning speed at the edge of chaos: tanh, sw2 = {result.sw2:.4g}, sb2 = {result.sb2:.3g} "
        f"(q* = {result.q_star:.3g}, chi1 = {result.chi1:.4f}), width {c.width}, SGD lr {c.lr:g}, batch "
        f"{c.batch_size}, same mini-batches per seed",
        f"steps to train accuracy >= {c.target:g} on the first {c.eval_samples} training images, "
        f"measured every {c.eval_every} steps (up to {c.max_steps}; '-' = not reached)",
        f"{'depth':>5} {'weights':<11} {'median':>7}  per seed ({', '.join(map(str, c.seeds))})",
    ]
    for depth in sorted(c.depths):
        medians = {}
        for weights in c.weights:
            r = result.runs.get((weights, depth))
            if r is None:
                continue
            medians[weights] = r.median_steps
            per = " ".join("-" if math.isnan(s) else f"{s:.0f}" for s in r.steps_to_target)
            med = "-" if math.isinf(r.median_steps) else f"{r.median_steps:.0f}"
            lines.append(f"{depth:5d} {weights:<11} {med:>7}  {per}")
        if "orthogonal" in medians and "gaussian" in medians:
            o, g = medians["orthogonal"], medians["gaussian"]
            if math.isfinite(o) and math.isfinite(g):
                lines.append(f"{'':5} gaussian / orthogonal: {g / o:.2f}x the steps")
            elif math.isfinite(o):
                lines.append(f"{'':5} gaussian / orthogonal: more than {c.max_steps / o:.2f}x the steps")
    lines.append(
        "Pennington et al. (2017): orthogonal weights at a small q* keep the Jacobian an isometry "
        "and learn faster than Gaussian ones, the more so the deeper. Caveats: few seeds, one "
        "learning rate for both (not tuned per init as in the paper), the first layer is 784 wide "
        "and the inputs (pixels / 255) start at variance sw2 * 0.112, not at "
        f"q* = {result.q_star:.3g}"
    )
    return "\n".join(lines)
