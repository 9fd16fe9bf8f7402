"""Turn a saved pytest-benchmark run into a markdown table and a figure.

Save a run with ``pytest bench --benchmark-only --benchmark-json bench.json``
(or ``--benchmark-autosave``, which writes ``.benchmarks/<machine>/NNNN_*.json``),
then::

    fastinit bench-report bench.json --md BENCH.md --plot bench.png

or from Python::

    from fastinit.benchreport import load_benchmarks, format_markdown
    print(format_markdown(load_benchmarks("bench.json")))

One row per benchmark, grouped by pytest-benchmark group (the suite groups by
kernel and size, so a group compares backends): backend, mean and median
time, ops/s (1 / mean), GFLOP/s and GB/s when the benchmark put them in
``extra_info``, and the speed-up over the numpy row of the same group,
computed here from the medians in the same file (not copied from
``extra_info``, so it is always consistent with the times shown).

The backend of a row is ``extra_info["backend"]`` if present, else a
``backend`` parameter, else the first known backend name (numpy, cpu, cuda,
torch) among the test's parameter ids, else the test name.
"""

import json
import math
import os
import re
from dataclasses import dataclass, field

from .errors import FastinitError
from .formatting import format_time

__all__ = [
    "BenchReportError",
    "BenchRow",
    "BenchReport",
    "load_benchmarks",
    "format_markdown",
    "plot_benchmarks",
]

KNOWN_BACKENDS = ("numpy", "cpu", "cuda", "torch")
_GFLOPS_KEYS = ("gflops", "gflop_s", "gflop/s", "gflops_per_s")
_GBS_KEYS = ("gbs", "gb_s", "gb/s", "gbps", "gbytes_s")


class BenchReportError(FastinitError, ValueError):
    """The benchmark file cannot be read or is not a pytest-benchmark JSON file."""


@dataclass
class BenchRow:
    """One benchmark of the file; times in seconds.

    Parameters
    ----------
    group : str
        The pytest-benchmark group (else the test name without its parameters).
    name : str
        The test's name, with its parameter ids.
    backend : str
        The backend of the row (see the module docstring for how it is found).
    mean, median, stddev, min : float
        Statistics of the timed rounds, in seconds.
    rounds : int
        The number of timed rounds.
    gflops : float, optional
        GFLOP/s from ``extra_info``; None when the benchmark did not record it.
    gbs : float, optional
        GB/s from ``extra_info``; None when the benchmark did not record it.
    speedup : float, optional
        The group's numpy median / this median; None when the group has no numpy row, or more
        than one.
    extra_info : dict, optional
        The benchmark's ``extra_info``, as saved.
    """

    group: str
    name: str
    backend: str
    mean: float
    median: float
    stddev: float
    min: float
    rounds: int
    gflops: float = None
    gbs: float = None
    speedup: float = None  # numpy median / this median, same group; None without a numpy row
    extra_info: dict = field(default_factory=dict)

    @property
    def ops(self):
        """Operations per second, ``1 / mean`` (inf for a zero mean).

        Returns
        -------
        float
            The rate.
        """
        return 1.0 / self.mean if self.mean > 0 else math.inf


@dataclass
class BenchReport:
    """All rows of a file, in file order, plus the run's metadata.

    Parameters
    ----------
    path : str
        The JSON file read.
    rows : list of BenchRow
        One row per timed benchmark, in file order.
    machine : str
        A one-line description of the machine that ran the benchmarks.
    when : str
        The run's date and time, as saved ("?" when missing).
    commit : str
        The commit benchmarked (a hex id cut to 10 digits, " (dirty)" appended for a dirty
        tree), or "unknown".
    """

    path: str
    rows: list
    machine: str
    when: str
    commit: str

    @property
    def groups(self):
        """The benchmark groups, in order of first appearance.

        Returns
        -------
        list of str
            Each group once.
        """
        seen = []
        for r in self.rows:
            if r.group not in seen:
                seen.append(r.group)
        return seen

    def group_rows(self, group):
        """The rows of one group, in file order.

        Parameters
        ----------
        group : str
            The group's name.

        Returns
        -------
        list of BenchRow
            Its rows; empty for an unknown group.
        """
        return [r for r in self.rows if r.group == group]


def _backend_of(bench):
    extra = bench.get("extra_info") or {}
    if isinstance(extra.get("backend"), str):
        return extra["backend"]
    params = bench.get("params") or {}
    if isinstance(params.get("backend"), str):
        return params["backend"]
    param_ids = re.split(r"[-\[\],]", bench.get("param") or "") + re.split(
        r"[\[\]\-_]", bench.get("name", "")
    )
    for token in param_ids:
        if token in KNOWN_BACKENDS:
            return token
    return bench.get("name", "?")


def _extra_number(extra, keys):
    for key, value in extra.items():
        if key.lower() in keys and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def newest_json(folder):
    """The most recently modified ``.json`` file under ``folder`` (e.g. ``.benchmarks``), or None."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, name) for name in files if name.endswith(".json")]
    return max(found, key=os.path.getmtime) if found else None


def load_benchmarks(path):
    """Read a pytest-benchmark JSON file into a `BenchReport`.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file, or a folder such as ``.benchmarks`` (what ``--benchmark-autosave``
        writes), whose newest ``.json`` file is read.

    Returns
    -------
    BenchReport
        The report, with speed-ups computed from the medians.

    Raises
    ------
    BenchReportError
        With a one-line message if the file is missing, unreadable, not JSON, not a
        pytest-benchmark file, or holds no timed benchmark (e.g. a run with
        ``--benchmark-disable``), or the folder holds no ``.json`` file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        newest = newest_json(path)
        if newest is None:
            raise BenchReportError(f"{path} is a folder with no .json benchmark files")
        path = newest
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise BenchReportError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchReportError(f"{path} is not a JSON file ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise BenchReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchReportError(
            f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list); "
            "write one with pytest --benchmark-json FILE"
        )
    rows = []
    for bench in data["benchmarks"]:
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not isinstance(stats, dict) or not isinstance(stats.get("median"), (int, float)):
            continue
        extra = bench.get("extra_info") or {}
        rows.append(
            BenchRow(
                group=bench.get("group") or bench.get("name", "?").split("[")[0],
                name=bench.get("name", "?"),
                backend=_backend_of(bench),
                mean=float(stats["mean"]),
                median=float(stats["median"]),
                stddev=float(stats.get("stddev", 0.0)),
                min=float(stats.get("min", stats["median"])),
                rounds=int(stats.get("rounds", 0)),
                gflops=_extra_number(extra, _GFLOPS_KEYS),
                gbs=_extra_number(extra, _GBS_KEYS),
                extra_info=extra,
            )
        )
    if not rows:
        raise BenchReportError(
            f"{path} holds no timed benchmarks (was the run made with --benchmark-disable?)"
        )
    report = BenchReport(path, rows, _machine(data), str(data.get("datetime", "?")), _commit(data))
    _speedups(report)
    return report


def _speedups(report):
    for group in report.groups:
        rows = report.group_rows(group)
        numpy_rows = [r for r in rows if r.backend == "numpy"]
        if len(numpy_rows) != 1:
            continue  # none, or ambiguous: no speed-up column for this group
        base = numpy_rows[0].median
        for r in rows:
            r.speedup = base / r.median if r.median > 0 else None


def _machine(data):
    info = data.get("machine_info") or {}
    cpu = info.get("cpu") or {}
    parts = [cpu.get("brand_raw") or info.get("processor") or info.get("machine") or "unknown CPU"]
    if cpu.get("count"):
        parts.append(f"{cpu['count']} logical cores")
    if info.get("python_version"):
        parts.append(f"Python {info['python_version']}")
    if info.get("system"):
        parts.append(str(info["system"]))
    ours = info.get("fastinit") or {}  # bench/conftest.py: fastinit.machine.describe()
    if ours:
        parts.append(
            f"host ISA {ours.get('host_isa')}, code for {ours.get('code_cpu')} ({ours.get('code_isa')})"
        )
        parts.append(f"numpy {ours.get('numpy')}, numba {ours.get('numba')}")
    return ", ".join(str(p) for p in parts)


def _commit(data):
    info = data.get("commit_info") or {}
    cid = info.get("id")
    if not cid:
        return "unknown"
    cid = str(cid)
    cid = cid[:10] if re.fullmatch(r"[0-9a-f]{11,}", cid) else cid
    return f"{cid}{' (dirty)' if info.get('dirty') else ''}"


def _num(value, fmt="{:.3g}"):
    return "-" if value is None else fmt.format(value)


def _ops(value):
    if value >= 1e6:
        return f"{value / 1e6:.3g} M"
    if value >= 1e3:
        return f"{value / 1e3:.3g} k"
    return f"{value:.3g}"


def format_markdown(report):
    """The report as markdown: a short header and one table, rows grouped by benchmark group.

    Parameters
    ----------
    report : BenchReport
        The report, as from `load_benchmarks`.

    Returns
    -------
    str
        The markdown text, without a trailing newline.
    """
    lines = [
        "# Benchmark report",
        "",
        f"- file: `{os.path.basename(report.path)}`, run {report.when}, commit {report.commit}",
        f"- machine: {report.machine}",
        "- speed-up: median time of the group's numpy row / median time of the row (same file); "
        "ops/s = 1 / mean",
        "",
        "| group | backend | mean | median | ops/s | GFLOP/s | GB/s | speed-up vs numpy | rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in report.groups:
        rows = report.group_rows(group)
        dup = {r.backend for r in rows if sum(o.backend == r.backend for o in rows) > 1}
        for r in rows:
            label = r.backend if r.backend not in dup else f"{r.backend} ({r.name})"
            speed = "-" if r.speedup is None else f"{r.speedup:.3g}x"
            lines.append(
                f"| {group} | {label} | {format_time(r.mean)} | {format_time(r.median)} | {_ops(r.ops)} | "
                f"{_num(r.gflops)} | {_num(r.gbs)} | {speed} | {r.rounds} |"
            )
    return "\n".join(lines)


def plot_benchmarks(report, path):
    """Build :func:`fastinit.plots.benchmark_figure` and save it to `path`.

    Parameters
    ----------
    report : BenchReport
        The report, as from `load_benchmarks`.
    path : str or os.PathLike
        The figure file; its extension (.png, .pdf or .svg) picks the format.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    fastinit.plots.PlotError
        For an unsupported extension, a missing folder, a directory, or a failed write;
        checked before the figure is built.
    """
    from .plots import benchmark_figure, check_figure_path, save_figure

    check_figure_path(path)
    return save_figure(benchmark_figure(report), path)
