"""The HDF5 results store: the one place in fastinit that writes HDF5.

Every command writes through :func:`open_results`, which makes an update
atomic::

    with open_results("fastinit-results.h5") as f:
        g = replace_group(f, "/histogram/sigmoid/xavier")   # only this run's group
        ds = create_appendable(g, "loss", (), "float32")    # grows as rows arrive
        for step in ...:
            append(ds, loss)

How the atomic update works: an existing file is copied to a temporary file in
the same folder (a new file starts empty); all writes go to the copy. When the
``with`` block ends normally the copy is flushed, closed and moved over the
target with ``os.replace`` (atomic on POSIX and Windows). When it ends with an
exception the copy is deleted and the target is untouched, so a failing run
never leaves a corrupt or half-written file, and groups written by other runs
always stay. ``KeyboardInterrupt`` is the exception to the exception: what was
written so far is kept (groups created with :func:`replace_group` in this
session get ``status = "interrupted"``), the file is committed and the
interrupt is re-raised, so a long run stopped with Ctrl-C is still readable.
Updates of one file are serialised by an advisory lock (POSIX), so two
commands writing the same file at once wait for each other (or the second
fails with a clear error) instead of one silently dropping the other's groups;
temp copies left by a killed process are removed by the next update.
The price of atomicity: every update copies the existing file once (and needs
that much free disk), so give very large experiments their own file.

Groups made with :func:`replace_group` carry the attrs ``status``
("running" while written, then "complete" or "interrupted"), ``written_utc``
and ``command_line``. Root attrs: ``fastinit_version``, ``created_utc`` (kept
from the original file), ``modified_utc`` and ``command_line`` (the last
command that wrote the file).

Reading: :func:`open_read` (a read-only ``h5py.File`` with clear errors) and
:func:`describe` (the whole structure as plain Python objects) and
:func:`format_info` (its text view, ``fastinit show``). Every problem with a path or a file raises
:class:`StoreError` with a one-line message naming the file; no h5py
traceback reaches the user.
"""

import os
import secrets
import shlex
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import h5py
import numpy as np

__all__ = [
    "StoreError",
    "open_results",
    "check_output_path",
    "command_line_scope",
    "open_read",
    "replace_group",
    "mark_interrupted",
    "create_appendable",
    "append",
    "describe",
    "FileInfo",
    "NodeInfo",
    "utc_now",
    "format_info",
]

#: Seconds open_results waits for another process's update of the same file to finish.
LOCK_WAIT = 10.0
#: Target size of one chunk of an appendable dataset, in bytes.
CHUNK_BYTES = 1 << 20
#: Datasets with at most this many elements have their values read by describe().
SMALL_DATASET = 256
#: 1-D numeric datasets with at most this many elements get a summary (first, last, min, max).
SUMMARY_DATASET = 1_000_000

# temp file name -> paths of the groups this session created with replace_group
_SESSION_GROUPS = {}


class StoreError(Exception):
    """A results file cannot be read or written (missing, not HDF5, unreadable, ...)."""


def utc_now():
    """The current UTC time as an ISO-8601 string with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version():
    from . import __version__

    return __version__


# Set by command_line_scope (the CLI's main) so every write in that scope records the command.
_COMMAND_LINE = None


@contextmanager
def command_line_scope(text):
    """Within the ``with`` block, :func:`open_results` records ``text`` as the default command line."""
    global _COMMAND_LINE
    previous, _COMMAND_LINE = _COMMAND_LINE, str(text)
    try:
        yield
    finally:
        _COMMAND_LINE = previous


def _default_command_line():
    if _COMMAND_LINE is not None:
        return _COMMAND_LINE
    argv = list(sys.argv) or ["fastinit"]
    argv[0] = os.path.basename(argv[0]) or "fastinit"
    if argv[0] in ("__main__.py", "-m", "-c"):
        argv[0] = "fastinit"
    return shlex.join(argv)


def check_output_path(path):
    """Validate a results path before a run starts; return it as a str.

    Raises ``StoreError`` if ``path`` is a folder, sits in a missing or
    read-only folder, or exists and is not a readable HDF5 file. Commands call
    it first so that a bad ``--out`` fails before any work is done.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise StoreError(f"results path must be a file name, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise StoreError("results path is empty")
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory; give a file name such as {os.path.join(path, 'results.h5')}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise StoreError(f"cannot write {path}: folder {parent} is not writable")
    if os.path.exists(path):
        if not os.access(path, os.R_OK):
            raise StoreError(f"cannot read {path}: permission denied")
        if not _is_hdf5(path):
            raise StoreError(
                f"{path} exists and is not an HDF5 file; refusing to overwrite it (choose another output file)"
            )
    return path


def _is_hdf5(path):
    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def _new_temp(path):
    """Create an empty, uniquely named temp file beside ``path`` (mode from the umask)."""
    folder, name = os.path.split(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot create a temporary file beside {path}: {exc.strerror}") from None
        os.close(fd)
        return tmp
    raise StoreError(f"cannot create a temporary file beside {path}")


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


@contextmanager
def open_results(path, command_line=None, *, wait=None):
    """Open the results file ``path`` for an atomic update; yield a writable ``h5py.File``.

    ``command_line`` (a string) is stored in the root attrs; by default the
    one set by :func:`command_line_scope`, else rebuilt from ``sys.argv``.
    On normal exit the update replaces ``path`` atomically; on an exception
    ``path`` is left exactly as it was and the exception propagates; on
    ``KeyboardInterrupt`` what was written is kept (see the module
    docstring) and the interrupt propagates.

    Updates of one file are serialised: while one is open (in any process),
    another waits up to ``wait`` seconds (default ``LOCK_WAIT``) and then
    raises ``StoreError`` naming the holder, so two commands writing the same
    file never silently drop each other's groups. (Uses ``fcntl.flock`` and a
    hidden ``.<name>.lock`` file, removed afterwards; no locking on Windows.)

    Raises ``StoreError`` if ``path`` is a folder, sits in a missing or
    read-only folder, exists and is not a readable HDF5 file, or stays busy.
    """
    path = os.path.realpath(check_output_path(path))  # a symlink keeps pointing at the updated file
    command_line = _default_command_line() if command_line is None else str(command_line)
    lock = _UpdateLock(path, command_line, LOCK_WAIT if wait is None else float(wait))
    with lock:
        # Re-check under the lock: another process may have just written the file.
        check_output_path(path)
        if lock.fd is not None:
            _remove_stale_temps(path)
        yield from _update(path, command_line)


def _remove_stale_temps(path):
    """Delete temp copies of ``path`` left by killed processes (safe only while holding the lock)."""
    folder, name = os.path.split(path)
    prefix = f".{name}."
    for entry in os.listdir(folder):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            _remove(os.path.join(folder, entry))


class _UpdateLock:
    """An exclusive advisory lock on ``.<name>.lock`` beside a results file (POSIX only)."""

    def __init__(self, path, command_line, wait):
        folder, name = os.path.split(path)
        self.path = path
        self.lock_path = os.path.join(folder, f".{name}.lock")
        self.note = f"pid {os.getpid()}: {command_line}"
        self.wait = wait
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, updates are still atomic
            return self
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise StoreError(f"cannot lock {self.path} for updating: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_note(fd)
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{self.path} is being updated by another fastinit process ({holder or 'unknown'}); "
                        "wait for it to finish or write to another file") from None
                time.sleep(0.1)
                continue
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed this lock file as we opened it: start again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, self.note.encode("utf-8", "replace"))
            self.fd = fd
            return self

    def __exit__(self, *exc):
        if self.fd is not None:
            _remove(self.lock_path)
            os.close(self.fd)  # releases the lock
            self.fd = None
        return False


def _read_note(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 500).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _update(path, command_line):
    """The body of open_results: copy, yield the open copy, commit or discard (a generator)."""
    tmp = _new_temp(path)
    f = None
    try:
        existed = os.path.exists(path)
        if existed:
            try:
                shutil.copyfile(path, tmp)
                shutil.copymode(path, tmp)
            except OSError as exc:
                raise StoreError(f"cannot copy {path} to update it: {exc.strerror or exc}") from None
        try:
            f = h5py.File(tmp, "r+" if existed else "w")
        except OSError as exc:
            raise StoreError(f"cannot open {path} for writing: {_h5_reason(exc)}") from None
        now = utc_now()
        if "created_utc" not in f.attrs:
            f.attrs["created_utc"] = now
        f.attrs["fastinit_version"] = _version()
        f.attrs["modified_utc"] = now
        f.attrs["command_line"] = command_line
        _SESSION_GROUPS[tmp] = []
        try:
            yield f
        except KeyboardInterrupt:
            _finish_groups(f, tmp, "interrupted")
            _commit(f, tmp, path)
            f = None
            raise
        _finish_groups(f, tmp, "complete")
        _commit(f, tmp, path)
        f = None
    finally:
        _SESSION_GROUPS.pop(tmp, None)
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
        if os.path.exists(tmp):
            _remove(tmp)


def _finish_groups(f, tmp, status):
    for name in _SESSION_GROUPS.get(tmp, ()):
        if name in f and f[name].attrs.get("status") == "running":
            f[name].attrs["status"] = status


def _commit(f, tmp, path):
    f.attrs["modified_utc"] = utc_now()
    f.flush()
    f.close()
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def _h5_reason(exc):
    text = str(exc)
    if "file signature not found" in text:
        return "not an HDF5 file"
    if "Permission denied" in text or "errno = 13" in text:
        return "permission denied"
    if "truncated" in text:
        return "the file is truncated (corrupt)"
    return text.split("(")[0].strip() or type(exc).__name__


def replace_group(f, path, attrs=None):
    """Create the group ``path`` in ``f``, deleting whatever was there before.

    Parent groups are created as needed; sibling groups are untouched, so a
    run replaces only its own groups. The new group gets ``attrs`` plus
    ``status="running"`` (turned into "complete" or "interrupted" when
    :func:`open_results` finishes), ``written_utc`` and ``command_line``.
    Returns the new ``h5py.Group``.
    """
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(f"group path must be a non-empty string such as '/histogram/sigmoid', got {path!r}")
    if path in f:
        del f[path]
    g = f.create_group(path)
    g.attrs["status"] = "running"
    g.attrs["written_utc"] = utc_now()
    g.attrs["command_line"] = f.attrs.get("command_line", "")
    for key, value in (attrs or {}).items():
        g.attrs[key] = _attr_value(value)
    session = _SESSION_GROUPS.get(f.filename)
    if session is not None:
        session.append(g.name)
    return g


def mark_interrupted(group, reason="interrupted by the user"):
    """Mark ``group`` as interrupted (call it from an ``except KeyboardInterrupt``)."""
    group.attrs["status"] = "interrupted"
    group.attrs["interrupted_reason"] = str(reason)


def _attr_value(value):
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    return value


def _chunk_shape(row_shape, itemsize, chunk_rows=None):
    row = [int(s) for s in row_shape]
    # Shrink the largest row dimension until one row fits in a chunk.
    while row and int(np.prod(row)) * itemsize > CHUNK_BYTES:
        i = int(np.argmax(row))
        row[i] = (row[i] + 1) // 2
    rows = max(1, CHUNK_BYTES // max(1, int(np.prod(row)) * itemsize))
    rows = min(rows, 4096 if chunk_rows is None else max(1, int(chunk_rows)))
    return (rows,) + tuple(max(1, r) for r in row)


def create_appendable(group, name, row_shape=(), dtype="float32", *, chunk_rows=None, compression="gzip",
                      compression_opts=4, attrs=None):
    """Create an empty dataset ``name`` in ``group`` that grows along its first axis.

    The dataset has shape ``(0,) + row_shape`` and ``maxshape (None,) + row_shape``,
    is chunked (at most about 1 MiB and ``chunk_rows`` rows per chunk), shuffled
    and gzip-compressed, so rows can be streamed with :func:`append` using
    constant memory. An existing dataset of that name is replaced. Returns the
    ``h5py.Dataset``.
    """
    dtype = np.dtype(dtype)
    row_shape = tuple(int(s) for s in row_shape)
    if any(s < 1 for s in row_shape):
        raise ValueError(f"row_shape must have positive sizes, got {row_shape}")
    if name in group:
        del group[name]
    ds = group.create_dataset(
        name,
        shape=(0,) + row_shape,
        maxshape=(None,) + row_shape,
        dtype=dtype,
        chunks=_chunk_shape(row_shape, dtype.itemsize, chunk_rows),
        compression=compression,
        compression_opts=compression_opts if compression == "gzip" else None,
        shuffle=compression is not None,
    )
    for key, value in (attrs or {}).items():
        ds.attrs[key] = _attr_value(value)
    return ds


def append(ds, rows):
    """Append ``rows`` to an appendable dataset; return its new length.

    ``rows`` has shape ``(k,) + row_shape`` (k rows) or ``row_shape`` (one row);
    it is cast to the dataset's dtype. Raises ``ValueError`` on a shape mismatch.
    """
    row_shape = ds.shape[1:]
    rows = np.asarray(rows)
    if rows.shape == row_shape:
        rows = rows[None, ...]
    if rows.shape[1:] != row_shape:
        raise ValueError(
            f"cannot append rows of shape {rows.shape} to dataset {ds.name} of shape {ds.shape}: "
            f"each row must have shape {row_shape}"
        )
    n = ds.shape[0]
    k = rows.shape[0]
    if k:
        ds.resize(n + k, axis=0)
        ds[n:n + k] = rows
    return n + k


@contextmanager
def open_read(path):
    """Open an existing results file read-only; yield the ``h5py.File``.

    Raises ``StoreError`` if the file is missing, unreadable, or not HDF5.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise StoreError(f"results path must be a file name, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise StoreError(f"{path}: no such file")
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory, not an HDF5 file")
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {path}: permission denied")
    if not _is_hdf5(path):
        raise StoreError(f"{path} is not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {_h5_reason(exc)}") from None
    try:
        yield f
    finally:
        f.close()


@dataclass
class NodeInfo:
    """One group or dataset of a results file, as plain Python values."""

    path: str
    kind: str  # "group" or "dataset"
    attrs: dict = field(default_factory=dict)
    shape: tuple = None
    dtype: str = None
    chunks: tuple = None
    compression: str = None
    value: object = None  # numpy array for small datasets (<= SMALL_DATASET elements), else None
    summary: dict = None  # 1-D numeric datasets up to SUMMARY_DATASET elements: first, last, min, max, nonfinite

    @property
    def depth(self):
        return 0 if self.path == "/" else self.path.count("/")

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1] or "/"


@dataclass
class FileInfo:
    """What :func:`describe` returns: root attrs, size and every node in file order."""

    path: str
    size_bytes: int
    attrs: dict
    nodes: list

    def node(self, path):
        """The ``NodeInfo`` at ``path``, or ``None``."""
        for n in self.nodes:
            if n.path == path:
                return n
        return None

    def children(self, path):
        """Direct children of the group at ``path``."""
        prefix = path.rstrip("/") + "/"
        return [n for n in self.nodes if n.path.startswith(prefix) and "/" not in n.path[len(prefix):]]


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [_plain(v) for v in value.tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe(path):
    """Read the structure of the results file ``path`` into a :class:`FileInfo`.

    Every group and dataset in file order with attrs, shapes, dtypes, chunking
    and compression; small datasets (per-layer statistics and the like) carry
    their values. Raises ``StoreError`` for a missing, unreadable or non-HDF5 file.
    """
    with open_read(path) as f:
        nodes = []

        def visit(name, obj):
            attrs = {k: _plain(v) for k, v in obj.attrs.items()}
            full = "/" + name
            if isinstance(obj, h5py.Dataset):
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
                    summary = {"first": data[0], "last": data[-1],
                               "min": finite.min() if finite.size else np.nan,
                               "max": finite.max() if finite.size else np.nan,
                               "nonfinite": int(data.size - finite.size)}
                nodes.append(NodeInfo(full, "dataset", attrs, tuple(obj.shape), str(obj.dtype), obj.chunks,
                                      obj.compression, value, summary))
            else:
                nodes.append(NodeInfo(full, "group", attrs))

        try:
            f.visititems(visit)
        except (OSError, RuntimeError, KeyError) as exc:
            raise StoreError(f"cannot read {path}: {_h5_reason(exc)}") from None
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
    return FileInfo(os.fspath(path), os.path.getsize(path), attrs, nodes)


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
    order = text + [k for k in STAT_ORDER if k in cols] + sorted(k for k in cols if k not in STAT_ORDER
                                                                   and k not in text)
    return {k: cols[k] for k in order}


def format_info(info, group="/", *, all_attrs=False, stats=True):
    """Render a :class:`FileInfo` (from :func:`describe`) as readable text.

    A header (size, version, times, last command), the tree of groups and
    datasets under ``group`` (shape, dtype, compression, the informative attrs
    or all of them with ``all_attrs``; first/last/min/max of 1-D series such
    as losses), then, with ``stats``, a table for every group that holds two
    or more short 1-D numeric datasets of the same length (per-layer
    statistics when the group's ``layers`` attr matches), one table for all
    sibling groups with the same columns. Raises ``StoreError`` if ``group`` is not in
    the file.
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
    for n in nodes:
        indent = "  " * (n.depth - base_depth)
        if n.kind == "group":
            label = f"{indent}{n.name if n.depth > base_depth or group == '/' else n.path}/"
            shown = {k: v for k, v in n.attrs.items() if all_attrs or (k not in QUIET_ATTRS and k != "status")}
            status = n.attrs.get("status")
            words = ([f"[{status}]"] if status else []) + [
                f"{k}={_fmt_value(v) if all_attrs else _short(_fmt_value(v))}" for k, v in shown.items()]
            lines += _wrap(f"{label:<{name_width}}  ", words, " " * (len(indent) + 4))
        else:
            parent = n.path.rsplit("/", 1)[0] or "/"
            cols = tabled.setdefault(parent, _stat_columns(info, parent) if stats and not all_attrs else None)
            if cols is not None and n.name in cols:
                if n.name != min(cols):  # the whole table is listed on the line of its first dataset
                    continue
                label = f"{indent}{', '.join(sorted(cols))}"
                lines.append(f"{label}  {_shape_text(n.shape)} each  (table below)")
                continue
            label = f"{indent}{n.name}"
            detail = f"{_shape_text(n.shape):<18} {n.dtype:<8}"
            if n.compression:
                detail += f" {n.compression}, chunks {n.chunks}"
            lines.append(f"{label:<{name_width}}  {detail}".rstrip())
            if n.summary is not None:
                sm = n.summary
                text = (f"first {sm['first']:.4g}, last {sm['last']:.4g}, min {sm['min']:.4g}, "
                        f"max {sm['max']:.4g}")
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
            per_layer = all(_int_attr(info.node(path).attrs.get("layers")) == length for _, path, _ in members)
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
        out = [f"{path}  {title}", "  " + f"{index:>5}  " + "  ".join(f"{k:{align[k]}{widths[k]}}" for k in names)]
        label_width = 0
    else:
        label_width = max(len("group"), max(len(m[0]) for m in members))
        out = [f"{parent}/*  {title}",
               "  " + f"{'group':<{label_width}}  {index:>5}  " + "  ".join(f"{k:{align[k]}{widths[k]}}" for k in names)]
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
