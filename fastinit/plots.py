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
(``fastinit bench-report``).
"""

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

__all__ = [
    "PlotError",
    "save_figure",
    "histogram_figure",
    "plot_histogram",
]

FORMATS = ("png", "pdf", "svg")


class PlotError(ValueError):
    """A figure cannot be written (bad path or unsupported format)."""


# --------------------------------------------------------------------------- common


def check_figure_path(path):
    """Validate an output path for a figure before any work is done; return it as a str.

    Raises :class:`PlotError` for an unsupported extension, a missing folder or a directory.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise PlotError(f"figure path must be a file name, got {path!r}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise PlotError(f"figure file {path} must end in {', '.join('.' + f for f in FORMATS)}")
    if os.path.isdir(path):
        raise PlotError(f"figure path {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise PlotError(f"cannot write figure {path}: folder {parent} does not exist")
    return path


def save_figure(fig, path, dpi=120):
    """Save ``fig`` to ``path`` (format from the extension) atomically; return the path."""
    path = check_figure_path(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format=ext, dpi=dpi)
        os.replace(tmp, path)
    except OSError as exc:
        raise PlotError(f"cannot write figure {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# --------------------------------------------------------------------------- activation histograms

_HIST_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
_HIST_BINS = 30


def _relu_top(values):
    """The 99.5th percentile of the positive values (1 when there are none)."""
    pos = values[values > 0]
    if pos.size == 0:
        return 1.0
    hi = float(np.percentile(pos, 99.5))
    return hi if np.isfinite(hi) and hi > 0 else 1.0


def _relu_ranges(acts):
    """Per-layer x ranges for one init's ReLU row.

    One shared range (so shrinking or growing activations show) when the
    layers' scales lie within a factor 10 of each other; otherwise (exploding
    or vanishing activations) each layer gets its own range so its shape stays
    visible, and the std note tells the scale.
    """
    tops = [_relu_top(layer) for layer in acts]
    if max(tops) <= 10 * min(tops):
        return [(0.0, max(tops))] * len(tops)
    return [(0.0, t) for t in tops]


def histogram_figure(results):
    """The classic activation-histogram figure for :class:`fastinit.histogram.HistogramResults`.

    One row per init, one column per layer; 30-bin histograms of the layer's
    outputs as a fraction of all values, over (0, 1) for sigmoid, (-1, 1) for
    tanh, and for ReLU from 0 to the 99.5th percentile of the positive values
    (shared by the row unless the layers' scales differ by more than 10x,
    see ``_relu_ranges``), with exact zeros (dead units) left out of the bars and reported
    in the panel. Each panel notes the measured std, the mean-field theory std
    and the saturated (or dead) percentage. Returns a ``Figure``.
    """
    inits = list(results.runs)
    rows, cols = len(inits), results.layers
    fig = Figure(figsize=(1.9 * cols + 1.4, 1.55 * rows + 1.0), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False, sharey="row"))
    relu = results.activation == "relu"
    sat_label = "dead" if relu else "sat"
    for r, spec in enumerate(inits):
        run = results.runs[spec]
        ranges = _relu_ranges(run.activations) if relu else [_HIST_RANGE[results.activation]] * cols
        for c in range(cols):
            ax = axes[r, c]
            lo, hi = ranges[c]
            values = run.activations[c].ravel()
            if relu:
                values = values[values > 0]
            weights = np.full(values.shape, 1.0 / max(1, run.activations[c].size))
            ax.hist(values, bins=_HIST_BINS, range=(lo, hi), weights=weights, color="C0" if not relu else "C2")
            ax.set_xlim(lo, hi)
            ax.tick_params(labelsize=7)
            if relu:
                ax.xaxis.set_major_locator(MaxNLocator(4))
                ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            ax.text(0.97, 0.95,
                    f"std {run.std[c]:.3g}\ntheory {run.theory_std[c]:.3g}\n{sat_label} {100 * run.saturated[c]:.0f}%",
                    transform=ax.transAxes, ha="right", va="top", fontsize=6.5,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.75))
            if c == cols - 1:
                top = max(a.get_ylim()[1] for a in axes[r])
                ax.set_ylim(0, 1.65 * top)  # headroom for the notes (the row shares y)
            if r == 0:
                ax.set_title(f"layer {c + 1}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{spec}\nfraction", fontsize=8)
    rule = {"sigmoid": "saturated: y<0.01 or y>0.99", "tanh": "saturated: |y|>0.99",
            "relu": "zeros (dead) not drawn"}[results.activation]
    fig.suptitle(
        f"{results.activation} activations per layer: {results.layers} layers x {results.units} units, "
        f"{results.samples} samples, seed {results.seed} ({rule})",
        fontsize=10,
    )
    return fig


def plot_histogram(results, path):
    """Build :func:`histogram_figure` and save it to ``path``; return the path."""
    check_figure_path(path)
    return save_figure(histogram_figure(results), path)
