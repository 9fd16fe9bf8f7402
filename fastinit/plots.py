"""Figures for every fastinit experiment.

Conventions (please keep them when adding a section):

- Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot:
  no GUI, no global state, no ``plt.show``, works headless and leaves an
  interactive session's backend alone.
- One section per experiment, each with a public ``<experiment>_figure(...)
  -> Figure`` that takes the experiment's results object (plain data, not a
  file) and, where handy, a ``plot_<experiment>(results, path)`` that builds
  and saves it.
- Save through :func:`save_figure`: it checks the path, picks the format from
  the extension (png, pdf, svg), writes atomically and raises
  :class:`PlotError` (a ``ValueError``) with a one-line message on bad paths.

Sections: activation histograms (``fastinit histogram``); benchmark report
(``fastinit bench-report``); MNIST training (``fastinit train``, ``fastinit reproduce``).
"""

import functools
import inspect
import os
import re
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from matplotlib.ticker import MaxNLocator

from fastinit.kernels.checks import fill_doc, with_doc

from .errors import FastinitError
from .formatting import format_time
from .outputs import replacing, why_unwritable

__all__ = [
    "PlotError",
    "check_figure_path",
    "save_figure",
    "histogram_figure",
    "plot_histogram",
    "depth_figure",
    "plot_depth",
    "gradient_figure",
    "plot_gradients",
    "depth_path",
    "gradient_histogram_figure",
    "plot_gradient_histogram",
    "plot_histogram_figures",
    "benchmark_figure",
    "smooth",
    "train_loss_figure",
    "plot_train_loss",
    "train_accuracy_figure",
    "plot_train_accuracy",
    "train_activations_figure",
    "plot_train_activations",
    "train_gradients_figure",
    "plot_train_gradients",
    "plot_train_figures",
    "profile_figure",
    "plot_profile",
    "sweep_figure",
    "plot_sweep",
    "sweep_steps_path",
    "sweep_steps_figure",
    "plot_sweep_steps",
    "spectrum_figure",
    "plot_spectrum",
    "spectrum_training_figure",
    "plot_spectrum_training",
    "plot_run_snapshots",
]

FORMATS = ("png", "pdf", "svg")


class PlotError(FastinitError, ValueError):
    """A figure cannot be written (bad path or unsupported format)."""


# --------------------------------------------------------------------------- common


_CANNOT_WRITE = """Raises
------
PlotError
    If `path` cannot be written: not a .png, .pdf or .svg file name, a folder, or in a
    missing folder."""


def check_figure_path(path):
    """Check a figure's file before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The figure file.

    Returns
    -------
    str
        `path` as a str.

    {cannot_write}
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise PlotError(f"figure path must be a file name, got {path!r}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise PlotError(f"figure file {path} must end in {', '.join('.' + f for f in FORMATS)}")
    reason = why_unwritable(path)
    if reason:
        raise PlotError(f"figure {reason}")
    return path


def save_figure(fig, path, dpi=120):
    """Save `fig` to `path` in one step, in the format its extension names.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or os.PathLike
        The figure file: .png, .pdf or .svg.
    dpi : int, default 120
        Dots per inch (PNG).

    Returns
    -------
    str
        `path` as a str.

    {cannot_write}
    """
    path = check_figure_path(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    engine = _lay_out(fig, dpi) if ext == "png" else None
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi)
    except OSError as exc:
        raise PlotError(f"cannot write figure {path}: {exc.strerror or exc}") from None
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)
    return path


def _lay_out(fig, dpi):
    """Run the layout engine of ``fig`` (if any) once at ``dpi`` for a PNG, as ``savefig`` would,
    and take it off the figure; return it (None when there is none). ``savefig`` with an engine
    draws the whole figure twice, once only to lay it out; the PNG is the same byte for byte."""
    engine = fig.get_layout_engine()
    if engine is None:
        return None
    original = fig.dpi
    fig.set_dpi(dpi)
    try:
        engine.execute(fig)
    finally:
        fig.set_dpi(original)
    fig.set_layout_engine(None)
    return engine


for _function in (check_figure_path, save_figure):
    _function.__doc__ = fill_doc(_function.__doc__, cannot_write=_CANNOT_WRITE)

_PATH = ("str or os.PathLike", "The figure file: .png, .pdf or .svg.")
_HISTOGRAM_RESULTS = (
    "fastinit.experiments.histogram.HistogramResults",
    "What ``fastinit.experiments.histogram.run`` returned.",
)
_RUNS = ("list of dict", "Run dicts of ``fastinit.experiments.train.read_runs``, several per name for seeds.")
_SWEEP = ("fastinit.experiments.sweep.SweepResult", "What ``sweep`` returned.")
_THRESHOLD = ("float, default 0.5", "Mean train accuracy from which a network counts as trainable.")
_SNAPSHOT_ARGS = dict(
    steps=("array_like of int, shape (snapshots,)", "The snapshots' steps (``snapshot_steps``)."),
    name=("str", "The run's name, for the title."),
    activation=("str", "The run's hidden activation."),
)


def _saves(figure, **params):
    """Make a ``plot_<x>`` function of one that returns :func:`figure` (a name) from its
    parameters: the result checks ``path`` before the figure is built, saves the figure there
    and returns ``path``, documented from ``params``: name -> (type, description), in the
    signature's order."""
    entries = "\n".join(f"{name} : {kind}\n    {text}" for name, (kind, text) in params.items())
    doc = (
        f"Build :func:`{figure}` and save it to `path`.\n\nParameters\n----------\n{entries}\n\n"
        f"Returns\n-------\nstr\n    `path`.\n\n{_CANNOT_WRITE}\n"
    )

    def decorate(build):
        signature = inspect.signature(build)

        @functools.wraps(with_doc(doc)(build))
        def plot(*args, **kwargs):
            path = check_figure_path(signature.bind(*args, **kwargs).arguments["path"])
            return save_figure(build(*args, **kwargs), path)

        return plot

    return decorate


# --------------------------------------------------------------------------- activation histograms

_HIST_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
_HIST_BINS = 30


def _relu_top(values):
    """The 99.5th percentile of the positive values (1 when there are none)."""
    pos = values[(values > 0) & np.isfinite(values)]
    if pos.size == 0:
        return 1.0
    hi = float(np.percentile(pos, 99.5))
    return hi if np.isfinite(hi) and hi > 0 else 1.0


def _relu_log_range(runs):
    """(lo, hi) in log10 of the positive, finite ReLU activations of every run and layer,
    widened to whole decades: one x-axis for the whole figure, so a net whose activations
    explode (std=10) or collapse (std=0.01) sits decades away from one that keeps them."""
    return _log_range(run.activations for run in runs)


def _log_range(arrays, max_decades=None):
    """(lo, hi) in log10 of the positive, finite values of ``arrays``, from the lowest 0.5th
    percentile to the largest value, widened to whole decades; with ``max_decades``, ``lo``
    is at most that many decades below ``hi``. (-1, 1) when there is no such value."""
    logs = []
    for v in arrays:
        pos = v[(v > 0) & np.isfinite(v)]
        if pos.size:
            logs += [np.log10(float(np.percentile(pos, 0.5))), np.log10(float(pos.max()))]
    if not logs:
        return (-1.0, 1.0)
    lo = float(np.floor(min(logs)))
    hi = float(np.ceil(max(logs))) if max(logs) > min(logs) else lo + 1
    return (lo if max_decades is None else max(lo, hi - max_decades), hi)


def _trend(std):
    """'exploding', 'vanishing' or '' from the growth of the std over the layers."""
    first, last = float(std[0]), float(std[-1])
    if len(std) < 2 or not (np.isfinite(first) and np.isfinite(last)) or first <= 0 or last <= 0:
        return ""
    per_layer = (last / first) ** (1.0 / (len(std) - 1))
    if per_layer >= 2:
        return f"exploding: x{per_layer:.3g} per layer"
    if per_layer <= 0.5:
        return f"vanishing: x{per_layer:.2g} per layer"
    return ""


# The Parameters and Returns of the figures of a HistogramResults.
_RESULTS_FIGURE_DOC = """Parameters
----------
results : fastinit.experiments.histogram.HistogramResults
    What ``fastinit.experiments.histogram.run`` returned.

Returns
-------
matplotlib.figure.Figure
    The figure."""


def histogram_figure(results):
    """The classic activation-histogram figure: one row per init, one column per layer.

    Histograms of the layer's outputs as a fraction of all values, over (0, 1) for sigmoid
    and (-1, 1) for tanh. For ReLU the x-axis is log10 of the non-zero activations, shared
    by every panel (``_relu_log_range``), so exploding and vanishing activations show as a
    shift of decades; exact zeros (dead units) are left out of the bars and reported in the
    panel, and a row with no non-zero value says so. Each panel notes the measured std, the
    mean-field theory std and the saturated (or dead) percentage; a row whose std grows or
    shrinks by 2x or more per layer is marked exploding or vanishing.

    {results_figure}
    """
    inits = list(results.runs)
    shown = _shown_layers(results.layers)
    rows, cols = len(inits), len(shown)
    fig = Figure(figsize=(1.9 * cols + 1.4, 1.55 * rows + 1.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False, sharey="row"))
    relu = results.activation == "relu"
    sat_label = "dead" if relu else "sat"
    log_range = _relu_log_range(results.runs.values()) if relu else None
    for r, spec in enumerate(inits):
        run = results.runs[spec]
        empty = relu and not np.any((run.activations > 0) & np.isfinite(run.activations))
        for c, layer in enumerate(shown):
            ax = axes[r, c]
            values = run.activations[layer].ravel()
            scale = 1.0 / max(1, values.size)
            if relu:
                values = values[(values > 0) & np.isfinite(values)]
                _bars(ax, np.log10(values.astype(np.float64)), log_range, scale, "C2")
                ax.set_xlim(*log_range)
                ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            else:
                lo_hi = _HIST_RANGE[results.activation]
                _bars(ax, values[np.isfinite(values)], lo_hi, scale, "C0")
                ax.set_xlim(*lo_hi)
            ax.tick_params(labelsize=7)
            if empty:
                _empty_note(ax, "all activations\nare exactly 0")
            note = (
                f"std {run.std[layer]:.3g}\ntheory {run.theory_std[layer]:.3g}\n"
                f"{sat_label} {100 * run.saturated[layer]:.0f}%"
            )
            if run.nonfinite[layer] > 0:
                note += f"\nNaN/Inf {100 * run.nonfinite[layer]:.0f}%"
            if c == cols - 1:
                top = max(a.get_ylim()[1] for a in axes[r])
                ax.set_ylim(0, 1.65 * top)  # headroom for the notes (the row shares y)
            trend = _trend(run.std)
            _label_panel(
                ax,
                note,
                (r, c, rows),
                layer,
                f"{spec}\nfraction" + (f"\n({trend})" if trend else ""),
                "log10(activation)" if relu else "activation",
            )
    rule = {
        "sigmoid": "saturated: y<0.01 or y>0.99",
        "tanh": "saturated: |y|>0.99",
        "relu": "x: log10 of the non-zero activations, zeros (dead) not drawn",
    }[results.activation]
    title = (
        f"{results.activation} activations per layer: {results.layers} layers x {results.units} units, "
        f"{results.samples} samples, seed {results.seed} ({rule})"
    )
    fig.suptitle(_fitted(fig, title, 10), fontsize=10)
    note = (
        "theory: the mean-field variance recursion (its Gaussian integrals exact at any variance) "
        "for infinitely wide layers with Gaussian, independent pre-activations;\n"
        "at this width one draw of the weights scatters around it by a few % per layer, "
        "and the scatter compounds with depth"
    )
    if relu:
        note += (
            " (compare He's measured and theory std). The dead % is the same for every init drawn from "
            "one seed:\nthey share the random directions and differ only in scale, and a ReLU's sign does "
            "not depend on scale."
        )
    fig.supxlabel(_fitted(fig, note, 7), fontsize=7, color="0.35")
    return fig


_MAX_LAYER_COLUMNS = 10


def _shown_layers(layers):
    """The layers the histogram figure draws: all up to 10, else 10 spread from first to last."""
    if layers <= _MAX_LAYER_COLUMNS:
        return list(range(layers))
    return sorted(set(np.linspace(0, layers - 1, _MAX_LAYER_COLUMNS).round().astype(int).tolist()))


def _against_theory_figure(results, measured, theory, xlabel, ylabel, title, empty=None):
    """Per-layer values of every init, measured (markers, attribute ``measured`` of each run)
    against the mean-field theory (lines, attribute ``theory``), log scale. A run whose
    measured values are all non-positive gets the legend entry ``empty`` instead (when
    given). Non-positive values (e.g. a float32 over- or underflow) leave no marker."""
    fig = Figure(figsize=(7.6, 4.4), layout="constrained")
    ax = fig.subplots()
    depth = np.arange(1, results.layers + 1)
    runs = list(results.runs.values())
    for i, run in enumerate(runs):
        style = dict(_run_style(i, results.layers, len(runs)), markevery=max(1, results.layers // 25), ms=4)
        values = np.asarray(getattr(run, measured))
        predicted = np.asarray(getattr(run, theory))
        values = np.where(values > 0, values, np.nan)
        if empty is not None and np.all(np.isnan(values)):
            ax.plot([], [], label=f"{run.init}: {empty}", **style)
            continue
        ax.plot(depth, values, lw=0, label=f"{run.init} (measured)", **style)
        ax.plot(
            depth, np.where(predicted > 0, predicted, np.nan), color=style["color"], lw=1.2, ls="-", alpha=0.7
        )
    ax.plot([], [], color="0.3", lw=1.2, label="lines: mean-field theory\n(infinite width)")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{results.activation}: {title} through {results.layers} layers of {results.units} units")
    _legend_outside(ax)
    ax.grid(alpha=0.3, which="both")
    return fig


def depth_figure(results):
    """The std of each layer's activations against depth, measured and predicted.

    Measured (markers) and predicted by the mean-field theory (lines), one colour per init,
    on a log scale: Xavier shrinking and He holding through ReLU depth, std=1 saturating. A
    float32 value that overflowed or underflowed leaves its layer without a marker.

    {results_figure}
    """
    return _against_theory_figure(
        results,
        "std",
        "theory_std",
        "layer",
        "std of the activations",
        "activation std",
        empty="all activations are exactly 0",
    )


@_saves("depth_figure", results=_HISTOGRAM_RESULTS, path=_PATH)
def plot_depth(results, path):
    return depth_figure(results)


def gradient_figure(results):
    """The RMS of a gradient backpropagated from the last layer to each layer at init.

    Measured (markers) against the mean-field prediction (lines, the product of sqrt(chi)
    per layer), one colour per init, log scale: vanishing gradients (std=0.01, saturated
    sigmoid) fall away by decades towards the input.

    {results_figure}
    """
    return _against_theory_figure(
        results,
        "grad_rms",
        "grad_theory",
        "layer (the gradient enters at the last one)",
        "RMS of the backpropagated gradient",
        "gradients at init",
    )


for _function in (histogram_figure, depth_figure, gradient_figure):
    _function.__doc__ = fill_doc(_function.__doc__, results_figure=_RESULTS_FIGURE_DOC)


@_saves("gradient_figure", results=_HISTOGRAM_RESULTS, path=_PATH)
def plot_gradients(results, path):
    return gradient_figure(results)


def depth_path(histogram_path, kind="depth"):
    """Where a figure drawn beside a histogram figure goes: ``<stem>-<kind><ext>``.

    Parameters
    ----------
    histogram_path : str or os.PathLike
        The histogram figure's file.
    kind : {'depth', 'gradients', 'gradient-histogram'}, default 'depth'
        Which figure.

    Returns
    -------
    str
        Its file, e.g. ``r-histogram-depth.png`` beside ``r-histogram.png``.
    """
    stem, ext = os.path.splitext(os.fspath(histogram_path))
    return f"{stem}-{kind}{ext}"


def _bars(ax, values, value_range, scale, color):
    """A histogram of ``values`` in ``_HIST_BINS`` bins over ``value_range``, each count times
    ``scale``, drawn as one filled step artist (``ax.hist`` makes an artist per bin, which
    made the 30-panel figures slow to lay out and draw)."""
    # In float64: float32 bin edges near float32's largest values overflow (a blown-up std=10 net).
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=_HIST_BINS, range=value_range)
    ax.stairs(counts * scale, edges, fill=True, color=color)


_TEXT_PATHS = TextToPath()


def _fitted(fig, text, fontsize):
    """``text`` with each line too wide for ``fig`` at ``fontsize`` (points) wrapped at spaces
    into the fewest lines of about equal length that fit, so that the title or note of a
    narrow grid (few layer columns) is not cut off at its edges; lines that fit stay as they
    are."""
    room = 0.97 * 72 * fig.get_figwidth()
    prop = FontProperties(size=fontsize)

    def fits(line):
        return _TEXT_PATHS.get_text_width_height_descent(line, prop, ismath=False)[0] <= room

    lines = []
    for line in text.split("\n"):
        parts, pieces = [line], 1
        while not all(fits(part) for part in parts) and pieces < len(line):
            pieces += 1
            parts = textwrap.wrap(line, -(-len(line) // pieces) + 4)
        lines += parts
    return "\n".join(lines)


def _label_panel(ax, note, where, layer, ylabel, xlabel):
    """Label panel ``where = (row, column, rows)`` of a grid whose columns are layers: ``note`` in
    its corner, ``layer <layer + 1>`` on the top row, ``ylabel`` on the left column and
    ``xlabel`` on the bottom row."""
    r, c, rows = where
    ax.text(
        0.97,
        0.95,
        note,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=6.5,
        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.75),
    )
    if r == 0:
        ax.set_title(f"layer {layer + 1}", fontsize=9)
    if c == 0:
        ax.set_ylabel(ylabel, fontsize=8)
    if r == rows - 1:
        ax.set_xlabel(xlabel, fontsize=8)


def _empty_note(ax, text):
    """``text`` in the middle of a panel that has nothing to draw."""
    ax.text(0.5, 0.45, text, transform=ax.transAxes, ha="center", va="center", fontsize=7.5, color="0.3")


@_saves("histogram_figure", results=_HISTOGRAM_RESULTS, path=_PATH)
def plot_histogram(results, path):
    return histogram_figure(results)


_GRADIENT_DECADES = 16  # the widest x-axis of the gradient histograms; smaller values are counted, not drawn


def _percent(fraction):
    """``0%`` only for exactly none, ``<1%`` for a few, else the rounded percentage."""
    if fraction == 0:
        return "0%"
    return "<1%" if fraction < 0.005 else f"{100 * fraction:.0f}%"


def _finite_rms(g):
    """The RMS of the finite values of ``g`` (any shape) as a float, NaN when there are none."""
    g = np.asarray(g, dtype=np.float64)
    finite = g[np.isfinite(g)]
    return float(np.sqrt(np.mean(finite * finite))) if finite.size else float("nan")


def _gradient_note(g, lo, theory):
    """The panel text of one layer's gradients ``g`` (any shape): RMS (of the finite values),
    the theory's RMS when finite, the fraction exactly 0, below the axis (|g| < 10**lo) and NaN/Inf."""
    g = np.asarray(g, dtype=np.float64).ravel()
    finite = g[np.isfinite(g)]
    n = max(1, g.size)
    note = f"RMS {_finite_rms(finite):.3g}"
    if np.isfinite(theory):
        note += f"\ntheory {theory:.3g}"
    note += f"\nzero {_percent(np.count_nonzero(finite == 0) / n)}"
    below = np.count_nonzero((finite != 0) & (np.abs(finite) < 10.0**lo)) / n
    if below:
        note += f"\n<1e{lo:.0f}: {_percent(below)}"
    if finite.size < g.size:
        note += f"\nNaN/Inf {_percent(1 - finite.size / n)}"
    return note


def gradient_histogram_figure(results):
    """Histograms of the gradient backpropagated at init, in the grid of :func:`histogram_figure`.

    One row per init (those with ``gradients``), one column per layer; the x-axis is log10
    |dL/dz| of the layer's pre-activation gradient (see
    ``fastinit.experiments.histogram.backprop``), shared by every panel and at most 16
    decades wide (``_log_range``); each panel has its own y-axis, as the last column (the
    N(0, 1) gradient that enters) would flatten a row of widely spread gradients. Exact
    zeros and NaN/Inf are left out of the bars and counted in the panel, as are non-zero
    values below the axis; each panel also gives the RMS and the mean-field theory's. A row
    whose RMS shrinks or grows 2x or more per layer, going down from the last layer, is
    marked vanishing or exploding.

    Parameters
    ----------
    results : fastinit.experiments.histogram.HistogramResults
        What ``fastinit.experiments.histogram.run`` returned with ``gradients=True``.

    Returns
    -------
    matplotlib.figure.Figure
        A row per init that has gradients, a column per layer (at most 10).

    Raises
    ------
    ValueError
        When no run has gradients.
    """
    runs = [run for run in results.runs.values() if run.gradients is not None]
    if not runs:
        raise ValueError("these results hold no gradients: run with HistogramConfig(gradients=True)")
    shown = _shown_layers(results.layers)
    rows, cols = len(runs), len(shown)
    fig = Figure(figsize=(1.9 * cols + 1.4, 1.55 * rows + 1.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    lo, hi = _log_range((np.abs(run.gradients) for run in runs), _GRADIENT_DECADES)
    for r, run in enumerate(runs):
        rms = np.array([_finite_rms(g) for g in run.gradients])
        for c, layer in enumerate(shown):
            ax = axes[r, c]
            g = run.gradients[layer].ravel()
            nonzero = np.abs(g[np.isfinite(g) & (g != 0)]).astype(np.float64)
            _bars(ax, np.log10(nonzero), (lo, hi), 1.0 / max(1, g.size), "C3")
            ax.set_xlim(lo, hi)
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            ax.tick_params(labelsize=7)
            if nonzero.size == 0:
                _empty_note(ax, "all gradients\nare exactly 0")
            ax.set_ylim(0, 1.65 * ax.get_ylim()[1])  # headroom for the note
            trend = _trend(rms[::-1])
            _label_panel(
                ax,
                _gradient_note(g, lo, run.grad_theory[layer]),
                (r, c, rows),
                layer,
                f"{run.init}\nfraction" + (f"\n({trend})" if trend else ""),
                "log10 |dL/dz|",
            )
    title = (
        f"{results.activation} gradients at init, dL/dz of each layer's pre-activation: "
        f"{results.layers} layers x {results.units} units, {results.samples} samples, seed {results.seed} "
        "(x: log10 |dL/dz|, zeros not drawn)"
    )
    fig.suptitle(_fitted(fig, title, 10), fontsize=10)
    note = (
        f"L = sum(G * z) on layer {results.layers} with G ~ N(0, 1), the same G for every init: the last "
        "column is G itself, and each layer down multiplies by W.T and the activation's slope.\nzero: "
        "exactly 0 (a dead ReLU, or a sigmoid/tanh unit saturated to its float limit); theory: the "
        "mean-field RMS (product of sqrt(chi) per layer); vanishing/exploding: RMS per layer going down."
    )
    fig.supxlabel(_fitted(fig, note, 7), fontsize=7, color="0.35")
    return fig


@_saves("gradient_histogram_figure", results=_HISTOGRAM_RESULTS, path=_PATH)
def plot_gradient_histogram(results, path):
    return gradient_histogram_figure(results)


def plot_histogram_figures(results, path):
    """Draw every figure of ``fastinit histogram``: the histograms at `path`, the others beside it.

    Beside `path` go :func:`depth_figure` (``<stem>-depth<ext>``), :func:`gradient_figure`
    (``-gradients``) and, when the results hold the gradients' values,
    :func:`gradient_histogram_figure` (``-gradient-histogram``): see :func:`depth_path`.

    Parameters
    ----------
    results : fastinit.experiments.histogram.HistogramResults
        What ``fastinit.experiments.histogram.run`` returned.
    path : str or os.PathLike
        The histogram figure's file: .png, .pdf or .svg.

    Returns
    -------
    list of str
        The files written, `path` first.

    Raises
    ------
    PlotError
        If `path` cannot be written.
    """
    paths = [
        plot_histogram(results, path),
        plot_depth(results, depth_path(path)),
        plot_gradients(results, depth_path(path, "gradients")),
    ]
    if any(run.gradients is not None for run in results.runs.values()):
        paths.append(plot_gradient_histogram(results, depth_path(path, "gradient-histogram")))
    return paths


# --------------------------------------------------------------------------- MNIST training
# Section added by the train/reproduce engineer (``fastinit train --plot``, ``fastinit reproduce``).
# Input: the run dicts of :func:`fastinit.experiments.train.read_runs` (``name``, ``seed``,
# ``loss``, ``eval_steps``, ``test_accuracy``, ``attrs``; several dicts of one name are
# its seeds) and, for the activation figure, the arrays of
# :func:`fastinit.experiments.train.read_activations`.


def smooth(values, window=25):
    """Centred moving average of a 1-D series (edges use the points available).

    Non-finite values (a diverged run's last loss) are dropped from the windows that would
    contain them.

    Parameters
    ----------
    values : array_like, shape (n,)
        The series.
    window : int, default 25
        Points per window; 1 or less returns a copy.

    Returns
    -------
    numpy.ndarray
        float64, shape (n,); NaN where `values` is not finite.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or window <= 1:
        return v.copy()
    ok = np.isfinite(v)
    filled = np.where(ok, v, 0.0)
    kernel = np.ones(min(int(window), v.size))
    num = np.convolve(filled, kernel, mode="same")
    den = np.convolve(ok.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~ok] = np.nan
    return out


def _run_label(run):
    status = run.get("attrs", {}).get("status", "")
    if status == "diverged":
        return f"{run['name']} (diverged at step {run['attrs'].get('diverged_step')})"
    if status == "interrupted":
        return f"{run['name']} (interrupted)"
    return run["name"]


# Each run gets its own colour, line style and marker, with the markers of run i
# offset along the curve, so runs whose curves coincide (std=0.01 and a sigmoid
# net both sit at ln 10) stay visible: dashes and staggered markers show through.
_LINESTYLES = ("-", "--", "-.", (0, (1, 1.2)), (0, (5, 1, 1, 1)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _run_style(i, n_points, n_runs):
    """Keyword arguments for ``ax.plot`` of run ``i`` of ``n_runs`` with ``n_points`` points."""
    every = max(1, n_points // 8)
    return dict(
        color=f"C{i % 10}",
        ls=_LINESTYLES[i % len(_LINESTYLES)],
        marker=_MARKERS[i % len(_MARKERS)],
        ms=5,
        markevery=(int(every * i / max(1, n_runs)), every),
        markerfacecolor="none",
        mew=1.2,
    )


def _by_name(runs):
    """The run dicts grouped by ``name`` (one per seed), in first-seen order: [(name, [run, ...]), ...]."""
    groups = {}
    for run in runs:
        groups.setdefault(run["name"], []).append(run)
    return list(groups.items())


def _seeds_label(name, group):
    """Legend text of a run over several seeds, naming the seeds that diverged or were interrupted."""
    notes = [
        f"seed {r['seed']} {r['attrs']['status']}"
        for r in group
        if r["attrs"].get("status") in ("diverged", "interrupted")
    ]
    return f"{name} (mean of {len(group)} seeds" + "".join(f"; {n}" for n in notes) + ")"


def _mean_band(series):
    """Mean, min and max over seeds of 1-D series of different lengths (missing and non-finite
    points ignored; NaN where no seed has a value). Returns three float64 arrays of the longest length."""
    stack = np.full((len(series), max(len(s) for s in series)), np.nan)
    for i, s in enumerate(series):
        stack[i, : len(s)] = s
    ok = np.isfinite(stack)
    count = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, stack, 0.0).sum(axis=0) / count
    lo = np.where(count > 0, np.where(ok, stack, np.inf).min(axis=0), np.nan)
    hi = np.where(count > 0, np.where(ok, stack, -np.inf).max(axis=0), np.nan)
    return mean, lo, hi


def _legend_outside(ax):
    """The legend to the right of the axes: it never covers a curve."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def train_loss_figure(runs, window=None):
    """Smoothed training-loss curves, one line per run, like the classic MNIST figure.

    The raw mini-batch loss is drawn faintly behind the moving average; each run has its
    own colour, line style and markers (see ``_run_style``). A run with several seeds is
    drawn as the mean of its seeds' smoothed curves with a min-max band instead.

    Parameters
    ----------
    runs : list of dict
        Run dicts of ``fastinit.experiments.train.read_runs``, several per name for seeds.
    window : int, optional
        Steps of the moving average; about 1/80 of the run (at least 5) when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig = Figure(figsize=(8.2, 4.2), layout="constrained")
    ax = fig.subplots()
    top = 0.0
    groups = [(name, group) for name, group in _by_name(runs) if max(len(r["loss"]) for r in group)]
    for i, (name, group) in enumerate(groups):
        losses = [np.asarray(r["loss"], dtype=np.float64) for r in group]
        n = max(len(loss) for loss in losses)
        steps = np.arange(1, n + 1)
        w = window or max(5, n // 80)
        style = _run_style(i, n, len(groups))
        if len(group) == 1:
            loss = losses[0]
            ax.plot(
                steps, np.where(np.isfinite(loss), loss, np.nan), color=style["color"], alpha=0.15, lw=0.6
            )
            ax.plot(steps, smooth(loss, w), lw=1.6, label=_run_label(group[0]), **style)
        else:
            mean, lo, hi = _mean_band([smooth(loss, w) for loss in losses])
            ax.fill_between(steps, lo, hi, color=style["color"], alpha=0.2, lw=0)
            ax.plot(steps, mean, lw=1.6, label=_seeds_label(name, group), **style)
        finite = np.concatenate(losses)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            top = max(top, float(np.percentile(finite, 99)))
    ax.axhline(np.log(10.0), color="0.5", ls=":", lw=1, label="ln 10 = 2.303 (uniform guess)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (softmax cross-entropy)")
    ax.set_ylim(0, max(2.6, min(top, 10.0)) if top > 0 else None)
    several = any(len(group) > 1 for _, group in groups)
    ax.set_title(
        "MNIST training loss per init (smoothed" + ("; mean of seeds, min-max band)" if several else ")")
    )
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return fig


@_saves(
    "train_loss_figure",
    runs=_RUNS,
    path=_PATH,
    window=("int, optional", "Steps of the moving average; about 1/80 of the run when None."),
)
def plot_train_loss(runs, path, window=None):
    return train_loss_figure(runs, window)


def train_accuracy_figure(runs):
    """Test accuracy against iteration, one line per run.

    A run with several seeds is drawn as the mean over its seeds with a min-max band.

    Parameters
    ----------
    runs : list of dict
        Run dicts of ``fastinit.experiments.train.read_runs``, several per name for seeds.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig = Figure(figsize=(8.2, 4.2), layout="constrained")
    ax = fig.subplots()
    groups = [(name, group) for name, group in _by_name(runs) if max(len(r["eval_steps"]) for r in group)]
    for i, (name, group) in enumerate(groups):
        steps = np.asarray(max((r["eval_steps"] for r in group), key=len))
        style = _run_style(i, steps.size, len(groups))
        if len(group) == 1:
            ax.plot(
                steps,
                100 * np.asarray(group[0]["test_accuracy"], dtype=np.float64),
                lw=1.4,
                label=_run_label(group[0]),
                **style,
            )
        else:
            mean, lo, hi = _mean_band([100 * np.asarray(r["test_accuracy"], dtype=np.float64) for r in group])
            ax.fill_between(steps, lo, hi, color=style["color"], alpha=0.2, lw=0)
            ax.plot(steps, mean, lw=1.4, label=_seeds_label(name, group), **style)
    ax.axhline(10, color="0.5", ls=":", lw=1, label="10% (chance)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    several = any(len(group) > 1 for _, group in groups)
    ax.set_title("MNIST test accuracy per init" + (" (mean of seeds, min-max band)" if several else ""))
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    return fig


@_saves("train_accuracy_figure", runs=_RUNS, path=_PATH)
def plot_train_accuracy(runs, path):
    return train_accuracy_figure(runs)


# The rest of the docstrings of train_activations_figure and train_gradients_figure.
_SNAPSHOT_ARGS_DOC = """steps : array_like of int, shape (snapshots,)
    The snapshots' steps (``snapshot_steps``).
name : str
    The run's name, for the title.
activation : str
    The run's hidden activation.

Returns
-------
matplotlib.figure.Figure
    The figure.

Raises
------
ValueError
    If the array is not 4-D with at least one snapshot."""


def _snapshot_panels(values, what):
    """``values`` (``what``, for the message) as an array of shape (snapshots, layers, samples,
    units), checked, a figure and its panels: one row per snapshot, one column per layer."""
    values = np.asarray(values)
    if values.ndim != 4 or values.shape[0] == 0:
        raise ValueError(
            f"{what} must be (snapshots, layers, samples, units) with snapshots >= 1, "
            f"got shape {values.shape}"
        )
    rows, cols = values.shape[:2]
    fig = Figure(figsize=(1.9 * cols + 1.4, 1.45 * rows + 1.0), layout="constrained")
    return values, fig, np.atleast_2d(fig.subplots(rows, cols, squeeze=False))


def train_activations_figure(activations, steps, name, activation):
    """Histograms of a run's hidden activations at several training snapshots.

    One row per snapshot, one column per hidden layer; ranges as in
    :func:`histogram_figure` (ReLU zeros left out and reported).

    Parameters
    ----------
    activations : array_like, shape (snapshots, layers, samples, units)
        As stored in ``/train/<run>/activations`` (NaN padding ignored).
    {snapshot_args}
    """
    acts, fig, axes = _snapshot_panels(activations, "activations")
    rows, cols = acts.shape[:2]
    relu = activation == "relu"
    for c in range(cols):
        layer = acts[:, c]
        layer = layer[np.isfinite(layer)]
        if relu:
            rng = (0.0, _relu_top(layer))
        else:
            rng = _HIST_RANGE.get(
                activation, (float(layer.min()), float(layer.max())) if layer.size else (0, 1)
            )
        for r in range(rows):
            ax = axes[r, c]
            values = acts[r, c].ravel()
            values = values[np.isfinite(values)]
            total = max(1, values.size)
            dead = np.count_nonzero(values == 0) if relu else 0
            shown = values[values > 0] if relu else values
            _bars(ax, shown, rng, 1.0 / total, "C2" if relu else "C0")
            ax.set_xlim(*rng)
            ax.tick_params(labelsize=7)
            note = f"std {values.std():.3g}" if values.size else "empty"
            if relu:
                note += f"\ndead {100 * dead / total:.0f}%"
            xlabel = "activation (zeros not drawn)" if relu else "activation"
            _label_panel(ax, note, (r, c, rows), c, f"step {int(steps[r])}\nfraction", xlabel)
    title = f"MNIST run {name}: {activation} activations of the probe batch during training"
    fig.suptitle(_fitted(fig, title, 10), fontsize=10)
    return fig


def train_gradients_figure(gradients, steps, name, activation):
    """Histograms of the probe batch's gradients dloss_i/dz per hidden layer at training snapshots.

    One row per snapshot (the first is the init), one column per layer, on one log10 |g|
    axis for every panel (at most 16 decades); exact zeros are counted in the panel, not
    drawn.

    Parameters
    ----------
    gradients : array_like, shape (snapshots, layers, samples, units)
        As stored in ``/train/<run>/gradients`` (NaN padding ignored).
    {snapshot_args}
    """
    g, fig, axes = _snapshot_panels(gradients, "gradients")
    rows, cols = g.shape[:2]
    mag = np.abs(g.astype(np.float64))
    lo, hi = _log_range([mag], max_decades=16)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            values = mag[r, c][~np.isnan(mag[r, c])]
            total = max(1, values.size)
            pos = values[(values > 0) & np.isfinite(values)]
            _bars(ax, np.log10(pos), (lo, hi), 1.0 / total, "C3")
            ax.set_xlim(lo, hi)
            ax.tick_params(labelsize=7)
            rms = float(np.sqrt(np.mean(values**2))) if values.size else float("nan")
            _label_panel(
                ax,
                f"RMS {rms:.3g}\nzero {100 * np.count_nonzero(values == 0) / total:.0f}%",
                (r, c, rows),
                c,
                f"step {int(steps[r])}\nfraction",
                "log10 |dloss_i/dz|",
            )
    title = f"MNIST run {name}: {activation} gradients of each probe image's loss per layer during training"
    fig.suptitle(_fitted(fig, title, 10), fontsize=10)
    return fig


for _function in (train_activations_figure, train_gradients_figure):
    _function.__doc__ = fill_doc(_function.__doc__, snapshot_args=_SNAPSHOT_ARGS_DOC)


@_saves(
    "train_gradients_figure",
    gradients=("array_like, shape (snapshots, layers, samples, units)", "``/train/<run>/gradients``."),
    **_SNAPSHOT_ARGS,
    path=_PATH,
)
def plot_train_gradients(gradients, steps, name, activation, path):
    return train_gradients_figure(gradients, steps, name, activation)


@_saves(
    "train_activations_figure",
    activations=("array_like, shape (snapshots, layers, samples, units)", "``/train/<run>/activations``."),
    **_SNAPSHOT_ARGS,
    path=_PATH,
)
def plot_train_activations(activations, steps, name, activation, path):
    return train_activations_figure(activations, steps, name, activation)


def _file_safe(name):
    """``name`` as a part of a file name: runs of other characters than letters, digits, ``._-``
    become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


def plot_train_figures(runs, snapshots, plot):
    """Draw every training figure of ``fastinit train``: loss, accuracy, and per run its snapshots.

    ``plot`` is the loss figure's file (``.png``, ``.pdf`` or ``.svg``); beside
    it go ``<stem>-accuracy<ext>`` (test accuracy) and, for each entry of
    ``snapshots`` that has them, ``<stem>-activations-<run><ext>`` (activation
    histograms at its snapshots) and ``<stem>-gradients-<run><ext>`` (the probe
    batch's gradients at the same snapshots), where ``<stem>`` is ``plot``
    without its extension and without a trailing ``-loss`` (``mnist-loss.png``
    -> ``mnist-accuracy.png``).

    Parameters
    ----------
    runs : list of dict
        The runs, from :func:`fastinit.experiments.train.read_runs`.
    snapshots : list of dict
        From :func:`fastinit.experiments.train.read_snapshots`: per run, ``name``,
        ``label``, ``activation`` and the ``(values, steps)`` of its ``activations`` and
        ``gradients`` snapshots (None where not recorded).
    plot : str or os.PathLike
        The loss figure's file.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    PlotError
        For a bad path.
    """
    check_figure_path(plot)
    stem, ext = _train_stem(plot)
    written = [plot_train_loss(runs, plot), plot_train_accuracy(runs, f"{stem}-accuracy{ext}")]
    for snap in snapshots:
        written += plot_run_snapshots(snap, plot)
    return written


def _train_stem(plot):
    """The loss figure's path without its extension and a trailing ``-loss``, and the extension."""
    stem, ext = os.path.splitext(os.fspath(plot))
    return (stem[: -len("-loss")] if stem.endswith("-loss") else stem), ext


def plot_run_snapshots(snap, plot):
    """Draw one run's snapshot figures beside the loss figure ``plot``, as :func:`plot_train_figures` does.

    Parameters
    ----------
    snap : dict
        One entry of :func:`fastinit.experiments.train.read_snapshots`: ``name``,
        ``label``, ``activation`` and the ``(values, steps)`` of its ``activations`` and
        ``gradients`` snapshots (None where not recorded).
    plot : str or os.PathLike
        The loss figure's file; ``<stem>-activations-<run><ext>`` and
        ``<stem>-gradients-<run><ext>`` go beside it.

    Returns
    -------
    list of str
        The files written (none for a run without snapshots).

    Raises
    ------
    PlotError
        For a bad path.
    """
    stem, ext = _train_stem(plot)
    written = []
    for dataset, draw in (("activations", plot_train_activations), ("gradients", plot_train_gradients)):
        if snap[dataset] is None:
            continue
        values, steps = snap[dataset]
        target = f"{stem}-{dataset}-{_file_safe(snap['name'])}{ext}"
        written.append(draw(values, steps, snap["label"], snap["activation"], target))
    return written


# --------------------------------------------------------------------------- benchmark report


def benchmark_figure(report):
    """Horizontal bars per benchmark group and backend, from a saved pytest-benchmark run.

    When at least one group has a numpy row: each other backend's speed-up over numpy, as a
    bar from the 1x line (numpy itself) on a log scale, so faster goes right and slower goes
    left; groups without a numpy row are left out. Otherwise: the median time per call of
    every row (log scale).

    Parameters
    ----------
    report : fastinit.benchreport.BenchReport
        What ``load_benchmarks`` read.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    use_speedup = any(r.speedup is not None for r in report.rows)
    groups = [
        g
        for g in report.groups
        if not use_speedup or any(r.speedup is not None for r in report.group_rows(g))
    ]
    backends = []
    for r in report.rows:
        if r.group in groups and r.backend not in backends and not (use_speedup and r.backend == "numpy"):
            backends.append(r.backend)
    height = 0.8 / max(1, len(backends))
    fig = Figure(figsize=(8.5, 1.2 + 0.22 * max(4, len(groups) * len(backends))), layout="constrained")
    ax = fig.subplots()
    for b, backend in enumerate(backends):
        ys, values = [], []
        for g, group in enumerate(groups):
            for r in report.group_rows(group):
                value = r.speedup if use_speedup else r.median
                if r.backend == backend and value is not None and value > 0:
                    ys.append(g + (b - (len(backends) - 1) / 2) * height)
                    values.append(value)
                    break
        values = np.asarray(values, dtype=float)
        if use_speedup:
            ax.barh(ys, values - 1.0, left=1.0, height=height * 0.9, label=backend, color=f"C{b + 1}")
        else:
            ax.barh(ys, values, height=height * 0.9, label=backend, color=f"C{b}")
        for y, v in zip(ys, values):
            text = f"{v:.3g}x" if use_speedup else format_time(v)
            right = not use_speedup or v >= 1.0
            ax.annotate(
                text,
                (v, y),
                xytext=(3 if right else -3, 0),
                textcoords="offset points",
                va="center",
                ha="left" if right else "right",
                fontsize=7,
            )
    ax.set_yticks(range(len(groups)), groups, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    if use_speedup:
        ax.axvline(1.0, color="0.2", lw=1.0)
        ax.set_xlabel("speed-up over numpy (numpy median / median, same run); right of 1 is faster")
    else:
        ax.set_xlabel("median time per call (s)")
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo / 2, hi * 2)  # room for the labels
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{os.path.basename(report.path)}: {report.machine}", fontsize=9)
    return fig


# ---------------------------------------------------------------- kernel profile (fastinit profile)

_PROFILE_PANELS = (
    ("matmul", "matmul n x n x n", "n", "GFLOP/s"),
    ("elementwise", "activations and SGD update", "elements", "GB/s"),
    ("softmax_xent", "softmax cross-entropy", "logits (rows x classes)", "GB/s"),
)
_ELEMENTWISE_KERNELS = ("sigmoid", "tanh", "relu", "sgd_update")


def profile_figure(records):
    """Throughput against size per backend, log-log, one panel per kernel family.

    Only the size sweeps are drawn (the MLP-shape matmuls and the training step are in the
    table); CUDA with host<->device copies is drawn dashed beside its kernel-only line.

    Parameters
    ----------
    records : list of fastinit.experiments.profile.ProfileRecord
        Or anything with ``kernel``, ``case``, ``backend``, ``size``, ``throughput``,
        ``time_s``, ``time_xfer_s`` and ``work``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    axes = fig.subplots(1, len(_PROFILE_PANELS))
    backends = sorted(
        {r.backend for r in records},
        key=lambda b: ("numpy", "cpu", "cuda").index(b) if b in ("numpy", "cpu", "cuda") else 9,
    )
    markers = {"sigmoid": "o", "tanh": "s", "relu": "^", "sgd_update": "x"}
    for ax, (family, title, xlabel, unit) in zip(axes, _PROFILE_PANELS):
        drawn = False
        for b, backend in enumerate(backends):
            if family == "matmul":
                groups = [("matmul", [r for r in records if r.kernel == "matmul" and r.case.endswith("^2")])]
            elif family == "elementwise":
                groups = [
                    (k, [r for r in records if r.kernel == k and r.case.endswith("elements")])
                    for k in _ELEMENTWISE_KERNELS
                ]
            else:
                groups = [(family, [r for r in records if r.kernel == family])]
            for kernel, rows in groups:
                rows = sorted((r for r in rows if r.backend == backend), key=lambda r: r.size)
                if not rows:
                    continue
                xs = [r.size for r in rows]
                label = backend if family != "elementwise" else f"{backend} {kernel}"
                ax.plot(
                    xs,
                    [r.throughput for r in rows],
                    color=f"C{b}",
                    marker=markers.get(kernel, "o"),
                    label=label,
                )
                xfer = [(r.size, r.work / r.time_xfer_s / 1e9) for r in rows if np.isfinite(r.time_xfer_s)]
                if xfer and family != "elementwise":
                    ax.plot(*zip(*xfer), color=f"C{b}", ls="--", marker=".", label=f"{backend} w/ transfers")
                drawn = True
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(unit)
        if drawn:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("fastinit profile: throughput against size (higher is better)", fontsize=11)
    return fig


@_saves(
    "profile_figure",
    records=("list of ProfileRecord", "What ``fastinit.experiments.profile.run`` measured."),
    path=_PATH,
)
def plot_profile(records, path):
    return profile_figure(records)


# --------------------------------------------------------------------------- sweep (phase diagram)


def _edges(values):
    """Cell edges around sorted grid ``values``: midpoints inside, half a step beyond the ends."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _theory_curve(result, fine):
    """6 x the depth scale over ``fine`` sw2 values: xi_c, or xi_q where xi_c is infinite off the
    edge (ReLU at sb2 = 0); returns (values, label)."""
    from .theory import mean_field

    c = result.config
    fields = [mean_field(c.activation, s, c.sb2) for s in fine]
    xi_c = np.array([m.xi_c for m in fields])
    off_edge = np.array([m.phase != "critical" for m in fields])
    if np.all(np.isfinite(xi_c) | ~off_edge):
        return 6 * xi_c, r"$6\,\xi_c$ (mean-field theory)"
    xi_q = np.array([m.xi_q for m in fields])
    values = np.where(np.isfinite(xi_c), xi_c, xi_q)
    return 6 * values, r"$6\,\xi_q$ where $\xi_c = \infty$ (variance depth scale), else $6\,\xi_c$"


def sweep_figure(result, threshold=0.5):
    """The trainability phase diagram of a sweep: accuracy over (sw2, depth) against 6 xi_c.

    Mean train accuracy over seeds as a heatmap on (sw2, depth), the theory's 6 xi_c curve
    (6 xi_q where xi_c is infinite, as for ReLU at sb2 = 0), the edge of chaos, and the
    deepest depth measured to train (accuracy >= `threshold`), at each checkpoint if the
    sweep has them.

    Parameters
    ----------
    result : fastinit.experiments.sweep.SweepResult
        What ``sweep`` returned.
    threshold : float, default 0.5
        Mean train accuracy from which a network counts as trainable.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    c = result.config
    order_s, order_d = np.argsort(c.sw2), np.argsort(c.depths)
    sw2 = np.asarray(c.sw2, dtype=np.float64)[order_s]
    depths = np.asarray(c.depths, dtype=np.float64)[order_d]
    acc = result.seed_mean("train_accuracy")[np.ix_(order_s, order_d)]
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    cmap = __import__("matplotlib").colormaps["viridis"].with_extremes(bad="0.85")
    mesh = ax.pcolormesh(
        _edges(sw2), _edges(depths), np.ma.masked_invalid(acc.T), cmap=cmap, vmin=0.0, vmax=1.0
    )
    fig.colorbar(
        mesh,
        ax=ax,
        label=f"train accuracy after {c.steps} steps"
        + (f" (mean of {len(c.seeds)} seeds)" if len(c.seeds) > 1 else ""),
    )
    fine = np.linspace(sw2[0], sw2[-1], 400)
    six_xi, curve_label = _theory_curve(result, fine)
    ax.plot(fine, six_xi, color="white", lw=2.2, label=curve_label)
    ax.plot(fine, six_xi, color="black", lw=0.8, ls="--")
    if sw2[0] <= result.critical_sw2 <= sw2[-1]:
        ax.axvline(
            result.critical_sw2,
            color="tab:red",
            ls=":",
            lw=1.5,
            label=rf"edge of chaos $\sigma_w^2$ = {result.critical_sw2:.3g}",
        )
    cps = tuple(c.checkpoints)
    for k, step in enumerate(cps[:-1]):
        deepest = result.trainable_depth(threshold, checkpoint=k)[order_s]
        shade = 0.25 + 0.5 * k / max(1, len(cps) - 1)
        ax.plot(
            sw2,
            deepest,
            ls="none",
            marker="o",
            mfc="none",
            mec=(1.0, shade + 0.2, shade),
            mew=1.2,
            ms=4 + 1.5 * k,
            label=f"deepest trainable after {step} steps",
        )
    deepest = result.trainable_depth(threshold)[order_s]
    ax.plot(
        sw2,
        deepest,
        ls="none",
        marker="o",
        mfc="none",
        mec="tab:orange",
        mew=2,
        ms=7,
        label=f"deepest trainable (acc ≥ {threshold:g})" + (f" after {c.steps} steps" if cps else ""),
    )
    ax.set_ylim(max(0.0, _edges(depths)[0]), _edges(depths)[-1])
    ax.set_xlim(max(0.0, _edges(sw2)[0]), _edges(sw2)[-1])
    ax.set_xlabel(r"weight variance $\sigma_w^2$ (weights $\sim N(0, \sigma_w^2/\mathrm{fan\_in})$)")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title(
        f"Trainability of {c.activation} networks, width {c.width}, "
        rf"$\sigma_b^2$ = {c.sb2:g}, MNIST, SGD lr {c.lr:g}",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=7 if cps else 8, framealpha=0.85)
    return fig


@_saves("sweep_figure", result=_SWEEP, path=_PATH, threshold=_THRESHOLD)
def plot_sweep(result, path, threshold=0.5):
    return sweep_figure(result, threshold)


def sweep_steps_path(phase_diagram_path):
    """Where the n(t) figure goes beside the phase diagram: ``<name>-steps.<ext>``.

    Parameters
    ----------
    phase_diagram_path : str or os.PathLike
        The phase diagram's file.

    Returns
    -------
    str
        The n(t) figure's file.
    """
    stem, ext = os.path.splitext(os.fspath(phase_diagram_path))
    return f"{stem}-steps{ext}"


def sweep_steps_figure(result, threshold=0.5):
    """How the trainable depth grows with training time, for a sweep with checkpoints.

    Left: the deepest trainable depth per sw2, one line per checkpoint, with the theory's 6 xi_c.
    Right: n(t) in "deepest trainable depth = n xi_c" per phase (ordered: chi1 < 1, chaotic:
    chi1 > 1) against the steps (log axis), the bar up to the next grid depth's n, and
    Schoenholz et al.'s 6.

    Parameters
    ----------
    result : fastinit.experiments.sweep.SweepResult
        With ``config.checkpoints``.
    threshold : float, default 0.5
        Mean train accuracy from which a network counts as trainable.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels: depth against sw2 per checkpoint, n(t) against the steps.

    Raises
    ------
    ValueError
        If the sweep has no checkpoints.
    """
    c = result.config
    cps = tuple(c.checkpoints)
    if not cps:
        raise ValueError(f"sweep {result.name} has no checkpoints: run it with --checkpoints")
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.15, 1.0]))
    order = np.argsort(c.sw2)
    sw2 = np.asarray(c.sw2, dtype=np.float64)[order]
    cmap = __import__("matplotlib").colormaps["plasma"]
    for k, step in enumerate(cps):
        color = cmap(0.1 + 0.75 * k / max(1, len(cps) - 1))
        deepest = result.trainable_depth(threshold, checkpoint=k)[order]
        left.plot(sw2, deepest, marker="o", ms=4, color=color, lw=1.3, label=f"after {step} steps")
    fine = np.linspace(sw2[0], sw2[-1], 400)
    six_xi, curve_label = _theory_curve(result, fine)
    left.plot(fine, six_xi, color="black", ls="--", lw=1.0, label=curve_label)
    if sw2[0] <= result.critical_sw2 <= sw2[-1]:
        left.axvline(result.critical_sw2, color="tab:red", ls=":", lw=1.2, label="edge of chaos")
    top = max(c.depths)
    left.axhline(top, color="0.6", lw=0.8)
    left.set_ylim(0, top * 1.15)
    left.set_xlabel(r"$\sigma_w^2$")
    left.set_ylabel("deepest trainable depth (hidden layers)")
    left.set_title(
        f"deepest depth with mean train accuracy ≥ {threshold:g} (grey: the grid's deepest)", fontsize=9
    )
    left.legend(fontsize=7, loc="upper right", framealpha=0.85)
    fits = [result.fit_multiplier(threshold, k) for k in range(len(cps))]
    styles = {
        "ordered": ("tab:blue", "s", r"ordered ($\chi_1 < 1$)"),
        "chaotic": ("tab:red", "o", r"chaotic ($\chi_1 > 1$)"),
    }
    steps = np.asarray(cps, dtype=np.float64)
    for phase, (color, marker, name) in styles.items():
        n = np.array([f[phase].n if phase in f else np.nan for f in fits])
        up = np.array([f[phase].n_upper if phase in f else np.nan for f in fits])
        rows = [len(f[phase].ratios) if phase in f else 0 for f in fits]
        if np.all(np.isnan(n)):
            continue
        shift = 0.97 if phase == "ordered" else 1.03  # keep the bars of the two phases apart
        right.errorbar(
            steps * shift,
            n,
            yerr=[np.zeros_like(n), np.nan_to_num(up - n)],
            color=color,
            marker=marker,
            ms=6,
            capsize=3,
            lw=1.4,
            label=name,
        )
        for x, y, r in zip(steps * shift, n, rows):
            if r:
                right.annotate(
                    f"{r}", (x, y), textcoords="offset points", xytext=(5, -10), fontsize=6, color=color
                )
    right.axhline(6.0, color="black", ls="--", lw=1.0, label="6 (Schoenholz et al. 2017)")
    right.set_xscale("log")
    right.set_xticks(steps, [str(s) for s in cps])
    right.set_xlabel("SGD steps")
    right.set_ylabel(r"n in deepest trainable depth = n $\xi_c$")
    right.set_ylim(0, max(7.0, right.get_ylim()[1]))
    right.set_title("n(t) per phase (rows fitted beside each point; bar: to the next grid depth)", fontsize=8)
    right.legend(fontsize=7, loc="lower right", framealpha=0.85)
    fig.suptitle(
        f"Trainable depth against training time: {c.activation}, width {c.width}, "
        f"$\\sigma_b^2$ = {c.sb2:g}, lr {c.lr:g}, batch {c.batch_size}, {len(c.seeds)} seed(s), "
        f"accuracy on {c.eval_samples} training images",
        fontsize=10,
    )
    fig.supxlabel(
        "n: geometric mean of (deepest trainable depth) / xi_c over the rows whose boundary lies "
        "inside the grid; a lower estimate at the grid's resolution. Inputs are pixels/255, whose "
        "variance starts below q*.",
        fontsize=7,
        color="0.35",
    )
    return fig


@_saves("sweep_steps_figure", result=_SWEEP, path=_PATH, threshold=_THRESHOLD)
def plot_sweep_steps(result, path, threshold=0.5):
    return sweep_steps_figure(result, threshold)


# --------------------------------------------------------------------------- Jacobian spectrum


def _drawable(lam):
    """The squared singular values a log axis can show: above 1e-24 of the largest."""
    return lam[lam > 1e-24 * lam.max()] if lam.size and lam.max() > 0 else lam[:0]


def spectrum_figure(result):
    """The density of the squared singular values of the input-output Jacobian.

    One panel per run of the result (activation x weights), one line per depth, on a log10
    axis shared by every panel. Each depth's theory (infinite width) is marked: its mean
    ``chi1^L`` (dashed line) and the interval mean +- std of ``lam`` (a bar at the top, cut
    at the axis' left end when the lower end is <= 0). ``lam`` below 1e-24 of the largest
    (ReLU's exact zeros and values under float64's resolution) cannot be drawn; the legend
    gives their fraction.

    Parameters
    ----------
    result : fastinit.experiments.spectrum.SpectrumResult
        What ``fastinit.experiments.spectrum.run`` returned.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    runs = list(result.runs.values())
    depths = sorted({d for r in runs for d in r.singular_values})
    stats = {(r.name, d): r.stats(d) for r in runs for d in r.singular_values}
    cols = min(2, len(runs))
    rows = -(-len(runs) // cols)
    fig = Figure(figsize=(5.2 * cols + 0.6, 3.6 * rows + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharex=True)).ravel()
    positive = [
        np.log10(lam)
        for lam in (_drawable(np.square(r.singular_values[d])) for r in runs for d in r.singular_values)
        if lam.size
    ]
    lo = max(-12.0, np.floor(min((np.percentile(p, 1) for p in positive), default=-3.0)))
    hi = np.ceil(max((p.max() for p in positive), default=1.0)) + 0.5
    edges = np.linspace(lo, hi, 61)
    colors = {d: f"C{i}" for i, d in enumerate(depths)}
    for ax, r in zip(axes, runs):
        for i, d in enumerate(sorted(r.singular_values)):
            s = stats[(r.name, d)]
            lam = np.square(r.singular_values[d])
            density, _ = np.histogram(np.log10(_drawable(lam)), bins=edges)
            density = density / max(1, lam.size) / np.diff(edges)  # per decade, over all values
            label = (
                f"L={d}: mean {s.mean:.3g} (theory {s.theory_mean:.3g}), "
                f"var {s.variance:.3g} ({s.theory_variance:.3g})"
            )
            if s.zero > 0.005:
                label += f", {100 * s.zero:.0f}% ~0"
            ax.stairs(density, edges, color=colors[d], lw=1.4, label=label)
            mean, sd = s.theory_mean, np.sqrt(max(s.theory_variance, 0.0))
            ax.axvline(np.log10(mean), color=colors[d], ls="--", lw=0.9)
            left = np.log10(mean - sd) if mean - sd > 0 else lo
            ax.plot(
                [left, np.log10(mean + sd)],
                [0.97 - 0.035 * i] * 2,
                color=colors[d],
                lw=3,
                solid_capstyle="butt",
                transform=ax.get_xaxis_transform(),
            )
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, ax.get_ylim()[1] * (1.5 + 0.1 * len(r.singular_values)))  # room for bars and legend
        ax.set_title(
            f"{r.activation}, {r.weights} weights: $\\sigma_w^2$ = {r.sw2:.4g}, "
            f"$\\sigma_b^2$ = {r.sb2:.3g}, q* = {r.q_star:.3g}",
            fontsize=9,
        )
        ax.set_ylabel("density per decade", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(
            fontsize=6.5,
            loc="upper left",
            bbox_to_anchor=(0.0, 0.97 - 0.035 * len(r.singular_values)),
            framealpha=0.8,
        )
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    for ax in axes[-cols:]:
        ax.set_xlabel(
            r"$\log_{10}\lambda$, $\lambda$ = squared singular value of "
            r"$J = \partial x_L / \partial x_0$",
            fontsize=8,
        )
    c = result.config
    fig.suptitle(f"Jacobian spectrum at init: width {c.width}, {c.samples} draws, seed {c.seed}", fontsize=10)
    fig.supxlabel(
        "dashed: theory mean $\\chi_1^L$; bars at the top: theory mean ± std, std$^2$ = "
        "L ($\\mu_2/\\mu_1^2$ - 1 - $s_1$) $\\chi_1^{2L}$, $s_1$ = -1 Gaussian, 0 orthogonal "
        "(Pennington et al. 2017; infinite width: at width N expect deviations growing like L/N)",
        fontsize=7,
        color="0.35",
    )
    return fig


@_saves(
    "spectrum_figure",
    result=("fastinit.experiments.spectrum.SpectrumResult", "What ``run`` returned."),
    path=_PATH,
)
def plot_spectrum(result, path):
    return spectrum_figure(result)


# --------------------------------------------------------------------------- learning speed (--train)


def spectrum_training_figure(result):
    """Learning speed under dynamical isometry: steps to a train accuracy, orthogonal against Gaussian.

    Left: the train accuracy on the fixed subset against the steps, one colour per weight
    distribution, one line style per depth, one thin line per seed. Right: the steps each seed
    took to reach the target per depth and weight distribution (a marker above the axis' top
    for a seed that did not reach it within ``max_steps``), the median as a bar.

    Parameters
    ----------
    result : fastinit.experiments.spectrum_training.TrainingResult
        What ``spectrum_training.run`` returned.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    c = result.config
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.25, 1.0]))
    colors = {"orthogonal": "tab:green", "gaussian": "tab:purple"}
    depths = sorted(c.depths)
    dashes = ["-", "--", ":", "-."]
    for (weights, depth), r in sorted(result.runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        style = dashes[depths.index(depth) % len(dashes)]
        for k in range(len(r.seeds)):
            ok = ~np.isnan(r.train_accuracy[k])
            left.plot(
                r.eval_steps[ok],
                r.train_accuracy[k][ok],
                color=colors.get(weights, "0.3"),
                ls=style,
                lw=1.0,
                alpha=0.8,
                label=f"{weights}, depth {depth}" if k == 0 else None,
            )
    left.axhline(c.target, color="0.4", lw=0.8, ls=":")
    left.set_xlabel("SGD steps")
    left.set_ylabel(f"train accuracy (first {c.eval_samples} training images)")
    left.set_ylim(0, 1)
    left.set_title("one line per seed; runs stop at the target", fontsize=9)
    left.legend(fontsize=7, loc="lower right", framealpha=0.85)
    width = 0.35
    top = c.max_steps * 1.12
    for w_i, weights in enumerate(c.weights):
        for d_i, depth in enumerate(depths):
            r = result.runs.get((weights, depth))
            if r is None:
                continue
            x = d_i + (w_i - (len(c.weights) - 1) / 2) * width
            med = r.median_steps
            right.bar(
                x,
                min(med, top),
                width=width * 0.9,
                color=colors.get(weights, "0.5"),
                alpha=0.35,
                label=weights if d_i == 0 else None,
            )
            steps = np.where(np.isnan(r.steps_to_target), top * 0.97, r.steps_to_target)
            jitter = np.linspace(-0.08, 0.08, len(steps)) if len(steps) > 1 else np.zeros(1)
            right.scatter(x + jitter, steps, color=colors.get(weights, "0.3"), s=18, zorder=3, marker="o")
            missed = np.isnan(r.steps_to_target)
            if missed.any():
                right.scatter(x + jitter[missed], steps[missed], color="black", marker="^", s=22, zorder=4)
    right.axhline(c.max_steps, color="0.5", lw=0.8, ls="--")
    right.set_xticks(range(len(depths)), [f"depth {d}" for d in depths])
    right.set_ylim(0, top)
    right.set_ylabel(f"steps to {100 * c.target:g}% train accuracy")
    right.set_title(
        f"bars: median over seeds {', '.join(map(str, c.seeds))}; ▲ not reached by {c.max_steps}", fontsize=9
    )
    right.legend(fontsize=7, loc="upper left", framealpha=0.85)
    fig.suptitle(
        f"Learning speed at the edge of chaos: tanh, width {c.width}, "
        f"$\\sigma_w^2$ = {result.sw2:.4g}, "
        f"$\\sigma_b^2$ = {result.sb2:.2g} (q* = {result.q_star:.3g}), SGD lr {c.lr:g}, batch "
        f"{c.batch_size}, MNIST",
        fontsize=10,
    )
    return fig


@_saves(
    "spectrum_training_figure",
    result=(
        "fastinit.experiments.spectrum_training.TrainingResult",
        "What ``spectrum_training.run`` returned.",
    ),
    path=_PATH,
)
def plot_spectrum_training(result, path):
    return spectrum_training_figure(result)
