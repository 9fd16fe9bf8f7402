"""``fastinit reproduce``: the whole study in one call.

1. The activation-histogram experiment (:mod:`fastinit.experiments.histogram`) for
   sigmoid, tanh and ReLU with the default inits.
2. The MNIST comparison (:mod:`fastinit.experiments.train`): the classic ReLU runs
   ``std=0.01``, ``xavier``, ``he`` plus the literal reading of the seed
   article, ``xavier:sigmoid``, each once per seed (default 0, 1, 2), with
   mean ± std over the seeds and whether he < xavier < std=0.01 holds for
   every seed.
3. The history comparison: the sigmoid network under ``xavier``, ``lsuv`` and
   ``pretrain`` and the ReLU network under ``he`` and ``lsuv`` (in the runs
   above), with each init's own cost; the sigmoid runs are tried again at
   the learning rates ``HISTORY_LRS`` (first seed, ``/history/lr=<lr>/``) to
   show where each starts to learn (their curves only: no probe snapshots,
   which no figure or summary reads).
4. Everything goes to ``DIR/fastinit.h5`` (a small index, with each run's data
   in its own file under ``DIR/fastinit.h5.parts/``); the figures to ``DIR/*.png``; and
   ``DIR/summary.md`` states the numbers and, in plain words, what they show.

``quick=True`` shrinks every size (few samples and layers, a few dozen steps on a
subset of MNIST, as many pre-training steps per layer) so the whole thing runs in
seconds: a smoke test, not a result.
"""

import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .histogram import DEFAULT_INITS as HISTOGRAM_INITS
from .train import DEFAULT_INITS as TRAIN_INITS
from .train import TrainConfig, seed_ranking, seed_statistics

__all__ = [
    "reproduce",
    "ReproduceResult",
    "REPRODUCE_RUNS",
    "REPRODUCE_SEEDS",
    "HISTOGRAM_ACTIVATIONS",
    "DEFAULT_OUT",
]

DEFAULT_OUT = "fastinit-results"
HISTOGRAM_ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: The classic ReLU runs plus the literal "Xavier with sigmoid" reading of the article.
# The history comparison: the 5-layer sigmoid network under Xavier, LSUV and layer-wise
# pre-training (Hinton 2006 / Mishkin & Matas 2016), the ReLU network under He and LSUV.
HISTORY_SIGMOID = ("xavier:sigmoid", "lsuv:sigmoid", "pretrain:sigmoid")
REPRODUCE_RUNS = tuple(TRAIN_INITS) + HISTORY_SIGMOID + ("lsuv",)
#: Learning rates at which the sigmoid runs are tried again (first seed) to see where each starts to learn.
HISTORY_LRS = (0.1, 0.5)
RESCUED_LOSS = 2.0  # final loss below this (ln 10 = 2.303 is guessing): the network learns
#: Each MNIST run is trained once per seed; the histograms use the first.
REPRODUCE_SEEDS = (0, 1, 2)
LN10 = math.log(10.0)

# --quick: every size small, down to the figures (3 layer columns; 2 snapshot rows, init and end).
_QUICK_HISTOGRAM = dict(layers=3, units=50, samples=100)
_QUICK_TRAIN = dict(
    iterations=40,
    train_limit=2000,
    test_limit=500,
    eval_every=10,
    snapshot_every=40,
    probe_samples=50,
    final_window=10,
)
#: --quick pre-trains each layer for as many SGD steps as the runs train (the full study: 500).
_QUICK_PRETRAIN_STEPS = _QUICK_TRAIN["iterations"]


@dataclass
class ReproduceResult:
    """What :func:`reproduce` wrote and measured.

    Parameters
    ----------
    out_dir : str
        The output directory.
    h5_path : str
        The results file, ``<out_dir>/fastinit.h5``.
    summary_path : str
        The summary, ``<out_dir>/summary.md``.
    figures : list of str
        The paths of the figures drawn.
    histograms : dict
        Activation name -> its :class:`fastinit.experiments.histogram.HistogramResults`.
    runs : list
        One :class:`fastinit.experiments.train.RunResult` per MNIST run and seed.
    wall_times : dict, optional
        Phase name -> wall time in seconds.
    activation_stats : dict, optional
        Run name -> ``{"steps", "std", "saturated"}`` for its first and last snapshot.
    lr_probe : dict, optional
        Learning rate -> the ``RunResult`` list of the sigmoid history runs at that rate.
    """

    out_dir: str
    h5_path: str
    summary_path: str
    figures: list
    histograms: dict  # activation -> fastinit.experiments.histogram.HistogramResults
    runs: list  # fastinit.experiments.train.RunResult per run and seed
    wall_times: dict = field(default_factory=dict)  # phase -> seconds
    activation_stats: dict = field(default_factory=dict)  # run -> {"steps", "std", "saturated"} (first, last)
    lr_probe: dict = field(default_factory=dict)  # lr -> RunResults of the sigmoid history runs at that lr

    @property
    def diverged(self):
        """The labels of the runs whose status is ``diverged``."""
        return [r.label for r in self.runs if r.status == "diverged"]


def reproduce(
    out_dir=DEFAULT_OUT,
    *,
    quick=False,
    backend="cpu",
    dtype="float32",
    seeds=REPRODUCE_SEEDS,
    data_dir=None,
    progress=True,
    log=print,
    processes=None,
):
    """Run the histogram study and the MNIST comparison; write results, figures and summary.

    ``out_dir`` is created if needed; ``DIR/fastinit.h5`` is updated
    run by run (:mod:`fastinit.store`; groups of other commands in it stay), the figures are
    ``histogram-<activation>.png`` with ``-depth``, ``-gradients`` (RMS
    against depth) and ``-gradient-histogram`` beside it, ``mnist-loss.png``,
    ``mnist-accuracy.png``, ``mnist-activations-<run>.png`` and ``mnist-gradients-<run>.png``, and
    ``summary.md`` holds the tables and findings.

    Parameters
    ----------
    out_dir : str or os.PathLike, default DEFAULT_OUT
        The output directory.
    quick : bool, default False
        Shrink every size so the whole study runs in seconds (a smoke test, not a result).
    backend : str, default "cpu"
        The backend every network runs on.
    dtype : {"float32", "float64"}, default "float32"
        The floating-point type.
    seeds : sequence of int, default REPRODUCE_SEEDS
        The MNIST runs are trained once per seed (distinct non-negative ints); the
        histograms use the first seed.
    data_dir : str, optional
        Where the MNIST files are (default: as :func:`fastinit.data.load_mnist` finds them).
    progress : bool, default True
        Show progress bars.
    log : callable, default print
        Receives one-line messages.
    processes : int, optional
        How many runs train at once, each in a single-threaded process of its own
        (default: one per core; 1 trains them one after the other in this process on every
        core, as does the cuda backend). On the cpu backend every run's numbers are the
        same either way.

    Returns
    -------
    ReproduceResult
        What was written and measured.

    Raises
    ------
    ValueError
        For a bad option.
    fastinit.data.DataError
        For bad MNIST files.
    fastinit.store.StoreError
        When ``out_dir`` cannot be written.
    fastinit.backends.BackendError
        For a backend that cannot run.
    """
    from .. import plots
    from ..store import StoreError, open_results
    from . import histogram
    from .train import read_runs

    config = TrainConfig(
        runs=REPRODUCE_RUNS,
        seeds=tuple(seeds),
        backend=backend,
        dtype=dtype,
        data_dir=data_dir,
        **(_QUICK_TRAIN if quick else {}),
    ).validate()  # bad seeds fail before any work
    histogram_config = histogram.HistogramConfig(
        inits=HISTOGRAM_INITS,
        seed=config.seeds[0],
        backend=backend,
        dtype=dtype,
        **(_QUICK_HISTOGRAM if quick else {}),
    ).validate()
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise StoreError(f"--out {out_dir} exists and is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create output directory {out_dir}: {exc.strerror or exc}") from None
    h5_path = os.path.join(out_dir, "fastinit.h5")
    processes = (os.cpu_count() or 1) if processes is None else int(processes)
    figures, times = [], {}
    t_all = time.perf_counter()

    # 1. Activation histograms.
    histograms = {}
    t0 = time.perf_counter()
    for activation in HISTOGRAM_ACTIVATIONS:
        histograms[activation] = histogram.run(
            replace(histogram_config, activation=activation), progress=progress
        )
    with open_results(h5_path) as f:
        for res in histograms.values():
            histogram.write(f, res)  # on cuda, with the GPU's name
    times["histograms"] = time.perf_counter() - t0
    log(
        f"histograms: {', '.join(HISTOGRAM_ACTIVATIONS)} x {len(HISTOGRAM_INITS)} inits "
        f"({times['histograms']:.1f} s)"
    )

    # 2. MNIST comparison and the history learning rates: independent runs, one per core, with
    # the figures that need no other run (histograms; each run's snapshots) drawn beside them.
    t0 = time.perf_counter()
    history = replace(config, runs=HISTORY_SIGMOID, seeds=config.seeds[:1], snapshot_seeds="none")
    studies = [("train", config)] + [(f"history/lr={lr:g}", replace(history, lr=lr)) for lr in HISTORY_LRS]
    drawings = [
        (plots.plot_histogram_figures, (res, os.path.join(out_dir, f"histogram-{activation}.png")))
        for activation, res in histograms.items()
    ]
    loss_plot = os.path.join(out_dir, "mnist-loss.png")
    spec_for = _quick_spec if quick else None
    done = _train_studies(studies, h5_path, drawings, loss_plot, processes, progress, log, spec_for)
    runs, lr_probe = done.results[0], dict(zip(HISTORY_LRS, done.results[1:]))
    times["training"] = done.main_done - t0
    log(
        f"training: {len(config.runs)} runs x {len(config.seeds)} seed(s) x {config.iterations} iterations "
        f"({times['training']:.1f} s)"
    )
    times["history learning rates"] = done.all_done - done.main_done

    # 3. The figures of every run together, and the summary's numbers.
    t0 = time.perf_counter()
    figures += [path for drawn in done.drawn for path in drawn]
    stored = read_runs(h5_path, [r.name for r in runs])
    figures += [
        plots.plot_train_loss(stored, loss_plot),
        plots.plot_train_accuracy(stored, os.path.join(out_dir, "mnist-accuracy.png")),
    ]
    for r in _first_seeds(runs):
        figures += done.run_figures.get(r.name, [])
    activation_stats = {r.name: _activation_stats(h5_path, r) for r in _first_seeds(runs)}
    times["figures"] = time.perf_counter() - t0
    log(f"figures: {len(figures)} ({times['figures']:.1f} s)")
    times["total"] = time.perf_counter() - t_all

    result = ReproduceResult(
        out_dir,
        h5_path,
        os.path.join(out_dir, "summary.md"),
        figures,
        histograms,
        runs,
        times,
        activation_stats,
        lr_probe,
    )
    with open(result.summary_path, "w", encoding="utf-8") as fh:
        fh.write(summary_markdown(result, config, quick=quick))
    log(f"wrote {h5_path}, {len(figures)} figures and {result.summary_path} ({times['total']:.1f} s)")
    return result


#: Per process: the MNIST arrays of each (data_dir, dtype), loaded once for all its runs.
_DATASETS = {}


def _quick_spec(spec):
    """The run ``spec`` (a ``RunSpec``) as ``--quick`` trains it: layer-wise pre-training for
    ``_QUICK_PRETRAIN_STEPS`` steps per layer (its init then names them), any other init as it is."""
    from ..init import parse_init

    if parse_init(spec.init).kind != "pretrain":
        return spec
    return replace(spec, init=f"{spec.init},steps={_QUICK_PRETRAIN_STEPS}")


def _train_one(config, spec, seed, group, scratch, progress, plot):
    """Train run ``spec`` (a ``RunSpec``) of ``config`` for ``seed`` into the group ``group`` of a
    results set of its own, ``scratch`` (what a worker process of :func:`_train_studies` does), and
    draw its probe-batch figures beside ``plot`` unless that is None. Returns the ``RunResult``,
    the messages the run logged and the figures drawn."""
    from .. import plots
    from ..data import load_mnist
    from ..store import finish_group, open_results, replace_group
    from .train import read_runs, read_snapshots, train_run

    key = (config.data_dir, config.dtype)
    if key not in _DATASETS:
        _DATASETS[key] = load_mnist(config.data_dir, dtype=config.dtype)
    messages = []
    with open_results(scratch) as f:
        if len(config.seeds) > 1:  # as train writes it, so that read_runs reads this seed
            attrs = dict(init=spec.init, activation=spec.activation, seeds=np.asarray([seed], np.int64))
            replace_group(f, group.rsplit("/", 1)[0], attrs, part=False)
        target = replace_group(f, group)
        result = train_run(
            target, spec, config, _DATASETS[key], seed=seed, progress=progress, log=messages.append
        )
        finish_group(target)
    figures = []
    if plot is not None:
        (snap,) = read_snapshots(scratch, read_runs(scratch, [spec.name]))
        figures = plots.plot_run_snapshots(snap, plot)
    return result, messages, figures


def _run_task(item):
    """Run ``function(*args)`` of the task ``item`` = ``(index, function, args)`` (in a worker of
    the pool, Numba and BLAS run on one thread: ``executors.process_pool``)."""
    _, function, args = item
    return function(*args)


def _warm_up(studies):
    """Compile (or load from the cache) here, on one thread, everything the runs of ``studies`` run
    (the training step of each activation, the data-driven inits), so that the worker processes
    only load it: processes compiling one function into one cache at once can corrupt it
    (numba#4807)."""
    import numba

    from .. import MLP
    from ..mlp import compile_backend

    config = studies[0][1]
    specs = {(s.init, s.activation): s for _, c in studies for s in c.run_specs}
    for activation in dict.fromkeys(a for _, a in specs):
        compile_backend(config.backend, config.dtype, activation, parallel=False)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        data = np.random.default_rng(0).random((64, 8)).astype(config.dtype)
        for init, activation in specs:
            if init.split(",")[0] in ("lsuv", "pretrain"):  # a tiny net: compiles what the init runs
                MLP([8, 8, 8, 2], activation, init, config.backend, config.dtype, data=data)
    finally:
        numba.set_num_threads(threads)


@dataclass
class _Trained:
    """What :func:`_train_studies` did: per study the ``RunResult`` list in ``train``'s order, the
    figures of the drawing tasks (in their order), each run's probe-batch figures by run name,
    and the ``time.perf_counter()`` when the last run of the first study and the last task ended."""

    results: list
    drawn: list
    run_figures: dict
    main_done: float
    all_done: float


def _train_studies(studies, h5_path, drawings, plot, processes, progress, log, spec_for=None):
    """Train every run and seed of each ``(root, config)`` of ``studies`` into ``h5_path``, draw
    each ``(plot_function, args)`` of ``drawings`` (each returns a list of files), and the
    probe-batch figures of each run's first seed of the first study beside ``plot``; return a
    :class:`_Trained`. ``spec_for``, when given, maps each run's ``RunSpec`` to the one trained
    (``--quick``: :func:`_quick_spec`).

    The runs are independent: with ``processes`` > 1 (and a backend other than cuda) they and the
    drawings run in that many single-threaded processes (the longest first), each run into a
    results set of its own in a temp folder, and this process copies each finished run into
    ``h5_path`` (:func:`fastinit.store.copy_group`) where ``train`` would write it
    (``/<root>/<run>`` or ``/<root>/<run>/seed=<s>``) and writes the line that ends ``train``'s
    progress bar (``progress``). Ctrl-C stops the workers; the runs copied so far stay.
    """
    import shutil
    import sys
    import tempfile

    from ..store import copy_group, finish_group, open_read, open_results, record_gpu, replace_group
    from .executors import in_process, process_pool

    backend = studies[0][1].backend
    pooled = processes > 1 and backend != "cuda"
    scratch = tempfile.mkdtemp(prefix="fastinit-reproduce-")
    tasks, slots = [], []
    for s, (root, config) in enumerate(studies):
        several = len(config.seeds) > 1
        for spec in config.run_specs:
            spec = spec if spec_for is None else spec_for(spec)
            for seed in config.seeds:
                group = f"/{root}/{spec.name}" + (f"/seed={seed}" if several else "")
                part = os.path.join(scratch, f"{len(tasks)}.h5")
                figures = plot if s == 0 and seed == config.seeds[0] else None
                args = (config, spec, int(seed), group, part, progress and not pooled, figures)
                tasks.append((_train_one, args))
                slots.append((s, spec, group, part))
    tasks += drawings
    slots += [None] * len(drawings)
    # Longest first, so that the processes end together on short runs (sorted is stable).
    order = sorted(range(len(tasks)), key=lambda i: _length_rank(slots[i], tasks[i]))
    by_task = [None] * len(tasks)
    left = [sum(1 for slot in slots if slot and slot[0] == s) for s in range(len(studies))]
    parents = {}  # /<root>/<run> of a run with several seeds -> its group (attrs only) and results
    run_figures = {}
    main_done = time.perf_counter()
    try:
        if pooled:
            _warm_up(studies)
            items = [(i, *tasks[i]) for i in order]
            done = process_pool(_run_task, items, processes)
        else:
            done = in_process(_run_task, [(i, *task) for i, task in enumerate(tasks)])
        with open_results(h5_path) as f:
            record_gpu(f, backend)
            try:
                for (i, _, _), out in done:
                    by_task[i] = out
                    if slots[i] is None:  # a drawing
                        continue
                    s, spec, group, part = slots[i]
                    config = studies[s][1]
                    result, messages, figures = out
                    by_task[i] = result
                    if figures:
                        run_figures[spec.name] = figures
                    if len(config.seeds) > 1:
                        parent = group.rsplit("/", 1)[0]
                        if parent not in parents:
                            seeds = np.asarray(config.seeds, np.int64)
                            attrs = dict(init=spec.init, activation=spec.activation, seeds=seeds)
                            parents[parent] = (replace_group(f, parent, attrs, part=False), [])
                        parents[parent][1].append(result)
                    with open_read(part) as source:
                        finish_group(copy_group(source[group], f))
                    os.remove(part)
                    shutil.rmtree(part + ".parts", ignore_errors=True)
                    if len(config.seeds) > 1 and len(parents[parent][1]) == len(config.seeds):
                        seeded = parents[parent][1]
                        status = "diverged" if any(r.status == "diverged" for r in seeded) else "complete"
                        parents[parent][0].attrs["status"] = status
                    left[s] -= 1
                    if s == 0 and not left[s]:
                        main_done = time.perf_counter()
                    if pooled and progress:  # the line that ends the run's progress bar in train_run
                        print(
                            f"train {group.removeprefix('/train/')}: {result.status}, "
                            f"{result.iterations_done} it, loss {result.final_train_loss:.3f}, "
                            f"acc {100 * result.final_test_accuracy:.1f}%, {result.wall_time_s:.1f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                    for message in messages:
                        log(message)
            finally:
                done.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _Trained(
        results=[[r for r, at in zip(by_task, slots) if at and at[0] == s] for s in range(len(studies))],
        drawn=[path for path, slot in zip(by_task, slots) if slot is None],
        run_figures=run_figures,
        main_done=main_done,
        all_done=time.perf_counter(),
    )


def _length_rank(slot, task):
    """0 for the longest kind of task of :func:`_train_studies`, 3 for the shortest: a drawing
    (``slot`` None; a grid of histograms), a run with layer-wise pre-training, a run that draws its
    probe-batch figures (``task``'s last argument), any other run."""
    if slot is None:
        return 0
    if slot[1].init.split(",")[0] == "pretrain":
        return 1
    return 2 if task[1][-1] is not None else 3


def _first_seeds(runs):
    """The first seed's :class:`RunResult` of each run name, in order."""
    first = {}
    for r in runs:
        first.setdefault(r.name, r)
    return list(first.values())


def _mean_runs(runs):
    """One result per run name with the final loss and test accuracy averaged over its complete seeds
    (:func:`seed_statistics`); ``runs`` itself when every name has one seed."""
    if len({r.name for r in runs}) == len(runs):
        return list(runs)
    stats = seed_statistics(runs)
    return [
        replace(r, final_train_loss=stats[r.name]["loss_mean"], final_test_accuracy=stats[r.name]["acc_mean"])
        for r in _first_seeds(runs)
    ]


def _activation_stats(h5_path, run):
    """Per-layer std and saturated (dead) fraction of a run's probe activations, first and last snapshot."""
    from .histogram import saturated_fraction
    from .train import read_activations, snapshot_choice

    chosen = snapshot_choice(h5_path, run.label, count=2)
    if not chosen:
        return None
    acts, steps = read_activations(h5_path, run.label, chosen)
    std = np.empty(acts.shape[:2])
    sat = np.empty(acts.shape[:2])
    for i in range(acts.shape[0]):
        for layer in range(acts.shape[1]):
            values = acts[i, layer]
            values = values[np.isfinite(values)]
            std[i, layer] = float(values.std()) if values.size else float("nan")
            sat[i, layer] = (
                saturated_fraction(values, run.activation)
                if run.activation in ("sigmoid", "tanh", "relu")
                else float("nan")
            )
    return {"steps": [int(s) for s in steps], "std": std, "saturated": sat}


# --------------------------------------------------------------------------- summary


def _versions():
    from ..machine import describe

    d = describe()
    return dict(d, cpus=d["cores"])


def _f(v, digits=4):
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.{digits}f}"
    return f"{v:.3g}"


def _histogram_section(histograms):
    lines = ["## Activation histograms", ""]
    for activation, res in histograms.items():
        sat = "dead %" if activation == "relu" else "saturated %"
        lines += [
            f"### {activation} ({res.layers} layers x {res.units} units, {res.samples} samples, "
            "N(0,1) input)",
            "",
            f"Per-layer std of the activations (theory: mean-field variance recursion) and {sat}.",
            "",
            "| init | "
            + " | ".join(f"layer {i + 1} std (theory)" for i in range(res.layers))
            + f" | {sat} by layer |",
            "|---|" + "---|" * res.layers + "---|",
        ]
        for run in res.runs.values():
            cells = [f"{_f(s)} ({_f(t)})" for s, t in zip(run.std, run.theory_std)]
            sat_cells = " / ".join(f"{100 * s:.1f}" for s in run.saturated)
            lines.append(f"| {run.init} | " + " | ".join(cells) + f" | {sat_cells} |")
        lines += ["", *_histogram_findings(activation, res), ""]
    return lines


def _histogram_findings(activation, res):
    out = []
    runs = res.runs
    if activation == "sigmoid":
        if "std=1" in runs:
            out.append(
                f"- std=1: {100 * runs['std=1'].saturated.mean():.0f}% of the sigmoid outputs are "
                "saturated (below 0.01 or above 0.99): gradients vanish."
            )
        if "std=0.01" in runs:
            out.append(
                f"- std=0.01: every layer collapses onto 0.5 (std at most "
                f"{_f(runs['std=0.01'].std.max())}): all units say the same thing."
            )
        if "xavier" in runs:
            x = runs["xavier"]
            out.append(
                f"- xavier: std between {_f(x.std.min())} and {_f(x.std.max())} in every layer, "
                f"{100 * x.saturated.max():.1f}% saturated at most: a healthy spread."
            )
    elif activation == "tanh" and "xavier" in runs:
        x = runs["xavier"]
        out.append(
            f"- xavier: std goes from {_f(x.std[0])} in layer 1 to {_f(x.std[-1])} in layer "
            f"{len(x.std)}; tanh is centred on 0, so the spread holds better than sigmoid's."
        )
    elif activation == "relu":
        for name in ("xavier", "he"):
            if name in runs:
                r = runs[name]
                ratio = r.std[-1] / r.std[0] if r.std[0] > 0 else float("nan")
                out.append(
                    f"- {name}: std {_f(r.std[0])} in layer 1, {_f(r.std[-1])} in layer {len(r.std)} "
                    f"(x{_f(ratio, 2)})."
                )
        if "xavier" in runs and "he" in runs:
            out.append(
                "- With ReLU half the units are zero, so Xavier's variance halves at every layer and the "
                "activations shrink with depth; He's factor 2 keeps them at the same scale."
            )
    return out


def _seeds_text(seeds):
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(str(s) for s in seeds)}"


def _train_section(runs, config, quick):
    several = len(config.seeds) > 1
    lines = [
        "## MNIST training",
        "",
        f"Network {'-'.join(str(s) for s in config.sizes)}, SGD lr {config.lr}, batch {config.batch_size}, "
        f"{config.iterations} iterations, "
        + (
            f"each run once per seed ({_seeds_text(config.seeds)}; a seed draws the weights and the "
            "mini-batch sequence, and all runs of a seed see the same sequence)"
            if several
            else f"every run on the same seeded mini-batch sequence ({_seeds_text(config.seeds)})"
        )
        + (
            f", first {config.train_limit} training and {config.test_limit} test images (quick run)"
            if quick
            else ", all 60000 training and 10000 test images"
        )
        + ".",
        f"final loss: mean mini-batch loss over the last {config.final_window} iterations; "
        "test accuracy: on the full test set after the last step.",
        "",
        "| run |"
        + (" seed |" if several else "")
        + " init | activation | status | final loss | test accuracy "
        "| wall time (s) |",
        "|---|---|---|---|---|---|---|" + ("---|" if several else ""),
    ]
    for r in runs:
        status = r.status + (f" at step {r.diverged_step}" if r.status == "diverged" else "")
        lines.append(
            f"| {r.name} |" + (f" {r.seed} |" if several else "") + f" {r.init} | {r.activation} | "
            f"{status} | {_f(r.final_train_loss)} | {100 * r.final_test_accuracy:.2f}% | "
            f"{r.wall_time_s:.1f} |"
        )
    if several:
        lines += [
            "",
            "Over the seeds (mean ± sample std of the complete runs):",
            "",
            "| run | complete runs | final loss | test accuracy |",
            "|---|---|---|---|",
        ]
        for name, s in seed_statistics(runs).items():
            lines.append(
                f"| {name} | {s['complete']}/{len(s['seeds'])} | {_f(s['loss_mean'])} ± "
                f"{_f(s['loss_std'])} | {100 * s['acc_mean']:.2f}% ± {100 * s['acc_std']:.2f}% |"
            )
    lines += ["", *_train_findings(runs, quick), ""]
    return lines


def _train_activation_section(runs, stats):
    rows = [(r, stats.get(r.name)) for r in runs if stats.get(r.name)]
    if not rows:
        return []
    n_layers = max(s["std"].shape[1] for _, s in rows)
    lines = [
        "### Hidden activations of the probe batch during training",
        "",
        "Per-layer std of the activations of a fixed batch of test images before training and at the last "
        "snapshot, and the saturated fraction at the last snapshot (ReLU: dead, exactly 0; sigmoid: < 0.01 "
        "or > 0.99; tanh: |y| > 0.99).",
        "",
        "| run | steps | "
        + " | ".join(f"layer {i + 1} std" for i in range(n_layers))
        + " | saturated/dead % by layer |",
        "|---|---|" + "---|" * n_layers + "---|",
    ]
    for r, s in rows:
        first, last = 0, len(s["steps"]) - 1
        cells = [
            f"{_f(s['std'][first, i], 3)} -> {_f(s['std'][last, i], 3)}" for i in range(s["std"].shape[1])
        ]
        sat = " / ".join(f"{100 * v:.0f}" for v in s["saturated"][last])
        lines.append(
            f"| {r.label} | {s['steps'][first]} -> {s['steps'][last]} | " + " | ".join(cells) + f" | {sat} |"
        )
    return lines + [""]


def _train_findings(runs, quick):
    """Bullets on what the numbers show; with several seeds, from the means over seeds, plus
    whether the classic ordering holds for every seed (:func:`seed_ranking`)."""
    means = _mean_runs(runs)
    by = {r.name: r for r in means}
    mean = "mean " if len(means) < len(runs) else ""
    out = []
    if quick:
        out.append("- Quick run: too few steps for the numbers below to mean much; run without --quick.")
    classic = [by[n] for n in TRAIN_INITS if n in by and math.isfinite(by[n].final_train_loss)]
    if len(classic) == len(TRAIN_INITS):
        order = sorted(classic, key=lambda r: r.final_train_loss)
        text = " < ".join(f"{r.name} ({_f(r.final_train_loss, 3)})" for r in order)
        expected = ["he", "xavier", "std=0.01"]
        match = [r.name for r in order] == expected
        out.append(
            f"- {'Mean final' if mean else 'Final'} loss orders {text}"
            + (
                ": He < Xavier < std=0.01, as in the classic figure."
                if match
                else ", NOT the classic He < Xavier < std=0.01."
            )
        )
    if mean:
        out.append(f"- Seed by seed: {seed_ranking(runs)}")
    if "std=0.01" in by:
        r = by["std=0.01"]
        if abs(r.final_train_loss - LN10) < 0.05:
            out.append(
                f"- std=0.01 stays at {_f(r.final_train_loss, 3)}, i.e. ln 10 = {LN10:.3f}, the loss of "
                "guessing uniformly among 10 classes: the signal dies in the tiny weights and the network "
                f"does not learn ({mean}test accuracy {100 * r.final_test_accuracy:.1f}%)."
            )
        else:
            out.append(f"- std=0.01 ends at {mean}loss {_f(r.final_train_loss, 3)} (ln 10 = {LN10:.3f}).")
    if "he" in by:
        r = by["he"]
        out.append(
            f"- he reaches {100 * r.final_test_accuracy:.1f}% {mean}test accuracy"
            + (" (at least 90%)." if r.final_test_accuracy >= 0.9 else ".")
        )
    if "xavier:sigmoid" in by:
        r = by["xavier:sigmoid"]
        if r.final_train_loss > 2.0:
            out.append(
                f"- xavier:sigmoid (the article read literally) barely moves: {mean}loss "
                f"{_f(r.final_train_loss, 3)} against ln 10 = {LN10:.3f}, {mean}test accuracy "
                f"{100 * r.final_test_accuracy:.1f}%. A 5-layer sigmoid network at lr 0.01 learns far "
                f"too slowly to show anything in {r.iterations_done} steps; the classic figure uses ReLU "
                "for every network."
            )
        else:
            out.append(
                f"- xavier:sigmoid ends at {mean}loss {_f(r.final_train_loss, 3)}, {mean}test accuracy "
                f"{100 * r.final_test_accuracy:.1f}%."
            )
    for r in runs:
        if r.status == "diverged":
            out.append(f"- {r.label} diverged (NaN/Inf loss) at step {r.diverged_step}.")
        elif r.status == "interrupted":
            out.append(f"- {r.label} was interrupted after {r.iterations_done} steps.")
    return out


def _history_section(runs, lr_probe, config, quick=False):
    """The data-driven inits against Xavier and He: cost, loss and accuracy, and plainly whether
    pre-training or LSUV make the sigmoid network learn at the study's lr, else at which lr."""
    by = {r.name: r for r in _mean_runs(runs)}
    cost = {}
    for r in runs:
        cost.setdefault(r.name, []).append(r.init_seconds)
    shown = [n for n in HISTORY_SIGMOID + ("he", "lsuv") if n in by]
    if not shown:
        return []
    lines = [
        "## History: layer-wise pre-training and LSUV against Xavier and He",
        "",
        f"Same network and training as above (lr {config.lr:g}, {config.iterations} iterations); init cost: "
        "the seconds computing the initial weights took (mean over seeds; the first data-driven init in a "
        "process includes compiling its kernels). Their histograms at init are the step-0 rows of "
        "`mnist-activations-<run>.png` and, for the backpropagated gradients, `mnist-gradients-<run>.png`.",
        "",
        "| run | init cost (s) | final loss | test accuracy |",
        "|---|---|---|---|",
    ]
    for n in shown:
        r = by[n]
        lines.append(
            f"| {n} | {np.mean(cost[n]):.2f} | {_f(r.final_train_loss)} | "
            f"{100 * r.final_test_accuracy:.2f}% |"
        )
    lines += [
        "",
        f"The sigmoid runs again at other learning rates ({_seeds_text(config.seeds[:1])}, "
        f"`/history/lr=<lr>/`):",
        "",
        "| lr | run | final loss | test accuracy | init cost (s) |",
        "|---|---|---|---|---|",
    ]
    for lr, probe in lr_probe.items():
        for r in probe:
            lines.append(
                f"| {lr:g} | {r.name} | {_f(r.final_train_loss)} | {100 * r.final_test_accuracy:.2f}% | "
                f"{r.init_seconds:.2f} |"
            )
    lines += ["", *_history_findings(by, lr_probe, config, quick), ""]
    return lines


def _learns(run):
    return run.status == "complete" and run.final_train_loss < RESCUED_LOSS


def _history_findings(by, lr_probe, config, quick=False):
    """Bullets on the history runs: whether pre-training and LSUV rescue the sigmoid network (not
    judged in a quick run, whose runs and pre-training are too short) and LSUV against He."""
    from ..init import parse_init

    out = []
    base = by.get("xavier:sigmoid")
    if quick:
        steps = dict(parse_init("pretrain").options)["steps"]
        out.append(
            f"- Quick run: {config.iterations} training steps, and {_QUICK_PRETRAIN_STEPS} pre-training "
            f"steps per layer instead of {steps}, are too few to judge whether layer-wise pre-training or "
            "LSUV rescue the sigmoid network; run without --quick."
        )
    for n, what in (("pretrain:sigmoid", "Layer-wise pre-training"), ("lsuv:sigmoid", "LSUV")):
        if n not in by or quick:
            continue
        r = by[n]
        verdict = "rescues" if _learns(r) else "does NOT rescue"
        text = (
            f"- {what} {verdict} the 5-layer sigmoid network at lr {config.lr:g} in {config.iterations} "
            f"steps: loss {_f(r.final_train_loss, 3)}"
            + (f" against Xavier's {_f(base.final_train_loss, 3)}" if base else "")
            + f" (ln 10 = {LN10:.3f})."
        )
        if not _learns(r):
            first = next(
                (lr for lr, probe in lr_probe.items() for p in probe if p.name == n and _learns(p)), None
            )
            text += (
                f" It learns from lr {first:g} (of {', '.join(f'{lr:g}' for lr in lr_probe)})"
                if first
                else f" Nor at lr {', '.join(f'{lr:g}' for lr in lr_probe)}"
            )
            xavier_first = next(
                (
                    lr
                    for lr, probe in lr_probe.items()
                    for p in probe
                    if p.name == "xavier:sigmoid" and _learns(p)
                ),
                None,
            )
            text += f"; Xavier from lr {xavier_first:g}." if xavier_first else "; Xavier at none of them."
        out.append(text)
    if "lsuv" in by and "he" in by:
        he, ls = by["he"], by["lsuv"]
        out.append(
            f"- On the ReLU network LSUV ends at loss {_f(ls.final_train_loss, 3)} and "
            f"{100 * ls.final_test_accuracy:.1f}% against He's {_f(he.final_train_loss, 3)} and "
            f"{100 * he.final_test_accuracy:.1f}%."
        )
    return out


def summary_markdown(result, config, quick=False):
    """The text of ``summary.md`` for a :class:`ReproduceResult`."""
    v = _versions()
    lines = [
        "# fastinit reproduce: summary" + (" (QUICK smoke run)" if quick else ""),
        "",
        f"Backend {config.backend}, dtype {config.dtype}, {_seeds_text(config.seeds)}. "
        f"fastinit {v['fastinit']}, Python {v['python']}, NumPy {v['numpy']}, Numba {v['numba']}, "
        f"h5py {v['h5py']}; {v['platform']}, {v['cpus']} CPUs ({v['cpu_model']}, {v['host_isa']}).",
        "",
        "Wall times: " + ", ".join(f"{k} {t:.1f} s" for k, t in result.wall_times.items()) + ".",
        "",
        f"Results: `{os.path.basename(result.h5_path)}` (`/histogram/<activation>/<init>/`, "
        + ("`/train/<run>/seed=<s>/`). " if len(config.seeds) > 1 else "`/train/<run>/`). ")
        + "Figures: "
        + ", ".join(f"`{os.path.basename(p)}`" for p in result.figures)
        + ".",
        "",
        *_histogram_section(result.histograms),
        *_train_section(result.runs, config, quick),
        *_train_activation_section(_first_seeds(result.runs), result.activation_stats),
        *_history_section(result.runs, result.lr_probe, config, quick),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main_exit_code(result):
    """0 when every run completed, 3 when a run diverged."""
    return 3 if result.diverged else 0
