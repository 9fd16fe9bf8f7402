"""What a results file holds, for ``fastinit show``: :func:`describe` and :func:`format_info`.

:func:`describe` reads the structure of a results file (every group and
dataset with attrs, shapes, dtypes, chunking, compression, the values of small
datasets and a summary of 1-D series) into a :class:`FileInfo` of plain Python
objects; :func:`format_info` renders it as readable text (the tree, then
per-layer statistics as tables). Reading goes through
:func:`fastinit.store.open_read`, so every problem with a path or a file
raises :class:`fastinit.store.StoreError` with a one-line message naming the
file; no h5py traceback reaches the user. Writing lives in
:mod:`fastinit.store`. What the groups and datasets of fastinit's layout are
comes from :mod:`fastinit.schema`: the text view explains each kind of group
once, and gives a dataset written without ``units`` and ``description`` (by an
older fastinit) those of its schema entry, saying so.
"""

import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from . import schema
from .store import StoreError, h5_reason, open_read, plain, walk

__all__ = ["describe", "FileInfo", "NodeInfo", "format_info"]


#: Datasets with at most this many elements have their values read by describe().
SMALL_DATASET = 256
#: 1-D numeric datasets with at most this many elements get a summary (first, last, min, max).
SUMMARY_DATASET = 1_000_000


@dataclass
class NodeInfo:
    """One group or dataset of a results file, as plain Python values.

    Parameters
    ----------
    path : str
        Its path in the tree, e.g. ``/train/he/loss``.
    kind : str
        "group" or "dataset".
    attrs : dict
        Its attrs as plain Python values (:func:`fastinit.store.plain`).
    shape, dtype, chunks, compression : tuple, str, tuple, str
        Of a dataset (None for a group).
    value : numpy.ndarray or None
        The values of a dataset of at most ``SMALL_DATASET`` elements.
    summary : dict or None
        first, last, min, max, nonfinite of a 1-D numeric dataset of at most
        ``SUMMARY_DATASET`` elements.
    """

    path: str
    kind: str  # "group" or "dataset"
    attrs: dict = field(default_factory=dict)
    shape: tuple = None
    dtype: str = None
    chunks: tuple = None
    compression: str = None
    value: object = None  # numpy array for small datasets (<= SMALL_DATASET elements), else None
    summary: dict = (
        None  # 1-D numeric datasets up to SUMMARY_DATASET elements: first, last, min, max, nonfinite
    )

    @property
    def depth(self):
        """How deep the node sits: 0 for the root, 1 for ``/train``, 2 for ``/train/he``.

        Returns
        -------
        int
            The number of ``/`` in :attr:`path`.
        """
        return 0 if self.path == "/" else self.path.count("/")

    @property
    def name(self):
        """The last component of :attr:`path` (``/`` for the root).

        Returns
        -------
        str
            E.g. ``loss``.
        """
        return self.path.rsplit("/", 1)[-1] or "/"


@dataclass
class FileInfo:
    """What :func:`describe` returns: root attrs, size and every node in file order.

    Parameters
    ----------
    path : str
        The file described.
    size_bytes : int
        Its size with every part file it links.
    attrs : dict
        Its root attrs as plain Python values.
    nodes : list of NodeInfo
        Every group and dataset, parents before their children.
    """

    path: str
    size_bytes: int
    attrs: dict
    nodes: list

    def node(self, path):
        """The node at ``path``.

        Parameters
        ----------
        path : str
            An absolute path in the tree.

        Returns
        -------
        NodeInfo or None
            None if the file has no such node.
        """
        for n in self.nodes:
            if n.path == path:
                return n
        return None

    def children(self, path):
        """The direct children of the group at ``path``.

        Parameters
        ----------
        path : str
            An absolute group path.

        Returns
        -------
        list of NodeInfo
            In file order.
        """
        prefix = path.rstrip("/") + "/"
        return [n for n in self.nodes if n.path.startswith(prefix) and "/" not in n.path[len(prefix) :]]


def describe(path):
    """Read the structure of the results file ``path`` into a :class:`FileInfo`.

    Every group and dataset in file order (through the external links to part
    files) with attrs, shapes, dtypes, chunking and compression; small
    datasets (per-layer statistics and the like) carry their values.

    Parameters
    ----------
    path : str or os.PathLike
        A top file (or a file of the single-file layout).

    Returns
    -------
    FileInfo
        ``size_bytes`` counts the top file and every part file it links.

    Raises
    ------
    StoreError
        For a missing, unreadable or non-HDF5 file, or a missing part file.
    """
    with open_read(path) as f:
        nodes = []
        files = {os.path.abspath(f.filename)}
        try:
            for full, obj in walk(f):
                files.add(os.path.abspath(obj.file.filename))
                nodes.append(_node(full, obj))
        except (OSError, RuntimeError, KeyError) as exc:
            raise StoreError(f"cannot read {path}: {h5_reason(exc)}") from None
        attrs = {k: plain(v) for k, v in f.attrs.items()}
    size = sum(os.path.getsize(name) for name in files if os.path.exists(name))
    return FileInfo(os.fspath(path), size, attrs, nodes)


def _node(full, obj):
    attrs = {k: plain(v) for k, v in obj.attrs.items()}
    if not isinstance(obj, h5py.Dataset):
        return NodeInfo(full, "group", attrs)
    numeric = obj.dtype.kind in "fiub"
    text = h5py.check_string_dtype(obj.dtype) is not None
    value = None
    if obj.size <= SMALL_DATASET and numeric:
        value = obj[()]
    elif obj.size <= SMALL_DATASET and text and obj.ndim == 1:
        value = np.array(obj.asstr(errors="replace")[()], dtype=object)
    summary = None
    if numeric and obj.ndim == 1 and 0 < obj.size <= SUMMARY_DATASET:
        data = np.asarray(value if value is not None else obj[()], dtype=np.float64)
        finite = data[np.isfinite(data)]
        summary = {
            "first": data[0],
            "last": data[-1],
            "min": finite.min() if finite.size else np.nan,
            "max": finite.max() if finite.size else np.nan,
            "nonfinite": int(data.size - finite.size),
        }
    return NodeInfo(
        full, "dataset", attrs, tuple(obj.shape), str(obj.dtype), obj.chunks, obj.compression, value, summary
    )


# --------------------------------------------------------------------------- text view (fastinit show)

#: Attrs hidden by format_info unless all_attrs (bookkeeping, or long).
QUIET_ATTRS = ("command_line", "written_utc", "saturation", "weight_std")
#: Preferred column order of per-layer tables; other columns follow alphabetically.
STAT_ORDER = ("mean", "std", "saturated", "theory_std", "weight_std", "weight_std_measured", "nonfinite")


def _fmt_value(value, limit=6):
    if isinstance(value, np.ndarray) or isinstance(value, list):
        arr = np.asarray(value)
        if arr.dtype.kind in "fiub" and arr.ndim == 1 and arr.size <= limit:
            return "[" + ", ".join(f"{v:.4g}" for v in arr.tolist()) + "]"
        if arr.dtype.kind in "OSU" and arr.ndim == 1 and arr.size <= limit:
            return "[" + ", ".join(str(v) for v in arr.tolist()) + "]"
        return f"<{arr.dtype} array {tuple(arr.shape)}>"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return repr(text) if (" " in text or not text) and isinstance(value, str) else text


def _fmt_size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def _int_attr(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _is_text(column):
    return column.dtype == object


def _stat_columns(info, group_path):
    """Short 1-D datasets of one common length directly in a group, as table columns.

    Needs two or more numeric ones; short text datasets of the same length
    (names of cases, units, ...) come first as label columns. None if the
    group has no such table.
    """
    cols = {}
    for n in info.children(group_path):
        if n.kind == "dataset" and n.value is not None and len(n.shape) == 1 and n.shape[0] >= 1:
            cols[n.name] = np.asarray(n.value)
    numeric_lengths = [len(v) for v in cols.values() if not _is_text(v)]
    if len(numeric_lengths) < 2:
        return None
    common = max(set(numeric_lengths), key=numeric_lengths.count)
    cols = {k: v for k, v in cols.items() if len(v) == common}
    if sum(not _is_text(v) for v in cols.values()) < 2:
        return None
    text = sorted(k for k, v in cols.items() if _is_text(v))
    order = (
        text
        + [k for k in STAT_ORDER if k in cols]
        + sorted(k for k in cols if k not in STAT_ORDER and k not in text)
    )
    return {k: cols[k] for k in order}


def format_info(info, group="/", *, all_attrs=False, stats=True):
    """Render a :class:`FileInfo` (from :func:`describe`) as readable text.

    A header (size, version, times, last command), the tree of groups and
    datasets under ``group`` (shape, dtype, compression, the informative attrs
    or all of them with ``all_attrs``; ``# what it holds`` under the first
    group of each kind :mod:`fastinit.schema` declares; ``[units] description``
    of datasets, from the schema for datasets stored without them;
    first/last/min/max of 1-D series such as losses), then, with ``stats``,
    a table for every group that holds two or more short 1-D numeric datasets
    of the same length (per-layer statistics when the group's ``layers`` attr
    matches), one table for all sibling groups with the same columns.

    Parameters
    ----------
    info : FileInfo
        What :func:`describe` read.
    group : str
        Show only this group and what is below it (default: everything).
    all_attrs : bool
        Every attr, also the bookkeeping ones, unshortened; datasets listed one by one.
    stats : bool
        Append the tables.

    Returns
    -------
    str
        The text, lines joined by newlines.

    Raises
    ------
    StoreError
        If ``group`` is not in the file.
    """
    group = "/" + group.strip("/") if group.strip("/") else "/"
    if group != "/" and info.node(group) is None:
        top = [n.path for n in info.nodes if n.depth == 1]
        raise StoreError(f"{info.path} has no group {group}; top-level groups: {', '.join(top) or 'none'}")
    a = info.attrs
    lines = [f"{info.path}  ({_fmt_size(info.size_bytes)})"]
    meta = [f"fastinit {a['fastinit_version']}" if "fastinit_version" in a else "not written by fastinit"]
    meta += [f"{k.replace('_utc', '')} {a[k]}" for k in ("created_utc", "modified_utc") if k in a]
    lines.append("  " + ", ".join(meta))
    if "command_line" in a:
        lines.append(f"  last command: {a['command_line']}")
    if "cpu_model" in a:  # written by fastinit.store from fastinit.machine.provenance()
        lines.append(
            f"  written on: {a['cpu_model']} ({a.get('cpu_isa')}; code for {a.get('code_isa')}), "
            f"{a.get('cores')} cores, {a.get('threads')} Numba threads"
            + (f"; GPU {a['gpu']}" if a.get("gpu") else "")
        )
        lines.append(
            "  software: "
            + ", ".join(
                f"{name} {a[key]}"
                for name, key in (
                    ("Python", "python_version"),
                    ("NumPy", "numpy_version"),
                    ("Numba", "numba_version"),
                    ("numba-cuda", "numba_cuda_version"),
                    ("h5py", "h5py_version"),
                )
                if key in a
            )
        )
    for k in sorted(a):
        if all_attrs and k not in ("fastinit_version", "created_utc", "modified_utc", "command_line"):
            lines.append(f"  {k} = {_fmt_value(a[k])}")
    lines.append("")

    prefix = "" if group == "/" else group
    nodes = [n for n in info.nodes if group == "/" or n.path == group or n.path.startswith(prefix + "/")]
    if not nodes:
        lines.append("(empty file)")
    base_depth = 1 if group == "/" else info.node(group).depth
    name_width = min(28, max((2 * (n.depth - base_depth) + len(n.name) + 1 for n in nodes), default=10))
    tabled = {}  # group path -> its per-layer columns (listed on one line) or None
    explained = set()  # units and descriptions printed (once per dataset name and text, per schema group)
    for n in nodes:
        indent = "  " * (n.depth - base_depth)
        if n.kind == "group":
            label = f"{indent}{n.name if n.depth > base_depth or group == '/' else n.path}/"
            shown = {
                k: v for k, v in n.attrs.items() if all_attrs or (k not in QUIET_ATTRS and k != "status")
            }
            status = n.attrs.get("status")
            words = ([f"[{status}]"] if status else []) + [
                f"{k}={_fmt_value(v) if all_attrs else _short(_fmt_value(v))}" for k, v in shown.items()
            ]
            lines += _wrap(f"{label:<{name_width}}  ", words, " " * (len(indent) + 4))
            entry = schema.find(n.path)
            if isinstance(entry, schema.Group) and entry.path not in explained:
                explained.add(entry.path)
                lines.append(f"{indent}  # {entry.description}")
        else:
            parent = n.path.rsplit("/", 1)[0] or "/"
            cols = tabled.setdefault(parent, _stat_columns(info, parent) if stats and not all_attrs else None)
            if cols is not None and n.name in cols:
                if n.name != min(cols):  # the whole table is listed on the line of its first dataset
                    continue
                label = f"{indent}{', '.join(sorted(cols))}"
                lines.append(f"{label}  {_shape_text(n.shape)} each  (table below)")
                for col in sorted(cols):
                    lines += _units_lines(info.node(f"{parent}/{col}"), f"{indent}  {col}: ", explained)
                continue
            label = f"{indent}{n.name}"
            detail = f"{_shape_text(n.shape):<18} {n.dtype:<8}"
            if n.compression:
                detail += f" {n.compression}, chunks {n.chunks}"
            lines.append(f"{label:<{name_width}}  {detail}".rstrip())
            if not all_attrs:
                lines += _units_lines(n, f"{'':<{name_width}}    ", explained)
            if n.summary is not None:
                sm = n.summary
                text = (
                    f"first {sm['first']:.4g}, last {sm['last']:.4g}, min {sm['min']:.4g}, "
                    f"max {sm['max']:.4g}"
                )
                if sm["nonfinite"]:
                    text += f", {sm['nonfinite']} NaN/Inf"
                lines.append(f"{'':<{name_width}}    {text}")
            if all_attrs:
                for k, v in n.attrs.items():
                    lines.append(f"{'':<{name_width}}    {k} = {_fmt_value(v)}")

    if stats:
        groups = [n for n in nodes if n.kind == "group"]
        # Sibling groups with the same per-layer columns (e.g. one per init) share one table.
        tables = []  # (title, [(row label, columns)])
        by_parent = {}
        for g in groups:
            cols = _stat_columns(info, g.path)
            if cols is None:
                continue
            parent = g.path.rsplit("/", 1)[0] or "/"
            key = (parent, tuple(cols), len(next(iter(cols.values()))))
            if key not in by_parent:
                by_parent[key] = []
                tables.append(key)
            by_parent[key].append((g.name, g.path, cols))
        for key in tables:
            members = by_parent[key]
            length = key[2]
            per_layer = all(
                _int_attr(info.node(path).attrs.get("layers")) == length for _, path, _ in members
            )
            lines.append("")
            lines += _stat_table(key[0] if len(members) > 1 else None, members, per_layer)
    return "\n".join(lines)


def _stat_table(parent, members, per_layer):
    """Lines of one table; with ``parent``, one block of rows per member group.

    ``per_layer``: rows are layers (numbered from 1); otherwise rows are
    plain indices (from 0) and the table is titled as side-by-side datasets.
    """
    names = list(members[0][2])
    widths = {k: max(10, len(k)) for k in names}
    align = {k: ">" for k in names}
    for k in names:
        if _is_text(members[0][2][k]):
            widths[k] = min(28, max([len(k)] + [len(str(v)) for _, _, cols in members for v in cols[k]]))
            align[k] = "<"
    index = "layer" if per_layer else "index"
    title = "per-layer" if per_layer else "short datasets side by side"
    if parent is None:
        _, path, cols = members[0]
        out = [
            f"{path}  {title}",
            "  " + f"{index:>5}  " + "  ".join(f"{k:{align[k]}{widths[k]}}" for k in names),
        ]
        label_width = 0
    else:
        label_width = max(len("group"), max(len(m[0]) for m in members))
        out = [
            f"{parent}/*  {title}",
            "  "
            + f"{'group':<{label_width}}  {index:>5}  "
            + "  ".join(f"{k:{align[k]}{widths[k]}}" for k in names),
        ]
    for name, _, cols in members:
        length = len(next(iter(cols.values())))
        for i in range(length):
            cells = "  ".join(_cell(cols[k][i], widths[k]) for k in names)
            label = "" if parent is None else f"{(name if i == 0 else ''):<{label_width}}  "
            out.append("  " + label + f"{i + 1 if per_layer else i:>5}  " + cells)
    return out


def _cell(value, width):
    if isinstance(value, str):
        return f"{_short(value, width):<{width}}"
    if np.issubdtype(np.asarray(value).dtype, np.integer):
        return f"{int(value):>{width}d}"
    return f"{float(value):>{width}.4g}"


def _units_lines(node, prefix, explained):
    """``[units] description`` (and named columns) of a dataset, when the same text was not printed
    for a dataset of that name already (``explained``, updated). A dataset written without them
    (by an older fastinit) gets those of its entry in :mod:`fastinit.schema`, if it has one."""
    if node is None:
        return []
    units, description, source = node.attrs.get("units", "?"), node.attrs.get("description"), ""
    entry = schema.find(node.path) if description is None else None
    if isinstance(entry, schema.Dataset):
        units, description, source = entry.units, entry.description, " (not in the file: from the schema)"
    if description is None:
        return []
    key = (node.name, str(description), str(units))
    if key in explained:
        return []
    explained.add(key)
    text = f"{prefix}[{units}] {description}{source}"
    if "columns" in node.attrs:
        text += "; columns: " + ", ".join(str(c) for c in node.attrs["columns"])
    return [text]


def _short(text, limit=48):
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _wrap(first, words, indent, width=110):
    """Lay ``words`` out after ``first``, continuing on lines starting with ``indent``."""
    lines, line = [], first
    for w in words:
        if line.strip() and len(line) + len(w) + 1 > width and line not in (first,):
            lines.append(line.rstrip())
            line = indent + "  "
        line += w + " "
    lines.append(line.rstrip())
    return lines
