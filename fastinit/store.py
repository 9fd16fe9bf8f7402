"""The HDF5 results store: the one place in fastinit that writes HDF5.

Every command writes through :func:`open_results`, which makes an update
atomic::

    with open_results("fastinit-results.h5") as f:
        g = replace_group(f, "/histogram/sigmoid/xavier")   # only this run's group
        ds = create_appendable(g, "loss", (), "float32")    # grows as rows arrive
        for step in ...:
            append(ds, loss)

How the atomic update works: the file is built in memory (HDF5's ``core``
driver, loaded from the existing file if there is one), so HDF5 itself never
writes to disk. When the ``with`` block ends normally, the memory image is
written to a temporary file in the same folder with plain, checked OS calls
(and ``fsync``), then moved over the target with ``os.replace`` (atomic on
POSIX and Windows). A full disk or any other OS error during that write is a
``StoreError`` (one line in the CLI): the target is untouched and the temp
file removed. When the block ends with an exception nothing is written, so a
failing run never leaves a corrupt or half-written file, and groups written
by other runs always stay. ``KeyboardInterrupt`` is the exception to the exception: what was
written so far is kept (groups created with :func:`replace_group` in this
session get ``status = "interrupted"``), the file is committed and the
interrupt is re-raised, so a long run stopped with Ctrl-C is still readable.
Updates of one file are serialised by an advisory lock (POSIX), so two
commands writing the same file at once wait for each other (or the second
fails with a clear error) instead of one silently dropping the other's groups;
temp copies left by a killed process are removed by the next update.
The price of atomicity: every update holds the whole file in memory and
writes it once more (and needs that much free disk), so give very large
experiments their own file.

Groups made with :func:`replace_group` carry the attrs ``status``
("running" while written, then "complete" or "interrupted"), ``written_utc``
and ``command_line``. Root attrs: ``fastinit_version``, ``created_utc`` (kept
from the original file), ``modified_utc`` and ``command_line`` (the last
command that wrote the file).

Reading: :func:`open_read` (a read-only ``h5py.File`` with clear errors).
Every problem with a path or a file raises :class:`StoreError` with a
one-line message naming the file; no h5py traceback reaches the user. What a
file holds is rendered by :mod:`fastinit.show` (``describe``, ``format_info``:
``fastinit show``).
"""

import os
import secrets
import shlex
import shutil
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import h5py
import numpy as np

from .errors import FastinitError

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
    "utc_now",
]

#: Seconds open_results waits for another process's update of the same file to finish.
LOCK_WAIT = 10.0
#: Target size of one chunk of an appendable dataset, in bytes.
CHUNK_BYTES = 1 << 20

# temp file name -> paths of the groups this session created with replace_group
_SESSION_GROUPS = {}


class StoreError(FastinitError):
    """A results file cannot be read or written (missing, not HDF5, unreadable, ...)."""


def utc_now():
    """The current UTC time as an ISO-8601 string with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version():
    from . import __version__

    return __version__


def label(dataset, units, description, **extra):
    """Give ``dataset`` its ``units`` and ``description`` attributes (and any ``extra`` ones),
    so a results file explains itself (``fastinit show`` prints them). Returns ``dataset``."""
    dataset.attrs["units"] = units
    dataset.attrs["description"] = description
    for key, value in extra.items():
        dataset.attrs[key] = value
    return dataset


def _provenance():
    from .machine import provenance

    return provenance()


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
def open_results(path, command_line=None, *, wait=None, keep_on_interrupt=True):
    """Open the results file ``path`` for an atomic update; yield a writable ``h5py.File``.

    ``command_line`` (a string) is stored in the root attrs; by default the
    one set by :func:`command_line_scope`, else rebuilt from ``sys.argv``.
    On normal exit the update replaces ``path`` atomically; on an exception
    ``path`` is left exactly as it was and the exception propagates; on
    ``KeyboardInterrupt`` what was written is kept (see the module
    docstring) and the interrupt propagates; with ``keep_on_interrupt=False``
    an interrupt leaves ``path`` as it was, like any other exception (for an
    update that must be whole or nothing).

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
        yield from _update(path, command_line, keep_on_interrupt)


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


def _update(path, command_line, keep_on_interrupt=True):
    """The body of open_results: copy, yield the open copy, commit or discard (a generator)."""
    tmp = _new_temp(path)
    f = None
    try:
        existed = os.path.exists(path)
        try:  # in memory: HDF5 never writes to disk, _commit does
            f = h5py.File(path, "r+" if existed else "w", driver="core", backing_store=False)
        except OSError as exc:
            raise StoreError(f"cannot open {path} for writing: {_h5_reason(exc)}") from None
        now = utc_now()
        if "created_utc" not in f.attrs:
            f.attrs["created_utc"] = now
        f.attrs["fastinit_version"] = _version()
        for key, value in _provenance().items():  # the machine and software of this update
            f.attrs[key] = value
        f.attrs["modified_utc"] = now
        f.attrs["command_line"] = command_line
        _SESSION_GROUPS[f.filename] = []
        try:
            yield f
        except KeyboardInterrupt:
            if not keep_on_interrupt:
                raise
            _finish_groups(f, tmp, "interrupted")
            _commit(f, tmp, path)
            f = None
            raise
        _finish_groups(f, tmp, "complete")
        _commit(f, tmp, path)
        f = None
    finally:
        _SESSION_GROUPS.pop(path, None)
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
        if os.path.exists(tmp):
            _remove(tmp)


def _finish_groups(f, tmp, status):
    for name in _SESSION_GROUPS.get(f.filename, ()):
        if name in f and f[name].attrs.get("status") == "running":
            f[name].attrs["status"] = status


def _commit(f, tmp, path):
    """Write the in-memory file ``f`` to ``tmp`` (checked writes, fsync), then move it over ``path``."""
    f.attrs["modified_utc"] = utc_now()
    f.flush()
    image = f.id.get_file_image()
    f.close()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.exists(path):
            shutil.copymode(path, tmp)
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
