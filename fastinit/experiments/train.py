"""Train the seed article's MLP on MNIST once per init scheme and seed; stream everything to HDF5.

The classic experiment (the defaults of :class:`TrainConfig`): a 784-100-100-
100-100-10 ReLU network, inits ``std=0.01``, ``xavier`` and ``he``, plain SGD
with learning rate 0.01, mini-batches of 128, 2000 iterations, backend cpu,
float32, seed 0. A seed draws the initial weights and the sequence of
mini-batches; for one seed every init sees the same sequence, so the init is
the only difference between runs. With several ``seeds`` each init is trained
once per seed, to tell the effect of the init from the luck of one draw.

A run is named by its spec, ``INIT`` or ``INIT:ACTIVATION`` (``xavier:sigmoid``
overrides the activation for that run). With one seed each run writes the
group ``/train/<spec>/`` of the results file; with several seeds,
``/train/<spec>/`` holds only the attrs ``init``, ``activation``, ``seeds``
and ``status`` (``diverged`` if a seed diverged), and each seed's run is the
group ``/train/<spec>/seed=<s>/``. A run's group, in either layout, holds:

- ``loss`` (iterations,): the mini-batch loss of every step;
- ``grad_norm`` (iterations, layers): the L2 norm of each weight gradient;
- ``test_accuracy`` (evals,) on the full test set at ``eval_steps`` (evals,):
  every ``eval_every`` steps, step 0 (before training) and the last step;
- ``activations`` (snapshots, hidden layers, probe_samples, units): the hidden
  activations of a fixed probe batch (the first ``probe_samples`` test
  images) at ``snapshot_steps`` (every ``snapshot_every`` steps, step 0
  included). Hidden layers narrower than the widest are padded with NaN;
- ``gradients`` (gradient snapshots, hidden layers, probe_samples, units):
  each probe image's own loss differentiated with respect to each hidden
  layer's pre-activation (:meth:`fastinit.MLP.per_sample_gradients`), NaN-padded the same way,
  at ``gradient_steps``: only the ``gradient_snapshots`` (default 4)
  snapshots spread from the first to the last that the gradient figure draws
  (:func:`gradient_steps`), the same ones the activation figure draws;
- attrs: ``status`` (complete, interrupted or diverged), ``final_train_loss``
  (mean loss over the last ``final_window`` steps), ``final_test_accuracy``,
  ``wall_time_s``, ``init_seconds`` (the init's own cost, part of the wall
  time), ``iterations_done``, ``diverged_step`` (-1 if none),
  ``init``, ``activation``, ``seed``, and the run's config as JSON (``config``)
  plus one attr per config field.

A data-driven init (``lsuv``, ``pretrain``: :mod:`fastinit.datainit`)
calibrates on the training images, never the test set, and its per-layer
measurements go to the attr ``init_info`` (JSON).

The probe snapshots (``activations``, ``gradients`` and their steps) are
recorded for the seeds named by ``snapshot_seeds``: by default the first seed
of each run only, which is what the figures and ``fastinit reproduce``'s
summary read (``"all"``: every seed; ``"none"``: no snapshots). Other seeds
keep ``snapshot_steps`` empty. Per-image data is most of a results file's
size, so it is stored only where it is used.

A run's *label* is its group path under ``/train``: ``<spec>`` or
``<spec>/seed=<s>``; :func:`read_activations` and :func:`snapshot_choice`
take it, :func:`read_runs` reads both layouts.

:func:`run` trains in memory and returns a :class:`TrainResult` (each run's
:class:`RunResult` and :class:`RunCurves`, the datasets above), from which the
statistics and the figures come; :func:`write` stores it. :func:`train` runs
the same loop: a run records its curves into a small in-memory record, and its
group gets them when the run ends or is interrupted. One recorder rather than
one per destination, because a run's part file is held in memory until the
run ends anyway (streaming into it bought no safety), and so :func:`run` and
:func:`train` cannot differ.

Datasets are chunked, compressed (gzip with shuffle) and can grow;
everything goes through :func:`fastinit.store.open_results`: each
run (each seed) is its own part file, written once when the run ends
(:func:`fastinit.store.finish_group`), so a run finished is kept even if the
process is killed later, and Ctrl-C leaves a readable file with the current
run marked ``interrupted``. A NaN or Inf loss stops
that run with status ``diverged`` and the step recorded; the other runs go on.
"""

import json
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from fastinit.kernels import ACTIVATIONS

from .. import schema
from ..backends import check_backend, require_cuda
from ..data import load_mnist
from ..init import parse_init
from ..mlp import MLP, compile_backend
from ..progress import Progress
from ..threads import pools_for
from ..training import sgd
from .config_checks import positive_int, positive_number

__all__ = [
    "TrainConfig",
    "RunSpec",
    "RunResult",
    "RunCurves",
    "TrainResult",
    "parse_run",
    "run",
    "train",
    "write",
    "train_run",
    "read_runs",
    "read_activations",
    "read_snapshots",
    "format_results",
    "seed_statistics",
    "seed_ranking",
    "snapshot_choice",
    "gradient_steps",
    "DEFAULT_INITS",
]

DEFAULT_INITS = ("std=0.01", "xavier", "he")
CLASSIC_ORDER = ("he", "xavier", "std=0.01")  # best to worst final train loss in the classic figure
DEFAULT_SIZES = (784, 100, 100, 100, 100, 10)
_SEED_MAX = 2**63 - 1  # stored as an int64 attr
SNAPSHOT_SEEDS = ("first", "all", "none")


# --------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class RunSpec:
    """One run: an init spec and the activation it trains with.

    Parameters
    ----------
    name : str
        The run spec as given, ``INIT`` or ``INIT:ACTIVATION``; its HDF5 group's name.
    init : str
        The init spec.
    activation : str
        The activation it trains with.
    """

    name: str
    init: str
    activation: str


def parse_run(spec, default_activation="relu"):
    """Parse ``INIT`` or ``INIT:ACTIVATION`` into a :class:`RunSpec`.

    The init part is validated with :func:`fastinit.init.parse_init`; the
    activation must be one of linear, sigmoid, tanh, relu.

    Parameters
    ----------
    spec : str
        ``INIT`` or ``INIT:ACTIVATION``.
    default_activation : str, default "relu"
        The activation of a spec that names none.

    Returns
    -------
    RunSpec
        ``name`` is ``spec`` stripped; the activation lower-cased.

    Raises
    ------
    ValueError
        Naming the bad part: an empty spec, an unknown activation or init, or an init with '/'.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"run spec must be a non-empty string like 'he' or 'xavier:sigmoid', got {spec!r}")
    spec = spec.strip()
    init, sep, activation = spec.rpartition(":")
    if not sep:
        init, activation = spec, default_activation
    init, activation = init.strip(), activation.strip().lower()
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"run spec {spec!r}: unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}"
        )
    if "/" in init:
        raise ValueError(f"run spec {spec!r}: '/' is not allowed in an init spec")
    parse_init(init)  # raises ValueError listing the valid names
    return RunSpec(name=spec, init=init, activation=activation)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training study (defaults: the classic experiment).

    Parameters
    ----------
    runs : tuple of str
        Run specs (``INIT`` or ``INIT:ACTIVATION``).
    activation : str
        The default activation.
    sizes : tuple of int
        Layer widths, input first (must match the data's features) and classes last.
    lr : float
        SGD learning rate.
    batch_size : int
        Images per mini-batch.
    iterations : int
        SGD steps per run.
    seeds : tuple of int
        Distinct non-negative ints; each run is trained once per seed (the weights and the
        mini-batch order come from the seed).
    backend : str
        Kernel backend.
    dtype : {"float32", "float64"}
        Floating-point type.
    eval_every : int
        Steps between test accuracy evaluations.
    snapshot_every : int
        Steps between activation snapshots.
    probe_samples : int
        Test images in the probe batch.
    final_window : int
        Steps averaged for ``final_train_loss``.
    snapshot_seeds : {"first", "all", "none"}
        Which seeds record the probe snapshots; ``"first"`` (the first of ``seeds``) is what
        the figures read.
    gradient_snapshots : int
        How many of those snapshots, spread from the first to the last, also record the
        per-image gradients (0: none).
    train_limit, test_limit : int or None
        Use only the first n images (for quick runs and tests; ``None`` uses all).
    data_dir : str or None
        Where the MNIST files are (:func:`fastinit.data.load_mnist`).
    """

    runs: tuple = DEFAULT_INITS
    activation: str = "relu"
    sizes: tuple = DEFAULT_SIZES
    lr: float = 0.01
    batch_size: int = 128
    iterations: int = 2000
    seeds: tuple = (0,)
    backend: str = "cpu"
    dtype: str = "float32"
    eval_every: int = 100
    snapshot_every: int = 100
    probe_samples: int = 200
    final_window: int = 100
    snapshot_seeds: str = "first"
    gradient_snapshots: int = 4
    train_limit: int = None
    test_limit: int = None
    data_dir: str = None

    def validate(self):
        """Check every field.

        Returns
        -------
        TrainConfig
            ``self``.

        Raises
        ------
        ValueError, TypeError
            Naming the bad field.
        fastinit.backends.BackendError
            For an unknown backend.
        """
        if isinstance(self.runs, str) or not self.runs:
            raise ValueError(f"runs must be a non-empty sequence of run specs, got {self.runs!r}")
        specs = [parse_run(r, self.activation) for r in self.runs]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"runs must be distinct, got {list(self.runs)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if len(self.sizes) < 2:
            raise ValueError(f"sizes must list at least input and output widths, got {self.sizes!r}")
        for s in self.sizes:
            positive_int("each of sizes", s)
        if self.sizes[-1] < 2:
            raise ValueError(f"the last size is the number of classes and must be >= 2, got {self.sizes[-1]}")
        positive_number("lr", self.lr)
        positive_int("batch_size", self.batch_size)
        positive_int("iterations", self.iterations)
        positive_int("eval_every", self.eval_every)
        positive_int("snapshot_every", self.snapshot_every)
        positive_int("probe_samples", self.probe_samples)
        positive_int("final_window", self.final_window)
        if self.snapshot_seeds not in SNAPSHOT_SEEDS:
            raise ValueError(
                f"snapshot_seeds must be one of {', '.join(SNAPSHOT_SEEDS)}, got {self.snapshot_seeds!r}"
            )
        positive_int("gradient_snapshots", self.gradient_snapshots, minimum=0)
        if not isinstance(self.seeds, (tuple, list)) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty sequence of integers, got {self.seeds!r}")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= _SEED_MAX:
                raise ValueError(f"seeds must be integers from 0 to 2**63 - 1, got {s!r}")
        if len(set(int(s) for s in self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat, got {', '.join(str(s) for s in self.seeds)}")
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        check_backend(self.backend)
        if np.dtype(self.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype!r}")
        return self

    @property
    def run_specs(self):
        """The :class:`RunSpec` of each of ``runs``, in order."""
        return [parse_run(r, self.activation) for r in self.runs]

    def to_json(self):
        """The config as JSON, keys sorted (the ``config`` attr of a run's group).

        Returns
        -------
        str
            One JSON object, one key per field.
        """
        d = asdict(self)
        d["runs"] = list(self.runs)
        d["sizes"] = list(self.sizes)
        d["seeds"] = [int(s) for s in self.seeds]
        return json.dumps(d, sort_keys=True)


def gradient_steps(config):
    """The steps at which a run of ``config`` records the probe gradients (if it records snapshots).

    The ``config.gradient_snapshots`` snapshots spread from the first (step 0)
    to the last planned one, chosen as :func:`snapshot_choice` chooses the
    snapshots the figures draw.

    Parameters
    ----------
    config : TrainConfig
        The study.

    Returns
    -------
    list of int
        The steps, ascending; empty when ``gradient_snapshots`` is 0.
    """
    n = config.iterations // config.snapshot_every + 1
    return [i * config.snapshot_every for i in _spread(n, config.gradient_snapshots)]


def _spread(n, count):
    """Up to ``count`` indices of ``range(n)`` spread from the first to the last."""
    if count <= 0 or n <= 0:
        return []
    if n <= count:
        return list(range(n))
    return sorted(set(int(round(i)) for i in np.linspace(0, n - 1, count)))


# --------------------------------------------------------------------------- the result and its statistics


@dataclass
class RunResult:
    """What one run ended with (its curves: :class:`RunCurves`, or the run's HDF5 group).

    Parameters
    ----------
    name : str
        The run spec.
    init : str
        The init spec.
    activation : str
        The activation it trained with.
    status : {"complete", "interrupted", "diverged"}
        How the run ended.
    iterations_done : int
        SGD steps taken.
    final_train_loss : float
        Mean mini-batch loss over the last ``final_window`` steps.
    final_test_accuracy : float
        Accuracy on the test set after the last step, in [0, 1].
    wall_time_s : float
        Wall time of the run in seconds.
    diverged_step : int, default -1
        The step whose loss was NaN/Inf, or -1.
    group : str, default ""
        The run's HDF5 group path (empty when it was not written).
    init_info : dict, optional
        A data-driven init's per-layer measurements.
    seed : int, default 0
        The seed of the weights and the mini-batch order.
    init_seconds : float, default 0.0
        What drawing (or computing) the initial weights took, in seconds (part of the wall time).
    """

    name: str
    init: str
    activation: str
    status: str  # "complete", "interrupted" or "diverged"
    iterations_done: int
    final_train_loss: float
    final_test_accuracy: float
    wall_time_s: float
    diverged_step: int = -1
    group: str = ""
    init_info: dict = field(default_factory=dict)  # a data-driven init's per-layer measurements
    seed: int = 0
    init_seconds: float = 0.0  # what drawing (or computing) the initial weights took

    @property
    def label(self):
        """The run's group path under /train: ``<spec>``, or ``<spec>/seed=<s>`` with several seeds."""
        return self.group.removeprefix("/train/") or self.name


@dataclass
class RunCurves:
    """What one run recorded as it trained: the datasets of its group (module docstring).

    Parameters
    ----------
    loss : numpy.ndarray
        float64, (iterations done,): the mini-batch loss of every step.
    grad_norm : numpy.ndarray
        float64, (iterations done, layers): the L2 norm of each weight gradient.
    eval_steps : numpy.ndarray
        int64, (evals,): the steps of the test accuracy evaluations.
    test_accuracy : numpy.ndarray
        float64, (evals,).
    snapshot_steps : numpy.ndarray
        int64, (snapshots,); empty for a run without snapshots.
    activations : numpy.ndarray, optional
        (snapshots, hidden layers, probe samples, units) in the config's dtype, NaN-padded;
        None where not recorded.
    gradient_steps : numpy.ndarray, optional
        int64, (gradient snapshots,); None where not recorded.
    gradients : numpy.ndarray, optional
        Like ``activations``, at ``gradient_steps``; None where not recorded.
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    eval_steps: np.ndarray
    test_accuracy: np.ndarray
    snapshot_steps: np.ndarray
    activations: np.ndarray = None
    gradient_steps: np.ndarray = None
    gradients: np.ndarray = None


@dataclass
class TrainResult:
    """What :func:`run` returns.

    Parameters
    ----------
    config : TrainConfig
        The validated config.
    runs : list of RunResult, optional
        Each run and seed's result, in the order of :func:`train`.
    curves : dict, optional
        Each run's :class:`RunCurves`, keyed by its label (``<spec>`` or ``<spec>/seed=<s>``).
    """

    config: TrainConfig
    runs: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)

    def statistics(self):
        """Final loss and test accuracy of each run spec over its seeds.

        Returns
        -------
        dict
            As :func:`seed_statistics` returns it.
        """
        return seed_statistics(self.runs)

    def ranking(self):
        """How the run specs rank by final train loss across seeds.

        Returns
        -------
        str
            As :func:`seed_ranking` returns it.
        """
        return seed_ranking(self.runs)

    def table(self):
        """The plain-text table of the runs.

        Returns
        -------
        str
            As :func:`format_results` returns it.
        """
        return format_results(self.runs)

    def run_dicts(self):
        """The runs as :func:`read_runs` reads them from a file, for the figures of :mod:`fastinit.plots`.

        Returns
        -------
        list of dict
            One per run and seed: ``name``, ``label``, ``seed``, the curves ``loss``, ``grad_norm``,
            ``test_accuracy``, ``eval_steps``, ``snapshot_steps`` and ``attrs`` (the run's
            ``init``, ``activation``, ``seed``, ``status``, ``iterations_done``,
            ``final_train_loss``, ``final_test_accuracy``, ``wall_time_s``, ``init_seconds`` and
            ``diverged_step``).
        """
        out = []
        for r in self.runs:
            c = self.curves[r.label]
            attrs = {key: getattr(r, key) for key in _SUMMARY_ATTRS}
            attrs.update(init=r.init, activation=r.activation, seed=r.seed)
            run = dict(name=r.name, label=r.label, seed=r.seed, attrs=attrs)
            run.update((key, getattr(c, key)) for key in _READ_CURVES)
            out.append(run)
        return out

    def snapshots(self, count=4):
        """The probe snapshots the training figures draw, as :func:`read_snapshots` reads them.

        Parameters
        ----------
        count : int, default 4
            Snapshots per run, spread from the first to the last.

        Returns
        -------
        list of dict
            One per run name, for its first seed: ``name``, ``label``, ``activation`` and, for
            ``activations`` and ``gradients``, ``(values, steps)`` of the chosen snapshots, or
            None where the run recorded none.
        """
        first_seed = {}
        for r in self.runs:
            first_seed.setdefault(r.name, r)
        out = []
        for r in first_seed.values():
            c = self.curves[r.label]
            snap = dict(name=r.name, label=r.label, activation=r.activation)
            for dataset, steps in (("activations", c.snapshot_steps), ("gradients", c.gradient_steps)):
                values = getattr(c, dataset)
                chosen = _spread(0 if values is None else len(steps), count)
                snap[dataset] = (values[chosen], steps[chosen]) if chosen else None
            out.append(snap)
        return out


#: The attrs that :meth:`RunResult` fields give a run's group when it ends.
_SUMMARY_ATTRS = (
    "status",
    "iterations_done",
    "final_train_loss",
    "final_test_accuracy",
    "wall_time_s",
    "init_seconds",
    "diverged_step",
)
#: The curves :func:`read_runs` reads.
_READ_CURVES = ("loss", "grad_norm", "test_accuracy", "eval_steps", "snapshot_steps")


def seed_statistics(results):
    """Final train loss and test accuracy of each run spec over its seeds.

    Parameters
    ----------
    results : iterable of RunResult
        The runs, several per name for its seeds.

    Returns
    -------
    dict
        ``{name: dict}`` in the order of first appearance, each with ``seeds`` (list of int),
        ``complete`` (how many runs completed), ``loss_mean``, ``loss_std``, ``acc_mean``,
        ``acc_std`` (floats, over the complete runs only; std is the sample std, ddof=1, and 0
        for one run; NaN when no run completed).
    """
    groups = {}
    for r in results:
        groups.setdefault(r.name, []).append(r)
    stats = {}
    for name, runs in groups.items():
        done = [r for r in runs if r.status == "complete"]
        loss_mean, loss_std = _mean_std([r.final_train_loss for r in done])
        acc_mean, acc_std = _mean_std([r.final_test_accuracy for r in done])
        stats[name] = dict(
            seeds=[r.seed for r in runs],
            complete=len(done),
            loss_mean=loss_mean,
            loss_std=loss_std,
            acc_mean=acc_mean,
            acc_std=acc_std,
        )
    return stats


def _mean_std(values):
    """Mean and sample std (ddof=1; 0 for one value) of a list of floats; NaN, NaN for an empty list."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def seed_ranking(results):
    """One plain sentence on how the run specs of ``results`` rank by final train loss across seeds.

    A run that did not complete ranks last for its seed.

    Parameters
    ----------
    results : iterable of RunResult
        As in :func:`seed_statistics`.

    Returns
    -------
    str
        When ``he``, ``xavier`` and ``std=0.01`` are all among the runs: whether
        he < xavier < std=0.01 holds for every seed (naming the seeds where it fails).
        Otherwise: the ranking by mean final loss and whether every seed ranks the runs
        the same way.
    """
    loss = {}  # seed -> name -> final loss
    for r in results:
        loss.setdefault(r.seed, {})[r.name] = r.final_train_loss if r.status == "complete" else math.inf
    seeds = sorted(loss)
    stats = seed_statistics(results)

    def order(seed):
        return sorted(stats, key=lambda n: loss[seed].get(n, math.inf))

    def classic_holds(seed):
        best, middle, worst = (loss[seed].get(n, math.inf) for n in CLASSIC_ORDER)
        return best < middle < worst

    if all(name in stats for name in CLASSIC_ORDER):
        classic = " < ".join(CLASSIC_ORDER)
        failing = [s for s in seeds if not classic_holds(s)]
        if not failing:
            return f"{classic} (final train loss) holds for every seed ({', '.join(map(str, seeds))})."
        return (
            f"{classic} (final train loss) does NOT hold for every seed: it fails for "
            + "; ".join(
                f"seed {s} ({' < '.join(n for n in order(s) if n in CLASSIC_ORDER)})" for s in failing
            )
            + "."
        )
    by_mean = sorted(stats, key=lambda n: (math.isnan(stats[n]["loss_mean"]), stats[n]["loss_mean"]))
    ranking = " < ".join(by_mean)
    differ = [s for s in seeds if order(s) != by_mean]
    if not differ:
        return f"ranking by mean final train loss: {ranking}; the same for every seed."
    return (
        f"ranking by mean final train loss: {ranking}; NOT the same for every seed: "
        + "; ".join(f"seed {s} gives {' < '.join(order(s))}" for s in differ)
        + "."
    )


def _loss_text(loss):
    return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.3g}"


def format_results(results):
    """A plain-text table of :class:`RunResult` (status, final loss, test accuracy, wall time).

    Parameters
    ----------
    results : sequence of RunResult
        The runs, one per run and seed.

    Returns
    -------
    str
        The table; with several seeds, each run's final loss and test accuracy follow as
        mean ± std over its seeds (:func:`seed_statistics`), then how the inits rank across
        seeds (:func:`seed_ranking`).
    """
    width = max([18] + [len(r.label) for r in results])
    head = f"{'run':<{width}} {'status':<22} {'final loss':>10} {'test acc':>9} {'wall s':>8} {'init s':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        status = r.status + (f" at step {r.diverged_step}" if r.status == "diverged" else "")
        lines.append(
            f"{r.label:<{width}} {status:<22} {_loss_text(r.final_train_loss):>10} "
            f"{100 * r.final_test_accuracy:>8.2f}% {r.wall_time_s:>8.1f} {r.init_seconds:>7.2f}"
        )
    lines.append(
        "final loss: mean mini-batch loss over the last iterations (final_window); "
        "test acc: full test set after the last step; init s: time to compute the initial weights "
        "(part of wall s)"
    )
    stats = seed_statistics(results)
    if any(len(s["seeds"]) > 1 for s in stats.values()):
        seeds = sorted({r.seed for r in results})
        width = max([18] + [len(name) for name in stats])
        head = (
            f"{'run':<{width}} {'complete':>8} {'final loss (mean ± std)':>25} {'test acc (mean ± std)':>22}"
        )
        lines += [
            "",
            f"over seeds {', '.join(map(str, seeds))} (mean ± sample std of the complete runs):",
            head,
            "-" * len(head),
        ]
        for name, st in stats.items():
            complete = f"{st['complete']}/{len(st['seeds'])}"
            loss = f"{_loss_text(st['loss_mean'])} ± {_loss_text(st['loss_std'])}"
            acc = f"{100 * st['acc_mean']:.2f} ± {100 * st['acc_std']:.2f}%"
            lines.append(f"{name:<{width}} {complete:>8} {loss:>25} {acc:>22}")
        lines.append(seed_ranking(results))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def run(config=None, *, dataset=None, progress=True, log=print, **overrides):
    """Run the training study described by ``config`` (plus keyword ``overrides``) in memory.

    The same runs as :func:`train`, in the same order and with the same numbers, but no file
    is written: every run's curves come back in the result (:func:`write` stores it).

    On the cpu backend BLAS is held to one thread while the runs train
    (``fastinit.threads.pools_for``), as ``fastinit train`` does, and restored after.

    Parameters
    ----------
    config : TrainConfig, optional
        Validated here; default: the classic experiment.
    dataset : fastinit.data.MNIST, optional
        Default: ``fastinit.data.load_mnist(config.data_dir, dtype=config.dtype)``.
    progress : bool, default True
        A bar per run on a terminal, else a heartbeat and a result line per run on stderr
        (``fastinit.progress``).
    log : callable, default print
        Receives one-line messages (a run that diverged).
    **overrides
        Fields of ``config`` to replace.

    Returns
    -------
    TrainResult
        Every run and seed with its :class:`RunResult` and :class:`RunCurves`.

    Raises
    ------
    ValueError, TypeError
        For a bad config.
    fastinit.data.DataError
        For bad data.
    fastinit.backends.BackendError
        For a backend that cannot run.
    """
    config, dataset = _prepare(config, dataset, overrides)
    result = TrainResult(config)
    with pools_for(config.backend):
        for spec in config.run_specs:
            for seed in config.seeds:
                path = _group_path("train", config, spec, seed)
                record = _Record(config, spec, seed, path, _probe_rows(config, dataset))
                done = _train(record, dataset, progress=progress, log=log)
                result.runs.append(done)
                result.curves[done.label] = record.curves()
    return result


def train(
    config=None,
    out="fastinit-results.h5",
    *,
    dataset=None,
    root="train",
    progress=True,
    log=print,
    **overrides,
):
    """Run the training study described by ``config`` (plus keyword ``overrides``) into a file.

    Writes one group per run and seed to the HDF5 file ``out`` (layout in
    the module docstring, under ``/<root>`` instead of ``/train`` when
    ``root`` is given; other groups in it are kept) and returns a list of
    :class:`RunResult`, one per run and seed, run by run and seed by seed
    within a run, in the given orders. Each run is on disk once it ends.
    ``KeyboardInterrupt`` propagates after the file is saved with the current run marked
    interrupted.

    Parameters
    ----------
    config : TrainConfig, optional
        Validated here; default: the classic experiment.
    out : str or os.PathLike, default "fastinit-results.h5"
        The HDF5 results file.
    dataset : fastinit.data.MNIST, optional
        As in :func:`run`.
    root : str, default "train"
        The runs go under ``/<root>``.
    progress : bool, default True
        As in :func:`run`.
    log : callable, default print
        As in :func:`run`.
    **overrides
        Fields of ``config`` to replace.

    Returns
    -------
    list of RunResult
        One per run and seed.

    Raises
    ------
    fastinit.store.StoreError
        For an unwritable file.
    ValueError, TypeError, fastinit.data.DataError, fastinit.backends.BackendError
        As in :func:`run`.
    """
    from ..store import open_results, record_gpu

    config, dataset = _prepare(config, dataset, overrides)
    with open_results(out) as f, pools_for(config.backend):
        record_gpu(f, config.backend)

        def trained(group, spec, seed):
            return train_run(group, spec, config, dataset, seed=seed, progress=progress, log=log)

        return _each_group(f, root, config, trained)


def write(f, result, root="train"):
    """Write a :class:`TrainResult` into the open results file ``f``, as :func:`train` writes its runs.

    Parameters
    ----------
    f : h5py.File
        From :func:`fastinit.store.open_results`.
    result : TrainResult
        From :func:`run`.
    root : str, default "train"
        The runs go under ``/<root>``.

    Returns
    -------
    list of str
        The group paths of the runs written.

    Raises
    ------
    fastinit.store.StoreError
        If the file cannot be written.
    """
    runs = {(r.name, r.seed): r for r in result.runs}
    paths = []

    def stored(group, spec, seed):
        done = runs[spec.name, seed]
        _write_run(group, result.config, spec, done, result.curves[done.label])
        paths.append(group.name)
        return done

    _each_group(f, root, result.config, stored)
    return paths


def _prepare(config, dataset, overrides):
    """The validated config (with ``overrides``) and the data set; the backend compiled."""
    config = replace(config or TrainConfig(), **overrides).validate()
    if config.backend == "cuda":
        require_cuda()
    compiling = _compile_in_background(config)
    if dataset is None:
        dataset = load_mnist(config.data_dir, dtype=config.dtype)
    compiling.join()
    return config, dataset


def _group_path(root, config, spec, seed):
    """The group of one run and seed: ``/<root>/<spec>``, or ``/<root>/<spec>/seed=<s>`` with several
    seeds."""
    return f"/{root}/{spec.name}" + (f"/seed={seed}" if len(config.seeds) > 1 else "")


def _each_group(f, root, config, fill):
    """Make the group of each run and seed of ``config`` under ``/<root>`` of the open results ``f``,
    in order, let ``fill(group, spec, seed)`` write it and finish it (on disk then: kept even if a
    later run is killed). With several seeds a run's parent group holds only attrs (in the results'
    top file). ``fill`` returns the run's :class:`RunResult`; returns them all, in order."""
    from ..store import finish_group, replace_group

    out = []
    for spec in config.run_specs:
        parent = None
        if len(config.seeds) > 1:
            attrs = dict(init=spec.init, activation=spec.activation, seeds=np.asarray(config.seeds, np.int64))
            parent = replace_group(f, f"/{root}/{spec.name}", attrs, part=False)
        seeded = []
        for seed in config.seeds:
            group = replace_group(f, _group_path(root, config, spec, seed))
            seeded.append(fill(group, spec, seed))
            finish_group(group)
        if parent is not None:
            parent.attrs["status"] = "diverged" if any(r.status == "diverged" for r in seeded) else "complete"
        out += seeded
    return out


def train_run(group, spec, config, dataset, *, seed=None, progress=True, log=print, snapshots=None):
    """Train one run into the (already created) HDF5 ``group``.

    The run is recorded in memory, then written into ``group`` (layout in the module
    docstring). A NaN/Inf loss ends the run with status ``diverged``. On
    ``KeyboardInterrupt`` what was computed is written, the group is marked
    ``interrupted`` and the interrupt re-raised.

    Parameters
    ----------
    group : h5py.Group
        The run's group, already created.
    spec : RunSpec
        The run.
    config : TrainConfig
        The validated study.
    dataset : fastinit.data.MNIST
        The data.
    seed : int, optional
        Draws the weights and the mini-batch order (default: the first of ``config.seeds``).
    progress : bool, default True
        As in :func:`run`.
    log : callable, default print
        As in :func:`run`.
    snapshots : bool, optional
        Whether to record the probe snapshots (default: as ``config.snapshot_seeds`` says
        for this seed).

    Returns
    -------
    RunResult
        What the run ended with.
    """
    from ..store import mark_interrupted

    record = _Record(config, spec, seed, group.name, _probe_rows(config, dataset), snapshots)
    try:
        result = _train(record, dataset, progress=progress, log=log)
    except KeyboardInterrupt:
        _write_run(group, config, spec, record.result("interrupted"), record.curves())
        mark_interrupted(group)
        raise
    _write_run(group, config, spec, result, record.curves())
    return result


class _Record:
    """One run as recorded so far: its curves, row by row, and what its summary needs."""

    def __init__(self, config, spec, seed, group, probe_rows, snapshots=None):
        self.config, self.spec, self.group = config, spec, group
        self.seed = int(config.seeds[0] if seed is None else seed)
        if snapshots is None:
            snapshots = config.snapshot_seeds == "all" or (
                config.snapshot_seeds == "first" and self.seed == int(config.seeds[0])
            )
        self.shapes = _curve_shapes(config, probe_rows, snapshots)
        self.rows = {name: [] for name in self.shapes}
        self.tail = deque(maxlen=config.final_window)
        self.done, self.last_acc, self.diverged_step = 0, math.nan, -1
        self.t0 = time.perf_counter()
        self.init_seconds, self.init_info = 0.0, {}

    def add(self, name, row):
        """Append one row to the curve ``name``."""
        self.rows[name].append(row)

    def curves(self):
        """The :class:`RunCurves` recorded so far."""
        return RunCurves(
            **{
                name: np.asarray(self.rows[name], dtype).reshape((len(self.rows[name]),) + shape)
                for name, (shape, dtype) in self.shapes.items()
            }
        )

    def result(self, status):
        """The :class:`RunResult` of the run ending now with ``status``."""
        return RunResult(
            name=self.spec.name,
            init=self.spec.init,
            activation=self.spec.activation,
            status=status,
            iterations_done=self.done,
            final_train_loss=float(np.mean(self.tail)) if self.tail else math.nan,
            final_test_accuracy=float(self.last_acc),
            wall_time_s=time.perf_counter() - self.t0,
            diverged_step=self.diverged_step,
            group=self.group,
            init_info=self.init_info,
            seed=self.seed,
            init_seconds=self.init_seconds,
        )


def _train(record, dataset, *, progress, log):
    """Train the run of ``record`` (its spec and seed), recording its curves into it; return its
    :class:`RunResult`. On ``KeyboardInterrupt`` the record keeps what was computed."""
    config, spec, seed = record.config, record.spec, record.seed
    dtype = np.dtype(config.dtype)
    x_train, y_train, x_test, y_test = _split(dataset, config, dtype)
    hidden = tuple(int(s) for s in config.sizes[1:-1])
    units = max(hidden) if hidden else 0
    probe = np.ascontiguousarray(x_test[: config.probe_samples])
    probe_labels = y_test[: config.probe_samples]
    run_label = record.group.removeprefix("/train/")
    grad_at = set(gradient_steps(config))

    record.t0 = time.perf_counter()
    # A data-driven init (lsuv, pretrain) calibrates on the training images, never the test set.
    model = MLP(
        [int(s) for s in config.sizes],
        activation=spec.activation,
        init=spec.init,
        backend=config.backend,
        dtype=dtype.name,
        seed=seed,
        data=x_train,
    )
    record.init_seconds, record.init_info = float(model.init_seconds), dict(model.init_info or {})

    def on_step(step, loss):
        record.add("loss", loss)
        record.add("grad_norm", model.grad_norms())
        record.done = step
        if math.isfinite(loss):
            record.tail.append(loss)

    def evaluate(step):
        record.last_acc = model.evaluate(x_test, y_test, chunk=2000)[1]
        record.add("test_accuracy", record.last_acc)
        record.add("eval_steps", step)

    def snapshot(step):
        if "activations" not in record.shapes:
            return
        gradients = "gradients" in record.shapes and step in grad_at
        if gradients:
            acts, grads = model.per_sample_gradients(probe, probe_labels)
        else:
            _, acts = model.forward(probe, record=True)

        def padded(layers):
            row = np.full((len(hidden), probe.shape[0], units), np.nan, dtype=dtype)
            for i, a in enumerate(layers):
                row[i, :, : a.shape[1]] = a
            return row

        record.add("activations", padded(acts))
        record.add("snapshot_steps", step)
        if gradients:
            record.add("gradients", padded(grads))
            record.add("gradient_steps", step)

    bar = Progress(config.iterations, f"train {run_label}", "it", enabled=progress)
    iterations = config.iterations
    evaluated = [s % config.eval_every == 0 or s == iterations for s in range(iterations + 1)]
    snapshotted = [s % config.snapshot_every == 0 for s in range(iterations + 1)]
    shown = [s > 0 and (s % 10 == 0 or s == iterations) for s in range(iterations + 1)]  # cheap enough
    stops = [s for s in range(iterations + 1) if evaluated[s] or snapshotted[s] or shown[s]]
    # On cuda the training set is copied to the device once, then only indices go in.
    steps = sgd(
        model,
        x_train,
        y_train,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=seed,
        stops=stops,
        on_step=on_step,
    )
    loss = float("nan")
    status = "complete"
    # Overflow is expected when a run diverges (std=10): it is detected from the loss, not warned about.
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for stop in steps:
                step, loss = stop.step, stop.loss
                if stop.diverged:
                    status, record.diverged_step = "diverged", step
                    break
                if evaluated[step]:
                    evaluate(step)
                if snapshotted[step]:
                    snapshot(step)
                if shown[step]:
                    bar.update(step - bar.n, loss=f"{loss:.4f}", acc=f"{100 * record.last_acc:.1f}%")
    except KeyboardInterrupt:
        bar.close()
        raise
    result = record.result(status)
    bar.close(
        f"{status}, {result.iterations_done} it, loss {result.final_train_loss:.3f}, "
        f"acc {100 * result.final_test_accuracy:.1f}%"
    )
    if status == "diverged":
        log(
            f"run {run_label}: diverged at step {result.iterations_done} (loss {loss}); run stopped, "
            "its last test accuracy is from before the divergence"
        )
    return result


def _split(dataset, config, dtype):
    x_train, y_train = dataset.train_images, dataset.train_labels
    x_test, y_test = dataset.test_images, dataset.test_labels
    if config.train_limit is not None:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    if config.test_limit is not None:
        x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    if x_train.dtype != dtype:
        x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    if x_train.shape[1] != config.sizes[0]:
        raise ValueError(
            f"sizes[0] is {config.sizes[0]} but the images have {x_train.shape[1]} features; "
            f"use sizes starting with {x_train.shape[1]}"
        )
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if config.sizes[-1] < n_classes:
        raise ValueError(f"the last size is {config.sizes[-1]} but the labels need {n_classes} classes")
    return (
        np.ascontiguousarray(x_train),
        np.ascontiguousarray(y_train),
        np.ascontiguousarray(x_test),
        np.ascontiguousarray(y_test),
    )


def _compile_in_background(config):
    """Start compiling the backend's kernels on a daemon thread, to overlap the data loading; return it.

    Numba releases the GIL while LLVM optimises, so on a cold cache this hides
    part of the compile time. Join the thread before training: it runs a tiny
    parallel step, and two threads must not run parallel regions at once.
    Errors are left to the first real use, which compiles (and raises) again."""

    def work():
        try:
            for activation in dict.fromkeys(run.activation for run in config.run_specs):
                compile_backend(config.backend, config.dtype, activation)
        except Exception:  # noqa: BLE001 - re-raised by the run that needs the backend
            pass

    thread = threading.Thread(target=work, name="fastinit-compile", daemon=True)
    thread.start()
    return thread


def _plain_number(value):
    """JSON for the NumPy scalars and arrays in an ``init_info``."""
    return value.tolist() if hasattr(value, "tolist") else float(value)


# --------------------------------------------------------------------------- the HDF5 layout


def _attrs(config, spec, seed):
    attrs = {}
    for key, value in asdict(config).items():
        if key == "runs":
            import h5py

            value = np.array(list(config.runs), dtype=h5py.string_dtype())
        elif key in ("sizes", "seeds"):
            value = np.asarray(value, dtype=np.int64)
        elif value is None:
            value = "none"
        attrs["default_activation" if key == "activation" else key] = value
    ran = json.loads(config.to_json())  # the config of this run: its own init, activation and seed
    ran.update(run=spec.name, init=spec.init, activation=spec.activation, seed=seed)
    attrs.update(
        init=spec.init, activation=spec.activation, seed=seed, config=json.dumps(ran, sort_keys=True)
    )
    return attrs


def _probe_rows(config, dataset):
    """Images in the probe batch: the first ``probe_samples`` of the (limited) test set."""
    return len(dataset.test_labels[: config.test_limit][: config.probe_samples])


def _curve_shapes(config, probe_rows, snapshots):
    """``{name: (row shape, dtype)}`` of the curves a run of ``config`` records, in the layout's
    order: the probe snapshots only where ``snapshots`` and the network has hidden layers, the
    gradients only where ``config.gradient_snapshots`` asks for them."""
    sizes = [int(s) for s in config.sizes]
    hidden = sizes[1:-1]
    shapes = {
        "loss": ((), "float64"),
        "grad_norm": ((len(sizes) - 1,), "float64"),
        "test_accuracy": ((), "float64"),
        "eval_steps": ((), "int64"),
        "snapshot_steps": ((), "int64"),
    }
    probe = ((len(hidden), probe_rows, max(hidden)), config.dtype) if hidden else None
    if probe and snapshots:
        shapes["activations"] = probe
        if gradient_steps(config):
            shapes["gradients"] = probe
            shapes["gradient_steps"] = ((), "int64")
    return shapes


def _write_run(group, config, spec, result, curves):
    """Write one run into ``group``: its attrs and its curves as chunked, compressed datasets
    that can grow (the layout of the module docstring)."""
    import h5py

    from ..store import append, create_appendable

    attrs = _attrs(config, spec, result.seed)
    attrs.update(
        init_seconds=float(result.init_seconds),
        status=result.status,
        iterations_done=int(result.iterations_done),
        final_train_loss=float(result.final_train_loss),
        final_test_accuracy=float(result.final_test_accuracy),
        wall_time_s=float(result.wall_time_s),
        diverged_step=int(result.diverged_step),
    )
    if result.init_info:
        attrs["init_info"] = json.dumps(result.init_info, sort_keys=True, default=_plain_number)
    for key, value in attrs.items():
        group.attrs[key] = value
    sizes = [int(s) for s in config.sizes]
    columns = [f"layer {i + 1} ({a}->{b})" for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    extra = {"grad_norm": dict(columns=np.array(columns, dtype=h5py.string_dtype()))}
    if curves.activations is not None:
        snapshot = dict(
            layers=np.arange(1, len(sizes) - 1),
            probe=f"the first {curves.activations.shape[2]} test images",
            padding="NaN where a layer is narrower than the widest hidden layer",
        )
        extra.update(activations=snapshot, gradients=snapshot)
    for entry in schema.TRAIN_RUN.datasets:
        data = getattr(curves, entry.name)
        if data is None:
            continue
        ds = create_appendable(
            group, entry.name, data.shape[1:], data.dtype, chunk_rows=1 if data.ndim > 2 else None
        )
        append(ds, data)
        schema.label(ds, entry, **extra.get(entry.name, {}))


def _seed_groups(group):
    """Names of the ``seed=<s>`` subgroups of a ``/train/<spec>`` group, in the order of its
    ``seeds`` attr; empty for a one-seed run (whose datasets sit in ``group`` itself)."""
    if "loss" in group:
        return []
    return [f"seed={int(s)}" for s in group.attrs.get("seeds", ()) if f"seed={int(s)}" in group]


def read_runs(path, names=None):
    """Read the ``/train`` runs of a results file into plain dicts, in file order, seeds in run order.

    ``activations`` is left in the file (it can be large): read it with
    :func:`read_activations`.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.
    names : sequence of str, optional
        The run specs to read (every seed of each); default all.

    Returns
    -------
    list of dict
        One per run and seed, with ``name`` (the run spec), ``label`` (the group path under
        /train: ``<spec>`` or ``<spec>/seed=<s>``), ``seed`` (int), ``loss``, ``grad_norm``,
        ``test_accuracy``, ``eval_steps``, ``snapshot_steps`` (NumPy arrays) and ``attrs``
        (dict); empty when the file has no ``/train`` and no ``names`` are given.

    Raises
    ------
    fastinit.store.StoreError
        For an unreadable file.
    KeyError
        When a named run (or ``/train`` itself) is missing.
    """
    from ..store import open_read, plain

    runs = []
    with open_read(path) as f:
        if "train" not in f:
            if names:
                raise KeyError(f"{path} has no /train group (run `fastinit train` first)")
            return runs
        group = f["train"]
        wanted = list(dict.fromkeys(names)) if names else list(group.keys())
        for name in wanted:
            if name not in group:
                raise KeyError(f"{path} has no run /train/{name}; runs there: {', '.join(group.keys())}")
            labels = [f"{name}/{s}" for s in _seed_groups(group[name])] or [name]
            for label in labels:
                g = group[label]
                attrs = {k: plain(v) for k, v in g.attrs.items()}
                run = {"name": name, "label": label, "seed": int(attrs.get("seed", 0)), "attrs": attrs}
                for key in ("loss", "grad_norm", "test_accuracy", "eval_steps", "snapshot_steps"):
                    run[key] = g[key][()] if key in g else np.empty(0)
                runs.append(run)
    return runs


def _steps_key(group, dataset):
    """The dataset holding the steps of ``dataset``'s snapshots (files written before
    ``gradient_steps`` stored gradients at every snapshot)."""
    return "gradient_steps" if dataset == "gradients" and "gradient_steps" in group else "snapshot_steps"


def read_activations(path, name, snapshots=None, dataset="activations"):
    """Read ``/train/<name>/activations`` (or the snapshot indices ``snapshots``) and their steps.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.
    name : str
        A run's label: ``<spec>``, or ``<spec>/seed=<s>`` for a run with several seeds.
    snapshots : sequence of int, optional
        Indices of the snapshots to read (sorted here); default all.
    dataset : {"activations", "gradients"}, default "activations"
        ``"gradients"`` reads the probe batch's gradients instead (at their own steps,
        ``gradient_steps``; indices count those snapshots).

    Returns
    -------
    values : numpy.ndarray
        (snapshots, hidden layers, probe samples, units), as stored.
    steps : numpy.ndarray
        (snapshots,) int: the step of each.

    Raises
    ------
    KeyError
        When the run has no such snapshots.
    fastinit.store.StoreError
        For an unreadable file.
    """
    from ..store import open_read

    with open_read(path) as f:
        key = f"train/{name}"
        if key not in f or dataset not in f[key]:
            raise KeyError(f"{path} has no {dataset} for run {name!r}")
        ds = f[key][dataset]
        steps = f[key][_steps_key(f[key], dataset)][()]
        if snapshots is None:
            return ds[()], steps
        idx = sorted(int(i) for i in snapshots)
        return ds[idx], steps[idx]


def snapshot_choice(path, name, count=4, dataset="activations"):
    """Indices of up to ``count`` snapshots of a run, spread from the first to the last.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.
    name : str
        The run's label, as in :func:`read_activations`.
    count : int, default 4
        How many snapshots at most.
    dataset : {"activations", "gradients"}, default "activations"
        ``"gradients"`` counts the gradient snapshots.

    Returns
    -------
    list of int
        Ascending indices; empty when the run has no such snapshots.

    Raises
    ------
    fastinit.store.StoreError
        For an unreadable file.
    """
    from ..store import open_read

    with open_read(path) as f:
        group = f.get(f"train/{name}")
        n = 0
        if group is not None and dataset in group:
            n = group[_steps_key(group, dataset)].shape[0]
    return _spread(n, count)


def read_snapshots(path, runs, count=4):
    """Read the probe snapshots the training figures draw, for the first seed of each run.

    Parameters
    ----------
    path : str
        The results file.
    runs : list of dict
        From :func:`read_runs`; several dicts of one name are its seeds, the first is read.
    count : int, default 4
        Snapshots per run, spread from the first to the last (:func:`snapshot_choice`).

    Returns
    -------
    list of dict
        One per run name, in order: ``name``, ``label``, ``activation`` and, for
        ``activations`` and ``gradients``, ``(values, steps)`` as :func:`read_activations`
        returns them, or None where the run recorded none.

    Raises
    ------
    fastinit.store.StoreError
        For an unreadable file.
    """
    first_seed = {}
    for run in runs:
        first_seed.setdefault(run["name"], run)
    out = []
    for run in first_seed.values():
        snap = dict(name=run["name"], label=run["label"], activation=run["attrs"]["activation"])
        for dataset in ("activations", "gradients"):
            chosen = snapshot_choice(path, run["label"], count, dataset)
            snap[dataset] = read_activations(path, run["label"], chosen, dataset) if chosen else None
        out.append(snap)
    return out
