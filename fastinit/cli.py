"""The ``fastinit`` command line: a thin layer over functions you can also call from Python.

Adding a command: write ``_add_<cmd>(subparsers)`` (declares the subparser
and its options, with help text and examples) and ``_run_<cmd>(args) -> int``
(validates what argparse cannot, calls the library, prints), then append
``(_add_<cmd>, _run_<cmd>)`` to ``COMMANDS``. Raise ``UsageError`` for a bad
option value; let library errors (``ValueError``, ``BackendError``,
``StoreError``, ``DataError``, ...) propagate: :func:`main` turns every known
error into one line ``fastinit: error: ...`` on stderr and an exit status
(:func:`fastinit.errors.exit_status_for`: 2 for bad usage, 1 when the run itself
failed; 130 on Ctrl-C, 143 on SIGTERM and 129 on SIGHUP, which are handled like
Ctrl-C by :mod:`fastinit.signals`). Set ``FASTINIT_DEBUG=1`` to get the full
traceback instead.

Validate every path (``--out``, ``--plot``) before the expensive work starts,
so a typo fails in a second and never leaves a half-written file; where results
and figures go by default is :mod:`fastinit.outputs`'s choice.
"""

import argparse
import dataclasses
import os
import shlex
import sys

from . import __version__
from .errors import EXIT_FAILED, EXIT_USAGE, UsageError, exit_status_for, one_line_message
from .outputs import DEFAULT_OUT, default_figure, why_unwritable, write_text
from .signals import (
    Terminated,
    exit_status,
    ignore_stop_signals,
    numba_compiles_hold_stops,
    stop_signals_raise,
)

__all__ = ["main", "run", "build_parser", "UsageError"]

EXIT_OK = 0

#: The hidden activations of ``theory`` and ``sweep``: what the kernels compute.
_NETWORK_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises UsageError instead of printing usage and exiting, and formats
    help with :class:`_Formatter`."""

    def __init__(self, *args, formatter_class=None, **kwargs):
        super().__init__(*args, formatter_class=formatter_class or _Formatter, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and appends "(default: ...)" where a default says something."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
        ):
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(str(d) for d in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


_INT64_MAX = 2**63 - 1  # what HDF5 attributes and NumPy's seeding take


def _int_at_least(minimum, what):
    """An argparse type: an integer in [``minimum``, 2**63 - 1], else a message saying ``what``
    was expected."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        if value > _INT64_MAX:
            raise argparse.ArgumentTypeError(f"{text} is too large: at most 2**63 - 1 = {_INT64_MAX}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_seed = _int_at_least(0, "non-negative")


def _parsed_by(parse, text):
    """``text``, once ``parse(text)`` accepts it; its ValueError becomes argparse's error."""
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _init_spec(text):
    from .init import parse_init

    return _parsed_by(parse_init, text)


def _given_once(values, option):
    """Raise UsageError when a value of ``option`` (e.g. ``--init``) is given twice."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise UsageError(f"argument {option}: {value!r} is given twice")


def _config(cls, args, **given):
    """A config dataclass ``cls`` from the options of ``args`` named like its fields, and ``given``."""
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**dict(options, **given))


def _progress_wanted(args):
    """Progress unless ``-q``: a bar on a terminal, plain lines on stderr otherwise."""
    return not getattr(args, "quiet", False)


def _log(args):
    """One-line messages to stderr (``fastinit: ...``), or nothing with ``-q``."""
    if getattr(args, "quiet", False):
        return lambda message: None
    return lambda message: print(f"fastinit: {message}", file=sys.stderr, flush=True)


def _say(args, text):
    if not getattr(args, "quiet", False):
        print(text)


# --------------------------------------------------------------------------- histogram

HISTOGRAM_EPILOG = """\
examples:
  fastinit histogram
      the classic experiment: sigmoid, 5 layers of 100 units, 1000 samples,
      inits std=10 std=1 std=0.01 std=0 xavier he; writes
      fastinit-results/fastinit.h5 and fastinit-results/histogram-sigmoid.png
  fastinit histogram --activation relu --init xavier he --plot relu.png
  fastinit histogram --activation tanh --init "xavier,gain=tanh" lecun --backend numpy --no-plot
  fastinit show fastinit-results/fastinit.h5

init names: std=<sigma>, uniform=<a>, truncated=<sigma>, zeros, orthogonal,
xavier|glorot, he|kaiming, lecun, each also as <name>_uniform or
<name>_truncated; options after commas: gain=<number|activation>,
mode=fan_in|fan_out|fan_avg (e.g. he,mode=fan_out).

Each run replaces /histogram/<activation>/<init> in --out and keeps every
other group in the file. The update is atomic: a failed or interrupted run
leaves the previous file as it was.
"""


def _add_histogram(sub):
    from .experiments.histogram import ACTIVATIONS, DEFAULT_INITS

    p = sub.add_parser(
        "histogram",
        help="activation histograms per layer for several init schemes (the classic figure)",
        description="Push N(0,1) samples through a deep MLP with no bias and record every layer's "
        "activations for each init scheme: per-layer mean, std, saturated fraction, "
        "a mean-field theory std, the activations (and, unless --no-gradients, each layer's "
        "backpropagated gradient at init) in HDF5 and the figures.",
        epilog=HISTOGRAM_EPILOG,
    )
    p.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid", help="hidden-layer activation")
    p.add_argument(
        "--init",
        nargs="+",
        type=_init_spec,
        default=list(DEFAULT_INITS),
        metavar="NAME",
        help="init schemes to compare, one figure row each",
    )
    p.add_argument("--layers", type=_positive_int, default=5, help="number of layers")
    p.add_argument("--units", type=_positive_int, default=100, help="units per layer (and input features)")
    p.add_argument("--samples", type=_positive_int, default=1000, help="input samples drawn from N(0, 1)")
    p.add_argument(
        "--seed", type=_seed, default=0, help="random seed (same seed, same numbers on every backend)"
    )
    p.add_argument(
        "--bias-std",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="draw each layer's biases from N(0, S^2) (the theory's sigma_b^2 = S^2); default 0",
    )
    _add_backend_options(p)
    p.add_argument(
        "--gradients",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store each layer's backpropagated gradient at init (dL/d pre-activation, as "
        "/histogram/<activation>/<init>/gradients) and draw its histograms, "
        "<figure stem>-gradient-histogram.png. On by default: it shows where the gradients "
        "vanish, for about a second more at the default sizes; --no-gradients when the file's "
        "size matters (the gradients about double it)",
    )
    _add_out_option(p)
    _add_plot_options(
        p, "the figure (.png, .pdf or .svg); default: <out without .h5>-histogram-<activation>.png"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no table")


def _add_backend_options(p, backend="cpu", dtype="float32"):
    """``--backend`` (numpy, cpu or cuda) and ``--dtype``, with these defaults."""
    from .backends import BACKENDS

    p.add_argument("--backend", choices=BACKENDS, default=backend, help="kernel backend")
    _add_dtype_option(p, dtype)


def _add_dtype_option(p, default="float32"):
    """``--dtype`` float32 or float64."""
    p.add_argument("--dtype", choices=("float32", "float64"), default=default, help="floating-point type")


def _add_seeds_option(p, default, help):
    """``--seeds S [S ...]`` (alias ``--seed``): one run per seed, ``default`` when not given."""
    p.add_argument(
        "--seeds",
        "--seed",
        dest="seeds",
        type=_seed,
        nargs="+",
        default=list(default),
        metavar="S",
        help=help,
    )


def _add_out_option(p):
    """``--out FILE.h5``, the results file (default ``fastinit-results/fastinit.h5``)."""
    p.add_argument(
        "--out", default=DEFAULT_OUT, metavar="FILE.h5", help="HDF5 results file (created or updated)"
    )


def _add_plot_options(p, what):
    """``--plot [FILE]`` (the default file when FILE is left out) and ``--no-plot``."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--plot", nargs="?", const="", metavar="FILE", help=f"{what}; drawn unless --no-plot")
    group.add_argument("--no-plot", action="store_true", help="do not draw the figure")


def _check_writable(path):
    """``path`` (``--md``, ``--json``), once a file can be written there; UsageError if not."""
    reason = why_unwritable(path)
    if reason:
        raise UsageError(reason)
    return path


def _figure(args, out, name, suffix=None):
    """The checked figure file of a command writing ``out``, or None for --no-plot: ``--plot``,
    else :func:`fastinit.outputs.default_figure`. Raises ``PlotError`` for a path that cannot be
    written."""
    if args.no_plot:
        return None
    from .plots import check_figure_path  # imports matplotlib: only when a figure is asked for

    return check_figure_path(args.plot or default_figure(out, name, suffix))


def _run_histogram(args):
    from .experiments.histogram import HistogramConfig, format_table, run, write
    from .store import open_results, results_file

    _given_once(args.init, "--init")
    # An unknown init, or cuda without a GPU, fails before any file is touched.
    config = _config(HistogramConfig, args, inits=tuple(args.init)).validate()
    out = results_file(args.out)
    plot = _figure(args, out, f"histogram-{args.activation}")
    results = run(config, progress=_progress_wanted(args))
    with open_results(out) as f:
        groups = write(f, results)
    _say(args, format_table(results))
    _say(args, f"wrote {len(groups)} group(s) under /histogram/{args.activation} to {out}")
    if plot is not None:
        from .plots import plot_histogram_figures

        for path in plot_histogram_figures(results, plot):
            _say(args, f"wrote figure {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- theory

THEORY_EPILOG = """\
examples:
  fastinit theory                               tanh, sb2 = 0.05: the ordered and chaotic phases
  fastinit theory --activation relu --sb2 0     the edge of chaos is sw2 = 2: He's init
  fastinit theory --sw2 1 1.5 1.76 2 3 --out theory.h5

For weights drawn with variance sw2 / fan_in and biases with variance sb2, in
the infinite-width limit (Poole et al. 2016; Schoenholz et al. 2017): q* is the
fixed point of the pre-activation variance, chi1 decides the phase (ordered
below 1, chaotic above), c* is where two inputs' correlation goes, and xi_c
is how many layers information survives; networks train up to about 6 xi_c.
"""


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _add_theory(sub):
    p = sub.add_parser(
        "theory",
        help="mean-field theory: q*, chi1, c*, xi_c and the edge of chaos",
        description="The mean-field theory of signal propagation for a range of weight variances.",
        epilog=THEORY_EPILOG,
    )
    p.add_argument("--activation", choices=_NETWORK_ACTIVATIONS, default="tanh")
    p.add_argument("--sb2", type=_non_negative_float, default=0.05, help="bias variance sigma_b^2")
    p.add_argument(
        "--sw2",
        type=_non_negative_float,
        nargs="+",
        metavar="SW2",
        help="weight variances sigma_w^2 (times 1/fan_in); default: 1 to 4 in steps of 0.25",
    )
    p.add_argument("--out", metavar="FILE.h5", help="also write the table to /theory/<activation>/sb2=<sb2>/")
    p.add_argument("-q", "--quiet", action="store_true", help="no table")


def _run_theory(args):
    from .experiments import meanfield
    from .store import open_results, results_file

    sw2 = tuple(args.sw2 or meanfield.DEFAULT_SW2)
    config = meanfield.TheoryConfig(args.activation, args.sb2, sw2).validate()
    out = results_file(args.out) if args.out else None
    result = meanfield.run(config)
    _say(args, result.format_table())
    if out is not None:
        with open_results(out) as f:
            where = meanfield.write(f, result)
        _say(args, f"wrote {where} to {out}")
    return EXIT_OK


# --------------------------------------------------------------------------- show

SHOW_EPILOG = """\
examples:
  fastinit show                                   (default: fastinit-results/fastinit.h5)
  fastinit show fastinit-results/fastinit.h5 /histogram/sigmoid
  fastinit show results.h5 --all-attrs

Groups holding per-layer statistics (several short 1-D datasets of the same
length, e.g. mean, std, saturated) are also printed as a table.
"""


def _add_show(sub):
    p = sub.add_parser(
        "show",
        help="print what a results file holds: groups, shapes, per-layer stats",
        description="Print the contents of a fastinit HDF5 results file as a readable tree, "
        "with per-layer statistics as tables.",
        epilog=SHOW_EPILOG,
    )
    p.add_argument(
        "file",
        metavar="FILE.h5",
        nargs="?",
        default=DEFAULT_OUT,
        help=f"results file (default: {DEFAULT_OUT})",
    )
    p.add_argument("group", nargs="?", default="/", help="only show this group and what it holds")
    p.add_argument(
        "--all-attrs", action="store_true", help="show every attribute (default: the informative ones)"
    )
    p.add_argument("--no-stats", action="store_true", help="tree only, no per-layer tables")


def _run_show(args):
    from .show import describe, format_info

    print(format_info(describe(args.file), args.group, all_attrs=args.all_attrs, stats=not args.no_stats))
    return EXIT_OK


# --------------------------------------------------------------------------- bench-report

BENCH_EPILOG = """\
examples:
  pytest bench --benchmark-only --benchmark-json bench.json
  fastinit bench-report bench.json
  fastinit bench-report bench.json --md BENCH.md --plot bench.png
  pytest bench --benchmark-only --benchmark-autosave && fastinit bench-report .benchmarks
"""


def _add_bench_report(sub):
    p = sub.add_parser(
        "bench-report",
        help="turn a pytest-benchmark JSON file into a markdown table and a figure",
        description="Summarise a saved pytest-benchmark run (--benchmark-json or "
        "--benchmark-autosave): per group, each backend's mean and median time, "
        "ops/s, GFLOP/s or GB/s and the speed-up over numpy from the same file.",
        epilog=BENCH_EPILOG,
    )
    p.add_argument(
        "json",
        metavar="BENCH.json",
        help="pytest-benchmark JSON file, or a folder such as .benchmarks (its newest .json)",
    )
    p.add_argument("--md", metavar="FILE.md", help="also write the markdown table to this file")
    p.add_argument("--plot", metavar="FILE.png", help="write a figure of speed-ups over numpy per group")


def _run_bench_report(args):
    from .benchreport import format_markdown, load_benchmarks, plot_benchmarks
    from .plots import check_figure_path

    if args.plot:
        check_figure_path(args.plot)
    if args.md:
        _check_writable(args.md)
    report = load_benchmarks(args.json)
    text = format_markdown(report)
    print(text)
    if args.md:
        write_text(args.md, text + "\n")
        print(f"wrote {args.md}", file=sys.stderr)
    if args.plot:
        plot_benchmarks(report, args.plot)
        print(f"wrote figure {args.plot}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- train

TRAIN_EPILOG = """\
examples:
  fastinit train
      the classic experiment: 784-100-100-100-100-10 ReLU on MNIST, inits
      std=0.01 xavier he, SGD lr 0.01, batch 128, 2000 iterations, backend cpu;
      writes fastinit-results/fastinit.h5 and, beside it, mnist-loss.png,
      mnist-accuracy.png, mnist-activations-<run>.png and mnist-gradients-<run>.png
  fastinit train --init he xavier:sigmoid --iterations 500 --plot mnist-loss.png
  fastinit train --seeds 0 1 2 3 4
      each init once per seed: mean +- std over the seeds, and whether
      he < xavier < std=0.01 holds for every seed
  fastinit train --no-plot -q              (no figures, no progress)
  fastinit train --init std=10 he          (std=10 diverges: reported, exit status 3)
  fastinit train --data-dir ~/fashion-mnist (same IDX file names; or FASTINIT_DATA_DIR)

Each run is INIT or INIT:ACTIVATION and writes /train/<run>/ in --out (loss,
grad_norm, test_accuracy with eval_steps, activations and gradients of a fixed
probe batch with snapshot_steps, attrs status/final_train_loss/final_test_accuracy/
wall_time_s/seed/config); with several --seeds, each seed's run goes to
/train/<run>/seed=<s>/ and the loss and accuracy figures draw the mean over
seeds with a min-max band. Other groups in the file stay. Ctrl-C keeps what
was done, with the run marked interrupted. Exit status 3 when a run diverged.
"""

EXIT_DIVERGED = 3


def _run_spec(text):
    from .experiments.train import parse_run

    return _parsed_by(parse_run, text)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_train(sub):
    from fastinit.kernels import ACTIVATIONS

    from .experiments.train import DEFAULT_INITS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train the 5-layer MLP on MNIST once per init scheme and seed (loss curves)",
        description="Train the same MLP on MNIST once per init scheme and seed, every init on the "
        "same seeded mini-batches; stream loss, gradient norms, test accuracy and "
        "activations to HDF5.",
        epilog=TRAIN_EPILOG,
    )
    p.add_argument(
        "--init",
        nargs="+",
        type=_run_spec,
        default=list(DEFAULT_INITS),
        metavar="RUN",
        help="runs: INIT or INIT:ACTIVATION (e.g. xavier:sigmoid)",
    )
    p.add_argument(
        "--activation", choices=ACTIVATIONS, default=d.activation, help="default hidden activation"
    )
    p.add_argument("--iterations", type=_positive_int, default=d.iterations, help="SGD steps per run")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="mini-batch size")
    p.add_argument("--lr", type=_positive_float, default=d.lr, help="learning rate")
    _add_seeds_option(
        p, d.seeds, "seeds of the weights and of the batch sequence: each run is trained once per seed"
    )
    _add_backend_options(p, d.backend, d.dtype)
    p.add_argument(
        "--eval-every",
        type=_positive_int,
        default=d.eval_every,
        help="steps between test-accuracy evaluations",
    )
    p.add_argument(
        "--snapshot-every",
        type=_positive_int,
        default=d.snapshot_every,
        help="steps between snapshots of the probe batch's activations and gradients",
    )
    p.add_argument(
        "--probe-samples",
        type=_positive_int,
        default=d.probe_samples,
        help="test images in the activation probe batch",
    )
    p.add_argument(
        "--train-limit", type=_positive_int, metavar="N", help="use only the first N training images"
    )
    p.add_argument("--test-limit", type=_positive_int, metavar="N", help="use only the first N test images")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="read the four MNIST-format IDX files from DIR (default: $FASTINIT_DATA_DIR or the "
        "shipped MNIST)",
    )
    _add_out_option(p)
    _add_plot_options(
        p,
        "the loss figure, with FILE-accuracy and FILE-activations-<run> beside it; default: "
        "<out without .h5>-loss.png",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no table")


def _run_train(args):
    from .experiments.train import TrainConfig, format_results, read_runs, read_snapshots, train
    from .store import results_file

    _given_once(args.init, "--init")
    out = results_file(args.out)
    plot = _figure(args, out, "mnist-loss", "loss")
    config = TrainConfig(
        runs=tuple(args.init),
        activation=args.activation,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        seeds=tuple(args.seeds),
        backend=args.backend,
        dtype=args.dtype,
        eval_every=args.eval_every,
        snapshot_every=args.snapshot_every,
        probe_samples=args.probe_samples,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        data_dir=args.data_dir,
    )
    results = train(config, out, progress=_progress_wanted(args), log=_log(args))
    _say(args, format_results(results))
    _say(args, f"wrote {len(results)} run(s) under /train to {out}")
    if plot is not None:
        from .plots import plot_train_figures

        runs = read_runs(out, [r.name for r in results])
        for path in plot_train_figures(runs, read_snapshots(out, runs), plot):
            _say(args, f"wrote figure {path}")
    diverged = [r.label for r in results if r.status == "diverged"]
    if diverged:
        print(
            f"fastinit: {len(diverged)} run(s) diverged (NaN/Inf loss): {', '.join(diverged)}",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    return EXIT_OK


# --------------------------------------------------------------------------- reproduce

REPRODUCE_EPILOG = """\
examples:
  fastinit reproduce                      the whole study into fastinit-results/ (about 2 min on 2 cores)
  fastinit reproduce --out study --quick  a smoke run in seconds (numbers mean little)
  fastinit reproduce --seed 0             one seed: the MNIST part takes a third of the time

Writes DIR/fastinit.h5 (/histogram/... and /train/...), the figures as PNG and
DIR/summary.md: per-layer activation std and saturation per init, final loss
and test accuracy per MNIST run (std=0.01, xavier, he and the literal
xavier:sigmoid) and seed, their mean +- std over the seeds and whether
he < xavier < std=0.01 holds for every seed, wall times, backend and
versions, and what the numbers show.
"""


def _add_reproduce(sub):
    from .experiments.reproduce import DEFAULT_OUT as REPRODUCE_OUT
    from .experiments.reproduce import REPRODUCE_SEEDS

    p = sub.add_parser(
        "reproduce",
        help="the whole study: histograms, MNIST runs, figures and summary.md",
        description="Run the activation histograms (sigmoid, tanh, relu) and the MNIST "
        "comparison, then write the HDF5 file, the figures and summary.md.",
        epilog=REPRODUCE_EPILOG,
    )
    p.add_argument("--out", default=REPRODUCE_OUT, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    _add_backend_options(p)
    _add_seeds_option(
        p, REPRODUCE_SEEDS, "seeds: each MNIST run is trained once per seed; the histograms use the first"
    )
    p.add_argument(
        "--data-dir", metavar="DIR", help="MNIST-format IDX files to use instead of the shipped MNIST"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _run_reproduce(args):
    from .experiments.reproduce import main_exit_code, reproduce

    result = reproduce(
        args.out,
        quick=args.quick,
        backend=args.backend,
        dtype=args.dtype,
        seeds=args.seeds,
        data_dir=args.data_dir,
        progress=_progress_wanted(args),
        log=_log(args),
    )
    _say(args, f"summary: {result.summary_path}")
    return EXIT_DIVERGED if main_exit_code(result) else EXIT_OK


# --------------------------------------------------------------------------- profile

PROFILE_EPILOG = """\
examples:
  fastinit profile                           every available backend (cuda only on a real GPU)
  fastinit profile --backends numpy cpu --sizes 256 512 --json prof.json --plot prof.png
  fastinit profile --backends cuda --quick   exercise the cuda path (on the simulator: timings meaningless)

Times matmul (MLP shapes and squares), sigmoid/tanh/relu, softmax
cross-entropy, the SGD update and the full training step; each result is
checked against the NumPy reference before it is timed, warm-up excluded,
the GPU synchronised. Writes /profile/<dtype>/<backend> into --out.
"""


def _add_profile(sub):
    from .backends import BACKENDS

    p = sub.add_parser(
        "profile",
        help="time every kernel and the training step on numpy, cpu and cuda",
        description="Profile the kernels and the MLP training step per backend: median time, "
        "GFLOP/s or GB/s, speed-up over numpy; for CUDA kernel time and time with "
        "host<->device transfers.",
        epilog=PROFILE_EPILOG,
    )
    p.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        metavar="NAME",
        help="backends to profile (default: all available; cuda never on the simulator unless named)",
    )
    p.add_argument(
        "--kernels",
        nargs="+",
        metavar="NAME",
        choices=("matmul", "sigmoid", "tanh", "relu", "softmax_xent", "sgd_update", "train_step"),
        help="only these kernels (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and short timings (tests, smoke runs)")
    _add_dtype_option(p)
    p.add_argument(
        "--sizes",
        nargs="+",
        type=_positive_int,
        metavar="N",
        help="matmul square sizes (default 1024 2048 4096; --quick 32 64)",
    )
    p.add_argument(
        "--budget",
        type=_positive_float,
        metavar="SECONDS",
        help="timing seconds per case and backend (default 0.5; --quick 0.02)",
    )
    _add_out_option(p)
    p.add_argument("--json", metavar="FILE.json", help="also write the records as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="figure: throughput against size per backend")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines and no table")


def _run_profile(args):
    from .experiments.profile import ProfileConfig, format_table, run, write, write_json
    from .plots import check_figure_path, plot_profile
    from .store import open_results, results_file

    _given_once(args.backends or (), "--backends")
    out = results_file(args.out)
    if args.plot:
        check_figure_path(args.plot)
    if args.json:
        _check_writable(args.json)
    result = run(_config(ProfileConfig, args), progress=_progress_wanted(args))
    with open_results(out) as f:
        paths = write(f, result)
    _say(args, format_table(result))
    _say(args, f"wrote {', '.join(paths)} to {out}")
    if args.json:
        write_json(args.json, result)
        _say(args, f"wrote {args.json}")
    if args.plot:
        plot_profile(result.records, args.plot)
        _say(args, f"wrote figure {args.plot}")
    return EXIT_OK


# --------------------------------------------------------------------------- main

# --------------------------------------------------------------------------- sweep

SWEEP_EPILOG = """\
examples:
  fastinit sweep                              a small tanh grid (12 cells, about 10 s on 2 cores)
  fastinit sweep --preset schoenholz          the phase diagram of Schoenholz et al. 2017 (10 min, 2 cores)
  fastinit sweep --preset schoenholz-time     63 of its cells, evaluated at 100 to 3000 steps (<30 min)
  fastinit sweep --preset schoenholz --checkpoints 100 300 800 --name s3
  fastinit sweep --sw2 1 2 3 --depths 10 40 --seeds 0 1 --name mine
  fastinit sweep --preset schoenholz --workers 4               a local Dask cluster of 4 processes
  fastinit sweep --preset schoenholz --scheduler tcp://10.0.0.5:8786   an existing Dask cluster

Each cell trains an MLP of DEPTH hidden tanh (or --activation) layers of
--width units on MNIST, weights N(0, SW2 / fan_in), biases N(0, --sb2), plain
SGD, and records train loss and accuracy, test accuracy and divergence in
/sweep/<name>/ of --out (arrays shaped (n_sw2, n_depths, n_seeds)). Options
given with --preset override the preset's values.

Training time: --checkpoints S1 S2 ... evaluates every cell after each of
those steps within its one run (--steps defaults to the largest), stores
/sweep/<name>/checkpoints/<metric> with a trailing checkpoint axis, fits n in
"deepest trainable depth = n xi_c" per phase (ordered: chi1 < 1, chaotic:
chi1 > 1) and checkpoint, prints n(t) and draws it against the steps beside
the phase diagram (<figure>-steps.png). Caveats, printed too: the boundary is
a 0.5 cut of the mean train accuracy, from few seeds, at width 100, with
inputs (pixels / 255) whose variance starts below q*, resolved to the grid's
depth step. For ReLU at sb2 = 0, xi_c is infinite: rows are compared with
the variance depth scale xi_q instead.

Stopping and resuming: the finished cells are saved every 10 s and on Ctrl-C;
run the same command again and only the missing cells run (a grid that grew
keeps what it shares with the stored one). Different settings under the same
--name are refused: choose another --name or add --restart.

Where cells run: by default one single-threaded cell per core in a pool of
local processes; --executor engine runs one cell at a time on all cores
instead. --workers N starts a local Dask cluster; --scheduler sends the
cells to a running one ('dask scheduler', then 'dask worker tcp://HOST:8786'
on each machine, with fastinit installed). Only this process writes --out.
A cell's numbers do not depend on where it ran.
"""


def _add_sweep(sub):
    from .experiments.sweep import PRESETS

    p = sub.add_parser(
        "sweep",
        help="train a grid over sigma_w^2 x depth x seed: the trainability phase diagram",
        description="Train an MLP for every (sigma_w^2, depth, seed) of a grid on MNIST and draw "
        "where deep networks stop training, against the mean-field theory's 6 xi_c.",
        epilog=SWEEP_EPILOG,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named grid (the options below override it)")
    p.add_argument(
        "--sw2",
        type=_positive_float,
        nargs="+",
        metavar="SW2",
        help="weight variances sigma_w^2 (default 1 1.75 2.5 4; schoenholz: 1 to 4 by 0.25)",
    )
    p.add_argument(
        "--depths",
        type=_positive_int,
        nargs="+",
        metavar="D",
        help="numbers of hidden layers (default 5 20 50; schoenholz: 5 to 100)",
    )
    p.add_argument(
        "--seeds", type=_seed, nargs="+", metavar="S", help="seeds: one run per seed in every cell"
    )
    p.add_argument("--sb2", type=_non_negative_float, help="bias variance sigma_b^2 (default 0.05)")
    p.add_argument("--activation", choices=_NETWORK_ACTIVATIONS, help="hidden activation (default tanh)")
    p.add_argument("--width", type=_positive_int, help="units per hidden layer (default 100)")
    p.add_argument("--steps", type=_positive_int, help="SGD steps per cell (default 300; schoenholz: 800)")
    p.add_argument("--lr", type=_positive_float, help="learning rate (default 0.005; schoenholz: 0.01)")
    p.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default 128)")
    p.add_argument(
        "--checkpoints",
        type=_positive_int,
        nargs="+",
        metavar="STEP",
        help="also evaluate every cell after these steps, in the same run (--steps defaults to "
        "the largest); schoenholz-time: 100 300 1000 3000",
    )
    p.add_argument(
        "--eval-samples",
        type=_positive_int,
        metavar="N",
        help="training and test images each evaluation uses (default 10000; schoenholz-time: 2000)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="MNIST-format IDX files (on a cluster: a folder every worker can read)",
    )
    p.add_argument(
        "--name", help="the sweep's group, /sweep/<name> (default: the preset's name, else 'sweep')"
    )
    _add_out_option(p)
    p.add_argument(
        "--restart", action="store_true", help="discard a stored sweep of this name and start over"
    )
    p.add_argument(
        "--threshold",
        type=_positive_float,
        default=0.5,
        help="mean train accuracy from which a network counts as trainable",
    )
    p.add_argument(
        "--executor",
        choices=("pool", "engine"),
        default="pool",
        help="pool: one single-threaded cell per process; engine: one cell at a time on all cores",
    )
    p.add_argument(
        "--processes", type=_positive_int, metavar="N", help="processes of the pool (default: cores)"
    )
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the cells on this Dask cluster")
    cluster.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="start a local Dask cluster of N worker processes and run the cells on it",
    )
    _add_plot_options(
        p,
        "the phase diagram; default: fastinit-results/sweep-<name>.png, or "
        "<out without .h5>-sweep-<name>.png",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")


def _run_sweep(args):
    from dataclasses import replace

    from .experiments.sweep import PRESETS, SweepConfig, format_summary, sweep
    from .store import results_file

    config = SweepConfig(**PRESETS.get(args.preset, {}))
    given = {
        k: getattr(args, k)
        for k in (
            "sw2",
            "depths",
            "seeds",
            "sb2",
            "activation",
            "width",
            "steps",
            "lr",
            "batch_size",
            "data_dir",
            "checkpoints",
            "eval_samples",
        )
        if getattr(args, k) is not None
    }
    if args.checkpoints and args.steps is None:
        given["steps"] = max(args.checkpoints)
    elif args.checkpoints and max(args.checkpoints) > args.steps:
        raise UsageError(f"argument --checkpoints: {max(args.checkpoints)} is beyond --steps {args.steps}")
    config = replace(
        config, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    ).validate()
    name = args.name or args.preset or "sweep"
    out = results_file(args.out)
    plot = _figure(args, out, f"sweep-{name}")
    result = sweep(
        config,
        out,
        name,
        scheduler=args.scheduler,
        workers=args.workers,
        processes=args.processes,
        executor=args.executor,
        restart=args.restart,
        progress=_progress_wanted(args),
        log=_log(args),
    )
    _say(args, format_summary(result, args.threshold))
    _say(args, f"wrote /sweep/{name} to {out}")
    if plot is not None:
        from .plots import plot_sweep, plot_sweep_steps, sweep_steps_path

        plot_sweep(result, plot, args.threshold)
        _say(args, f"wrote figure {plot}")
        if result.config.checkpoints:
            _say(args, f"wrote figure {plot_sweep_steps(result, sweep_steps_path(plot), args.threshold)}")
    return EXIT_OK


# --------------------------------------------------------------------------- spectrum

SPECTRUM_EPILOG = """\
examples:
  fastinit spectrum
      tanh and ReLU, Gaussian and orthogonal weights, depths 8 32 128, width
      200, at the edge of chaos (tanh: the point with q* = 1/64); writes
      /spectrum/<activation>-<weights> to fastinit-results/fastinit.h5 and
      fastinit-results/spectrum.png
  fastinit spectrum --activation tanh --q-star 1 --depths 16 64
  fastinit spectrum --activation tanh --sw2 1.76 --sb2 0.05 --weights orthogonal

  fastinit spectrum --train
      learning speed under dynamical isometry: tanh networks of depths 32
      and 64, width 100, at the edge of chaos with q* = 1/64, trained on
      MNIST (SGD lr 0.05, batch 128) from orthogonal and from Gaussian
      weights, seeds 0 1 2 with the same mini-batches; the steps each takes
      to reach 90% train accuracy (first 1000 training images, measured
      every 25 steps, up to 1000); writes /spectrum/training and
      spectrum-training.png (a few minutes on 2 cores)
  fastinit spectrum --train --depths 16 --seeds 0 --max-steps 300

The Jacobian J = dx_L / dx_0 of a fresh network at an input from the
fixed-point distribution, as the product of D_l W_l (D_l = diag(phi'(h_l))),
its singular values by numpy.linalg.svd in float64. At the edge of chaos the
mean of their squares is 1 at any depth (Pennington, Schoenholz and Ganguli
2017); their variance grows like L (mu2/mu1^2 - 1 - s1): about L for
Gaussian weights, 2L for ReLU, and stays small only for orthogonal weights
with tanh at a small q* (dynamical isometry). The theory is for infinite
width: expect deviations growing like L / width.
"""


def _add_spectrum(sub):
    from .experiments.spectrum import ACTIVATIONS as SPECTRUM_ACTIVATIONS
    from .experiments.spectrum import DEFAULT_Q_STAR, WEIGHTS, SpectrumConfig

    d = SpectrumConfig()
    p = sub.add_parser(
        "spectrum",
        help="singular values of the input-output Jacobian at init: dynamical isometry",
        description="The spectrum of the input-output Jacobian of deep random networks at "
        "init, against the free-probability theory of Pennington et al. (2017).",
        epilog=SPECTRUM_EPILOG,
    )
    p.add_argument(
        "--activation",
        choices=SPECTRUM_ACTIVATIONS,
        nargs="+",
        help=f"hidden activations (default {' '.join(d.activations)}; --train: tanh only)",
    )
    p.add_argument(
        "--weights", choices=WEIGHTS, nargs="+", default=list(d.weights), help="weight distributions"
    )
    p.add_argument(
        "--depths",
        type=_positive_int,
        nargs="+",
        metavar="L",
        help="depths at which the Jacobian is taken (one network of the largest depth per draw; "
        f"default {' '.join(map(str, d.depths))}; --train: hidden layers, default 32 64)",
    )
    p.add_argument("--width", type=_positive_int, help=f"units per layer (default {d.width}; --train: 100)")
    p.add_argument(
        "--sw2",
        type=_non_negative_float,
        help="weight variance sigma_w^2 (times 1/width); default: the edge of chaos (with --sb2 "
        "alone: the critical sw2 for it)",
    )
    p.add_argument("--sb2", type=_non_negative_float, help="bias variance sigma_b^2 (with --sw2 alone: 0)")
    p.add_argument(
        "--q-star",
        type=_positive_float,
        metavar="Q",
        help="take the point of the edge of chaos whose variance fixed point is Q (default "
        f"{DEFAULT_Q_STAR:g} for tanh; sigmoid: sb2 = 0; ReLU: sw2 = 2, sb2 = 0)",
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=d.samples,
        metavar="K",
        help="draws: each a fresh network and an input from the fixed-point distribution",
    )
    p.add_argument("--seed", type=_seed, default=d.seed)
    p.add_argument(
        "--backend", choices=("numpy", "cpu"), default=d.backend, help="kernels for the matmuls (float64)"
    )
    _add_out_option(p)
    t = p.add_argument_group("learning speed (--train)")
    t.add_argument(
        "--train",
        action="store_true",
        help="instead of the spectrum, train tanh networks at the edge of chaos from orthogonal "
        "and Gaussian weights and record the steps to --target train accuracy (default depths "
        "32 64, width 100, both weights)",
    )
    t.add_argument("--seeds", type=_seed, nargs="+", metavar="S", help="--train: seeds (default 0 1 2)")
    t.add_argument("--lr", type=_positive_float, help="--train: SGD learning rate (default 0.05)")
    t.add_argument("--batch-size", type=_positive_int, help="--train: mini-batch size (default 128)")
    t.add_argument("--target", type=_positive_float, help="--train: train accuracy to reach (default 0.9)")
    t.add_argument(
        "--eval-every",
        type=_positive_int,
        metavar="K",
        help="--train: measure the train accuracy every K steps (default 25)",
    )
    t.add_argument(
        "--eval-samples",
        type=_positive_int,
        metavar="N",
        help="--train: on the first N training images (default 1000)",
    )
    t.add_argument(
        "--max-steps", type=_positive_int, help="--train: give up after this many steps (default 1000)"
    )
    t.add_argument("--data-dir", metavar="DIR", help="--train: MNIST-format IDX files")
    _add_plot_options(
        p,
        "the spectrum figure; default: fastinit-results/spectrum.png, or "
        "<out without .h5>-spectrum.png (--train: spectrum-training.png)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no table")


def _run_spectrum(args):
    from .store import open_results, results_file

    if args.q_star is not None and (args.sw2 is not None or args.sb2 is not None):
        raise UsageError("argument --q-star: not allowed with --sw2 or --sb2")
    if args.train:
        from .experiments.spectrum_training import format_training_summary as summary
        from .experiments.spectrum_training import run as experiment
        from .experiments.spectrum_training import write

        figure = "spectrum-training"
    else:
        from .experiments.spectrum import format_summary as summary
        from .experiments.spectrum import run as experiment
        from .experiments.spectrum import write

        figure = "spectrum"
    try:
        config = _spectrum_training_config(args) if args.train else _spectrum_config(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = results_file(args.out)
    plot = _figure(args, out, figure)
    result = experiment(config, progress=_progress_wanted(args))
    with open_results(out) as f:
        written = write(f, result)  # the training's group, or the spectra's groups
    _say(args, summary(result))
    _say(args, f"wrote {written if args.train else f'{len(written)} group(s) under /spectrum'} to {out}")
    if plot is not None:
        from .plots import plot_spectrum, plot_spectrum_training

        draw = plot_spectrum_training if args.train else plot_spectrum
        _say(args, f"wrote figure {draw(result, plot)}")
    return EXIT_OK


_TRAIN_ONLY = ("seeds", "lr", "batch_size", "target", "eval_every", "eval_samples", "max_steps", "data_dir")


def _spectrum_config(args):
    """The validated ``SpectrumConfig`` of ``fastinit spectrum``; ValueError for a bad value."""
    from .experiments.spectrum import SpectrumConfig

    for name in _TRAIN_ONLY:
        if getattr(args, name) is not None:
            raise UsageError(f"argument --{name.replace('_', '-')}: only with --train")
    d = SpectrumConfig()
    config = SpectrumConfig(
        activations=tuple(args.activation or d.activations),
        weights=tuple(args.weights),
        depths=tuple(args.depths or d.depths),
        width=args.width or d.width,
        sw2=args.sw2,
        sb2=args.sb2,
        q_star=args.q_star,
        samples=args.samples,
        seed=args.seed,
        backend=args.backend,
    ).validate()
    for activation in config.activations:
        config.point(activation)  # an edge of chaos that does not exist (sigmoid with a small --q-star)
    return config


def _spectrum_training_config(args):
    """The validated ``TrainingConfig`` of ``fastinit spectrum --train``; ValueError for a bad value."""
    from .experiments.spectrum_training import TrainingConfig

    if args.activation not in (None, ["tanh"]):
        raise UsageError("argument --activation: --train trains tanh networks only")
    if args.weights and set(args.weights) - {"orthogonal", "gaussian"}:
        raise UsageError("argument --weights: orthogonal and/or gaussian")
    if (args.sw2 is None) != (args.sb2 is None):
        raise UsageError("argument --sw2/--sb2: --train needs both (or --q-star)")
    default = TrainingConfig()
    given = dict(
        depths=tuple(args.depths or default.depths),
        width=args.width or default.width,
        weights=tuple(args.weights),
        q_star=args.q_star,
        sw2=args.sw2,
        sb2=args.sb2,
        backend=args.backend,
    )
    for name in _TRAIN_ONLY:
        if getattr(args, name) is not None:
            given[name] = tuple(getattr(args, name)) if name == "seeds" else getattr(args, name)
    config = TrainingConfig(**given).validate()
    config.point()  # the edge of chaos for --q-star must exist
    return config


COMMANDS = [
    (_add_histogram, _run_histogram),
    (_add_show, _run_show),
    (_add_bench_report, _run_bench_report),
    (_add_train, _run_train),
    (_add_reproduce, _run_reproduce),
    (_add_profile, _run_profile),
    (_add_theory, _run_theory),
    (_add_sweep, _run_sweep),
    (_add_spectrum, _run_spectrum),
]

MAIN_EPILOG = """\
examples:
  fastinit reproduce                          the whole study: histograms, MNIST runs, figures, summary.md
  fastinit histogram                          the classic sigmoid figure, into fastinit-results/
  fastinit histogram --activation relu --init xavier he
  fastinit show fastinit-results/fastinit.h5
  fastinit theory --activation tanh           mean-field theory: q*, chi1, xi_c, the edge of chaos
  fastinit sweep --preset schoenholz          the trainability phase diagram (about 10 min on 2 cores)
  fastinit sweep --preset schoenholz-time     ... and how it grows with training steps (under 30 min)
  fastinit spectrum                           Jacobian singular values at init: dynamical isometry
  fastinit <command> --help                   options of one command
"""


def build_parser():
    """Build the ``fastinit`` argument parser: one subcommand per entry of ``COMMANDS``.

    Returns
    -------
    argparse.ArgumentParser
        Its ``error`` raises :class:`UsageError` instead of exiting; the parsed namespace's
        ``_runners`` maps each command to the function that runs it.
    """
    parser = _Parser(
        prog="fastinit",
        description="Numba kernels that train and probe MLPs to show how weight initialisation "
        "decides whether a network learns.",
        epilog=MAIN_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"fastinit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    runners = {}
    for add, run in COMMANDS:
        before = set(sub.choices)
        add(sub)
        for name in set(sub.choices) - before:
            runners[name] = run
    parser.set_defaults(_runners=runners)
    return parser


def main(argv=None):
    """Run the ``fastinit`` command line.

    Stop signals raise while it runs (:func:`fastinit.signals.stop_signals_raise`); the
    previous handlers come back when it returns.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``fastinit``; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when the run failed, 2 for bad usage, 3 when a
        training run diverged, 128 + the signal when a stop signal ended it (130 on Ctrl-C).

    Raises
    ------
    Exception
        Only a bug's own exception, with its traceback (or any error, with
        ``FASTINIT_DEBUG=1``); every known error becomes one line on stderr and a status.
    """
    try:
        with stop_signals_raise():
            return _main(argv)
    except KeyboardInterrupt as exc:  # a stop signal before the command started: nothing to clean up
        return exit_status(exc)


def run():
    """Run :func:`main` as the ``fastinit`` console script and ``python -m fastinit``, then exit.

    After a command stopped by a signal, further stop signals are ignored while the
    process exits, so a late one cannot turn exit status 130/143 into a death by signal.

    Raises
    ------
    SystemExit
        Always, with :func:`main`'s exit status.
    """
    status = None
    try:
        try:
            status = main()
        except KeyboardInterrupt as exc:  # a held-back stop signal that landed as main() returned
            status = exit_status(exc)
        if status >= 128:
            ignore_stop_signals()
    except KeyboardInterrupt as exc:  # one that landed after main() had put the old handlers back
        ignore_stop_signals()
        status = status if status is not None and status >= 128 else exit_status(exc)
    sys.exit(status)


def _main(argv):
    from .store import command_line_scope

    debug = os.environ.get("FASTINIT_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        words = sys.argv[1:] if argv is None else [str(a) for a in argv]
        from .threads import pools_for  # the cpu backend's runs hold BLAS to one thread (fastinit.threads)

        with (
            command_line_scope(shlex.join(["fastinit", *words])),
            pools_for(getattr(args, "backend", None)),
            numba_compiles_hold_stops(),
        ):
            return args._runners[args.command](args)
    except BrokenPipeError:  # e.g. `fastinit show f.h5 | head`: stop quietly like other tools
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        stopped_by = f"stopped by {exc}" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        print(f"fastinit: {stopped_by}; results files were left valid", file=sys.stderr)
        return exit_status(exc)
    except Exception as exc:
        status = None if debug else exit_status_for(exc)
        if status is None:
            raise
        print(f"fastinit: error: {one_line_message(exc)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    run()
