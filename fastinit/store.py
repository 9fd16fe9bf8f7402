"""The HDF5 results store: the one place in fastinit that writes HDF5.

Every command writes through :func:`open_results`; an update costs what it
adds, not the size of what is already stored::

    with open_results("fastinit-results/fastinit.h5") as f:
        g = replace_group(f, "/train/he")               # this run's own file
        ds = create_appendable(g, "loss", (), "float32")  # grows as rows arrive
        for step in ...:
            append(ds, loss)
        finish_group(g)                                  # optional: keep it now, even if killed later

Layout. A results set is a small *top file* (``fastinit.h5``: root attrs,
the groups that only hold other groups, and h5py external links) and one
*part file* per group made with :func:`replace_group`, in the folder
``<top file name>.parts/`` beside it (``fastinit.h5.parts/train-he.1f2e3d4c.h5``).
A part holds its group at the same path as in the tree (``/train/he``), and
the top file links that path to it with a relative ``h5py.ExternalLink``, so
``h5py.File("fastinit-results/fastinit.h5")["train/he/loss"]`` and
``fastinit show`` see one tree, and the folder can be moved or copied as a
whole (HDF5 looks for a relative external file in the folder of the file
that links to it).

How an update stays safe. A part is written once: streamed to a hidden temp
file in the parts folder while the run goes (memory stays flat), then closed,
``fsync``-ed and renamed to its final name when the group is finished
(:func:`finish_group`, or when the ``with`` block ends). The top file is
built in memory (HDF5's ``core`` driver: it is a few KiB) and committed after
each finished part with checked writes to a temp file, ``fsync`` and
``os.replace``. Only the committed top file makes a part visible, and it only
ever links finished parts, so a process killed at any moment (even
``kill -9``) leaves the previous top file, every finished run readable, and
at worst a temp or unlinked part file, which the next update removes.
A replaced part is deleted after the top file that no longer links it is
committed. A full disk or any other OS error while committing is a
``StoreError`` (one line in the CLI) and leaves the committed state as it was.

When the ``with`` block ends with an exception, the unfinished parts are
discarded and the top file is not committed again: groups finished earlier
in the block (with :func:`finish_group`) and groups of other runs stay.
``KeyboardInterrupt`` (Ctrl-C; the CLI turns SIGTERM and SIGHUP into it) is
the exception to the exception: the groups created in this block that are
still ``running`` get ``status = "interrupted"``, everything is committed
and the interrupt re-raised, so a long run stopped with Ctrl-C is still
readable (``keep_on_interrupt=False`` discards instead).

Updates of one results set are serialised by an advisory lock (POSIX), so
two commands writing it at once wait for each other (or the second fails with
a clear error) instead of one silently dropping the other's groups.

Older files. Files written before this layout (one HDF5 file holding every
group) are read as they are. The first update of such a file converts it in
place: each group made by ``replace_group`` (a group with a ``status`` attr
and no such group below it) is copied into its own part file and the top
file is rewritten as the index, atomically as above; this costs one copy of
the data, once.

Groups made with :func:`replace_group` carry the attrs ``status``
("running" while written, then "complete" or "interrupted", or what the
writer set), ``written_utc`` and ``command_line``. Root attrs of the top file:
``fastinit_version``, ``fastinit_layout`` (2: top file plus parts),
``created_utc`` (kept from the original file), ``modified_utc``,
``command_line`` (the last command that wrote the file) and the machine and
software of that update.

Reading: :func:`open_read` (a read-only ``h5py.File`` with clear errors;
external links resolve by themselves) and :func:`walk` (every group and
dataset of the tree, through the links, in file order). Every problem with a
path or a file raises :class:`StoreError` with a one-line message naming the
file; no h5py traceback reaches the user. What a file holds is rendered by
:mod:`fastinit.show` (``describe``, ``format_info``: ``fastinit show``).
"""

import os
import re
import secrets
import shlex
import shutil
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import h5py
import numpy as np

from .errors import FastinitError, UsageError
from .outputs import DEFAULT_DIR, DEFAULT_OUT, why_unwritable

__all__ = [
    "StoreError",
    "open_results",
    "check_output_path",
    "results_file",
    "command_line_scope",
    "open_read",
    "replace_group",
    "copy_group",
    "finish_group",
    "mark_interrupted",
    "record_gpu",
    "create_appendable",
    "append",
    "label",
    "walk",
    "parts_folder",
    "h5_reason",
    "plain",
    "utc_now",
    "LAYOUT",
]

#: Seconds open_results waits for another process's update of the same file to finish.
LOCK_WAIT = 10.0
#: Target size of one chunk of an appendable dataset, in bytes.
CHUNK_BYTES = 1 << 20
#: The value of the root attr ``fastinit_layout`` of a top file with part files.
LAYOUT = 2
#: The parts folder of ``r.h5`` is ``r.h5`` + PARTS_SUFFIX.
PARTS_SUFFIX = ".parts"
_PART_NAME = re.compile(r"^[A-Za-z0-9._=-]+\.[0-9a-f]{8}\.h5$")

# open top files and open part files (by file name) -> their _Session (and _Part)
_SESSIONS = {}
_PART_SESSIONS = {}


class StoreError(FastinitError):
    """A results file cannot be read or written (missing, not HDF5, unreadable, ...)."""


def utc_now():
    """The current UTC time as an ISO-8601 string with a ``Z`` suffix, to the second.

    Returns
    -------
    str
        E.g. ``2026-01-31T12:00:00Z``.
    """
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version():
    from . import __version__

    return __version__


def label(dataset, units, description, **extra):
    """Give ``dataset`` its ``units`` and ``description`` attributes (and any ``extra`` ones).

    So a results file explains itself (``fastinit show`` prints them). fastinit's writers label
    from their entries in :mod:`fastinit.schema` (``fastinit.schema.label``, which calls this).

    Parameters
    ----------
    dataset : h5py.Dataset
        The dataset to label.
    units : str
        Its ``units`` attr.
    description : str
        Its ``description`` attr.
    **extra
        Further attrs.

    Returns
    -------
    h5py.Dataset
        ``dataset``.
    """
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
    """Within the ``with`` block, :func:`open_results` records ``text`` as the default command line.

    Parameters
    ----------
    text : str
        The command line (the CLI's main passes its own).

    Yields
    ------
    None
        Nothing: the scope is the ``with`` block.
    """
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

    Commands call it first so that a bad ``--out`` fails before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The results file to write.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    StoreError
        If ``path`` is empty or not a file name, is a folder, sits in a missing or read-only
        folder, or exists and is not a readable HDF5 file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise StoreError(f"results path must be a file name, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise StoreError("results path is empty")
    reason = why_unwritable(path)
    if reason is not None:
        raise StoreError(reason)
    if os.path.exists(path):
        if not os.access(path, os.R_OK):
            raise StoreError(f"cannot read {path}: permission denied")
        if not _is_hdf5(path):
            raise StoreError(
                f"{path} exists and is not an HDF5 file; "
                "refusing to overwrite it (choose another output file)"
            )
    return path


def results_file(out):
    """Check a results file before any work starts; the default folder is created on first use.

    Parameters
    ----------
    out : str
        The HDF5 results file (``fastinit.outputs.DEFAULT_OUT`` or a path the user gave).

    Returns
    -------
    str
        `out`, checked by `check_output_path`.

    Raises
    ------
    UsageError
        If `out` is the default and its folder cannot be created here.
    StoreError
        If `out` cannot be written (a folder, a missing or read-only folder, a file that is
        not HDF5).
    """
    if out == DEFAULT_OUT:
        try:
            os.makedirs(DEFAULT_DIR, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create {DEFAULT_DIR}/ here: {exc.strerror}; pass --out FILE.h5"
            ) from None
    return check_output_path(out)


def _is_hdf5(path):
    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def parts_folder(path):
    """The folder that holds the part files of the top file ``path``: ``<path>.parts`` beside it.

    Parameters
    ----------
    path : str or os.PathLike
        The top file, e.g. ``fastinit-results/fastinit.h5``.

    Returns
    -------
    str
        ``fastinit-results/fastinit.h5.parts``.
    """
    return os.fspath(path) + PARTS_SUFFIX


def _new_temp(path, folder=None):
    """Create an empty, uniquely named hidden temp file beside ``path`` (or in ``folder``)."""
    parent, name = os.path.split(os.path.abspath(path))
    folder = parent if folder is None else folder
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


def _fsync_folder(folder):
    """fsync a folder (so the renames in it are on disk), where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def open_results(path, command_line=None, *, wait=None, keep_on_interrupt=True):
    """Open the results set ``path`` for an update; yield its top file, a writable ``h5py.File``.

    Groups made in it with :func:`replace_group` go to their own part files
    (module docstring); attrs and small groups made directly in the yielded
    file stay in the top file. The update is committed when a group is
    finished (:func:`finish_group`) and when the ``with`` block ends.

    Parameters
    ----------
    path : str or os.PathLike
        The top file (created if missing); its parts go to ``<path>.parts/``.
    command_line : str, optional
        Stored in the root attrs and in every new group; by default the one
        set by :func:`command_line_scope`, else rebuilt from ``sys.argv``.
    wait : float, optional
        Seconds to wait while another process updates the same file
        (default ``LOCK_WAIT``).
    keep_on_interrupt : bool
        On ``KeyboardInterrupt`` keep what was written, marked "interrupted"
        (default); False discards the unfinished groups like any exception,
        for an update that must be whole or nothing.

    Yields
    ------
    h5py.File
        The top file, held in memory until committed.

    Raises
    ------
    StoreError
        If ``path`` is a folder, sits in a missing or read-only folder,
        exists and is not a readable HDF5 file, stays busy, or cannot be
        written (full disk, ...). Updates of one file are serialised with
        ``fcntl.flock`` on a hidden ``.<name>.lock`` file beside it (removed
        afterwards; no locking on Windows).
    """
    path = os.path.realpath(check_output_path(path))  # a symlink keeps pointing at the updated file
    command_line = _default_command_line() if command_line is None else str(command_line)
    lock = _UpdateLock(path, command_line, LOCK_WAIT if wait is None else float(wait))
    with lock:
        # Re-check under the lock: another process may have just written the file.
        check_output_path(path)
        if lock.fd is not None:
            _remove_stale_temps(path)
        yield from _update(path, command_line, keep_on_interrupt, collect=lock.fd is not None)


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
                        "wait for it to finish or write to another file"
                    ) from None
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


class _Part:
    """One part file being written: its group path, temp file and final name."""

    def __init__(self, group_path, target, name, file):
        self.group_path = group_path
        self.target = target
        self.name = name
        self.file = file


class _Session:
    """The state of one open_results block: the in-memory top file and the open parts."""

    def __init__(self, path, top, command_line):
        self.path = path
        self.top = top
        self.command_line = command_line
        self.folder = parts_folder(path)
        self.parts = {}  # group path -> _Part, not yet committed
        self.index_groups = {}  # groups made in the top file by replace_group(part=False) -> old children
        self.written = set()  # group paths written in this block (parts finished, index groups made)
        self.doomed = set()  # part file names to delete once a committed top no longer links them

    # -- part files

    def new_part(self, group_path):
        if not os.path.isdir(self.folder):
            if os.path.lexists(self.folder):
                raise StoreError(f"cannot write {self.path}: {self.folder} exists and is not a folder")
            try:
                os.mkdir(self.folder)
            except OSError as exc:
                raise StoreError(f"cannot create {self.folder}: {exc.strerror or exc}") from None
        stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", group_path.strip("/").replace("/", "-"))[:100] or "group"
        for _ in range(100):
            name = f"{stem}.{secrets.token_hex(4)}.h5"
            if not os.path.exists(os.path.join(self.folder, name)):
                break
        target = os.path.join(self.folder, name)
        try:  # in memory, like the top file: HDF5 never writes to disk (a full disk can crash it)
            f = h5py.File(target, "w", driver="core", backing_store=False)
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {h5_reason(exc)}") from None
        part = _Part(group_path, target, name, f)
        self.parts[group_path] = part
        _PART_SESSIONS[f.filename] = (self, part)
        return part

    def discard(self, part):
        self.parts.pop(part.group_path, None)
        _PART_SESSIONS.pop(part.file.filename if part.file else "", None)
        if part.file is not None:
            try:
                part.file.close()
            except Exception:  # noqa: BLE001 - a broken file is removed below anyway
                pass
            part.file = None

    def finish_part(self, part, status):
        """Write the part file (temp file, fsync, rename); link it in the top file (not committed yet)."""
        f = part.file
        try:
            g = f[part.group_path]
            for name in [part.group_path] + _session_group_names(g):
                if f[name].attrs.get("status") == "running":
                    f[name].attrs["status"] = status
            f.flush()
        except (OSError, RuntimeError, KeyError) as exc:
            self.discard(part)
            raise StoreError(f"cannot write {self.path}: {h5_reason(exc)}") from None
        image = f.id.get_file_image()
        self.discard(part)
        _write_atomically(image, part.target, self.path)
        self.drop(part.group_path)
        self.written.add(part.group_path)
        _require_top_group(self.top, part.group_path.rsplit("/", 1)[0] or "/")
        self.top[part.group_path] = h5py.ExternalLink(
            f"{os.path.basename(self.folder)}/{part.name}", part.group_path
        )

    def drop(self, group_path):
        """Remove ``group_path`` from the top file; its part files are deleted after the next commit."""
        link = self.top.get(group_path, getlink=True) if _top_path_exists(self.top, group_path) else None
        if link is None:
            return
        self.doomed.update(_part_names(self.top, group_path))
        del self.top[group_path]

    # -- the top file

    def commit(self):
        """Write the in-memory top file to disk atomically, then delete parts no longer linked."""
        top = self.top
        top.attrs["modified_utc"] = utc_now()
        top.flush()
        if os.path.isdir(self.folder):
            _fsync_folder(self.folder)  # the renamed parts are on disk before the link
        _write_atomically(top.id.get_file_image(), self.path, self.path)
        if self.doomed:
            linked = set(_part_names(top, "/"))
            for name in self.doomed - linked:
                _remove(os.path.join(self.folder, name))
            self.doomed.clear()

    def collect_garbage(self):
        """Remove temp and unlinked part files left by killed processes (only while holding the lock)."""
        if not os.path.isdir(self.folder):
            return
        linked = set(_part_names(self.top, "/"))
        for entry in os.listdir(self.folder):
            stale_temp = entry.startswith(".") and entry.endswith(".tmp")
            if stale_temp or (_PART_NAME.match(entry) and entry not in linked):
                _remove(os.path.join(self.folder, entry))


def _write_atomically(image, target, results):
    """Write the bytes ``image`` to a temp file beside ``target`` (checked writes, fsync), then move it
    over ``target``. Raises StoreError naming ``results``; no temp file is left."""
    tmp = _new_temp(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.exists(target):
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise StoreError(f"cannot write {results}: {exc.strerror or exc}") from None
    finally:
        _remove(tmp)


def _top_path_exists(top, path):
    """Whether ``path`` names a link of the top file, without opening any external file."""
    node = top
    parts = [p for p in path.split("/") if p]
    for i, name in enumerate(parts):
        if not isinstance(node, h5py.Group) or name not in node.keys():
            return False
        if i == len(parts) - 1:
            return True
        link = node.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            return False
        node = node[name]
    return True


def _external_ancestor(top, path):
    """The closest proper ancestor of ``path`` that is an external link in ``top``, else None."""
    parts = [p for p in path.split("/") if p]
    node = top
    for i, name in enumerate(parts[:-1]):
        if name not in node.keys():
            return None
        link = node.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return "/" + "/".join(parts[: i + 1])
        if not isinstance(link, h5py.HardLink) or not isinstance(node[name], h5py.Group):
            return None
        node = node[name]
    return None


def _require_top_group(top, path):
    if path.strip("/"):
        if _top_path_exists(top, path) and not isinstance(top.get(path, getlink=True), h5py.HardLink):
            del top[path]
        top.require_group(path)


def _links(group, prefix):
    """(path, link) of every link under ``group``, without opening external files."""
    for name in group.keys():
        link = group.get(name, getlink=True)
        path = f"{prefix.rstrip('/')}/{name}"
        yield path, link
        if isinstance(link, h5py.HardLink):
            obj = group[name]
            if isinstance(obj, h5py.Group):
                yield from _links(obj, path)


def _part_names(top, path):
    """File names (in the parts folder) of the external links at or under ``path`` of ``top``."""
    if path.strip("/"):
        link = top.get(path, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return [os.path.basename(link.filename)]
        if not isinstance(top[path], h5py.Group):
            return []
        found = _links(top[path], path)
    else:
        found = _links(top, "/")
    return [os.path.basename(link.filename) for _, link in found if isinstance(link, h5py.ExternalLink)]


def _session_group_names(group):
    """Paths of the groups below ``group`` (in its own file) that carry a ``status`` attr."""
    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and "status" in obj.attrs:
            names.append(f"{group.name.rstrip('/')}/{name}")

    group.visititems(visit)
    return names


def _update(path, command_line, keep_on_interrupt=True, collect=True):
    """The body of open_results: load the top file, yield it, commit or discard (a generator)."""
    top = None
    session = None
    try:
        existed = os.path.exists(path)
        if existed and _old_layout(path):
            _migrate(path)
        try:  # in memory: HDF5 never writes the top file to disk, Session.commit does
            top = h5py.File(path, "r+" if existed else "w", driver="core", backing_store=False)
        except OSError as exc:
            raise StoreError(f"cannot open {path} for writing: {h5_reason(exc)}") from None
        session = _Session(path, top, command_line)
        _SESSIONS[top.filename] = session
        if collect:  # only under the lock: another writer's files are never garbage to us
            session.collect_garbage()
        now = utc_now()
        if "created_utc" not in top.attrs:
            top.attrs["created_utc"] = now
        top.attrs["fastinit_version"] = _version()
        top.attrs["fastinit_layout"] = LAYOUT
        for key, value in _provenance().items():  # the machine and software of this update
            top.attrs[key] = value
        top.attrs["modified_utc"] = now
        top.attrs["command_line"] = command_line
        try:
            yield top
        except KeyboardInterrupt:
            if not keep_on_interrupt:
                raise
            _finish_all(session, "interrupted")
            raise
        except OSError as exc:
            if "No space left" in str(exc) or getattr(exc, "errno", None) == 28:
                raise StoreError(f"cannot write {path}: No space left on device") from None
            raise
        _finish_all(session, "complete")
    finally:
        if session is not None:
            for part in list(session.parts.values()):
                session.discard(part)
            try:
                os.rmdir(session.folder)  # only when empty: no folder for a set without parts
            except OSError:
                pass
        if top is not None:
            _SESSIONS.pop(top.filename, None)
            try:
                top.close()
            except Exception:  # noqa: BLE001
                pass


def _finish_all(session, status):
    for part in list(session.parts.values()):
        session.finish_part(part, status)
    for name, old_children in session.index_groups.items():
        if not _top_path_exists(session.top, name):
            continue
        for child in old_children:  # groups of the command this one replaces, not written again
            if f"{name}/{child}" not in session.written:
                session.drop(f"{name}/{child}")
        if session.top[name].attrs.get("status") == "running":
            session.top[name].attrs["status"] = status
    session.commit()


def _old_layout(path):
    """Whether ``path`` is a results file of the single-file layout with something in it."""
    try:
        with h5py.File(path, "r") as f:
            return "fastinit_layout" not in f.attrs and len(f) > 0
    except OSError as exc:
        raise StoreError(f"cannot open {path} for writing: {h5_reason(exc)}") from None


def _is_unit(group):
    """A group made by replace_group in the single-file layout: a ``status`` attr, none below."""
    return "status" in group.attrs and not _session_group_names(group)


def _migrate(path):
    """Convert a single-file results file into a top file plus parts, atomically (under the lock)."""
    with h5py.File(path, "r") as old:
        top = h5py.File(f"{path}.migrating", "w", driver="core", backing_store=False)
        session = _Session(path, top, "")
        try:
            for key, value in old.attrs.items():
                top.attrs[key] = value

            def convert(src, dst):
                for name in src.keys():
                    link = src.get(name, getlink=True)
                    if not isinstance(link, h5py.HardLink):
                        dst[name] = link
                        continue
                    obj = src[name]
                    if isinstance(obj, h5py.Group) and _is_unit(obj):
                        part = session.new_part(obj.name)
                        parent = obj.name.rsplit("/", 1)[0] or "/"
                        old.copy(obj, part.file.require_group(parent), name=name)
                        session.finish_part(part, "complete")
                    elif isinstance(obj, h5py.Group):
                        g = dst.create_group(name)
                        for key, value in obj.attrs.items():
                            g.attrs[key] = value
                        convert(obj, g)
                    else:
                        src.copy(obj, dst, name=name)

            convert(old, top)
            top.attrs["fastinit_layout"] = LAYOUT
            session.commit()
        except (OSError, RuntimeError, KeyError) as exc:
            raise StoreError(
                f"cannot convert {path} to the layout with part files: {h5_reason(exc)}"
            ) from None
        finally:
            for part in list(session.parts.values()):
                session.discard(part)
            top.close()


def h5_reason(exc):
    """A short, user-facing reason for an h5py/HDF5 error.

    Parameters
    ----------
    exc : BaseException
        The error h5py raised.

    Returns
    -------
    str
        E.g. "not an HDF5 file", "permission denied", "the file is truncated
        (corrupt)", else the first part of the error's text.
    """
    text = str(exc)
    if "file signature not found" in text:
        return "not an HDF5 file"
    if "Permission denied" in text or "errno = 13" in text:
        return "permission denied"
    if "truncated" in text:
        return "the file is truncated (corrupt)"
    if "No space left" in text or "errno = 28" in text:
        return "No space left on device"
    return text.split("(")[0].strip() or type(exc).__name__


def replace_group(f, path, attrs=None, *, part=True):
    """Create the group ``path`` of the results being written, replacing whatever was there.

    Parameters
    ----------
    f : h5py.File
        The top file yielded by :func:`open_results` (any other writable
        ``h5py.File`` gets a plain group, as before part files).
    path : str
        Absolute group path such as ``/histogram/sigmoid/xavier``. Sibling
        groups are untouched, so a run replaces only its own groups.
    attrs : dict, optional
        Attrs of the new group (lists of str become string arrays, None "none").
    part : bool
        True (default): the group gets its own part file, linked into the tree
        when it is finished, so the old group at ``path`` stays readable until
        then. False: a group in the top file itself, for attrs and small
        datasets that hold other groups (e.g. the seeds of one run); its old
        attrs go at once, its old children when the block commits without
        having written them again. Inside a group whose part file is still
        open in this block, the new group goes into that part.

    Returns
    -------
    h5py.Group
        The new group; its ``name`` is ``path``. Besides ``attrs`` it has
        ``status="running"`` (turned into "complete" or "interrupted" when it
        is finished, unless the writer set another status), ``written_utc``
        and ``command_line``.

    Raises
    ------
    ValueError
        For an empty path.
    StoreError
        If the part file cannot be created, or ``path`` lies inside a group
        finished earlier (replace that whole group instead).
    """
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(f"group path must be a non-empty string such as '/histogram/sigmoid', got {path!r}")
    path = "/" + "/".join(p for p in path.split("/") if p)
    session = _SESSIONS.get(f.filename) if isinstance(f, h5py.File) else None
    if session is None:  # a plain h5py.File
        if path in f:
            del f[path]
        return _init_group(f.create_group(path), f.attrs.get("command_line", ""), attrs)
    for other in [p for p in session.parts if p == path or p.startswith(path + "/")]:
        session.discard(session.parts[other])  # replaced within this block before it was finished
    holder = next((p for p in session.parts if path.startswith(p + "/")), None)
    if holder is not None:  # a subgroup of a part still being written goes into that part
        pf = session.parts[holder].file
        if path in pf:
            del pf[path]
        return _init_group(pf.create_group(path), session.command_line, attrs)
    ancestor = _external_ancestor(session.top, path)
    if ancestor is not None:
        raise StoreError(
            f"cannot write {path} into {ancestor} of {session.path}: {ancestor} was finished "
            f"earlier; replace {ancestor} as a whole"
        )
    if not part:
        top = session.top
        if (
            _top_path_exists(top, path)
            and isinstance(top.get(path, getlink=True), h5py.HardLink)
            and isinstance(top[path], h5py.Group)
        ):
            # Keep the old children until this block writes their successors or ends, so a process
            # killed in between leaves the runs finished before it readable.
            g = top[path]
            old = set(g.keys()) | session.index_groups.get(path, set())
            for key in list(g.attrs):
                del g.attrs[key]
        else:
            session.drop(path)
            _require_top_group(top, path.rsplit("/", 1)[0] or "/")
            g, old = top.create_group(path), set()
        session.index_groups[path] = old
        session.written.add(path)
        return _init_group(g, session.command_line, attrs)
    new = session.new_part(path)
    return _init_group(new.file.create_group(path), session.command_line, attrs)


#: Attrs of a group that say which update wrote it: a copy gets the copying update's.
_UPDATE_ATTRS = ("written_utc", "command_line")


def copy_group(source, f, path=None):
    """Replace the group ``path`` of the results being written with a copy of the group ``source``.

    For results computed elsewhere, e.g. a run trained in another process into a results
    set of its own: its datasets (chunked and compressed as they are, their chunks copied
    without being decompressed), subgroups and attrs, in a new part as :func:`replace_group`
    makes it. ``written_utc`` and ``command_line`` are this update's.

    Parameters
    ----------
    source : h5py.Group
        The group to copy (open for reading, e.g. through :func:`open_read`).
    f : h5py.File
        The top file yielded by :func:`open_results`.
    path : str, optional
        Where the copy goes (default ``source.name``, the same path).

    Returns
    -------
    h5py.Group
        The new group; finish it with :func:`finish_group` (or let the block end).

    Raises
    ------
    StoreError
        As :func:`replace_group`.
    """
    group = replace_group(f, source.name if path is None else path)
    for key, value in source.attrs.items():
        if key not in _UPDATE_ATTRS:
            group.attrs[key] = value
    for name in source:
        source.copy(source[name], group, name=name)
    return group


def _init_group(g, command_line, attrs):
    g.attrs["status"] = "running"
    g.attrs["written_utc"] = utc_now()
    g.attrs["command_line"] = command_line
    for key, value in (attrs or {}).items():
        g.attrs[key] = _attr_value(value)
    return g


def finish_group(group, status="complete"):
    """Finish a group made by :func:`replace_group` now: write its part file and commit the update.

    After this the group is part of the results on disk even if the process
    is killed later, and the ``group`` object is closed (do not use it again).
    A group still ``running`` gets ``status``; one whose writer set another
    status (e.g. "diverged") keeps it. For a group that is not a part of an
    open :func:`open_results` block (a subgroup of a part, or a plain file),
    only the status is set.

    Parameters
    ----------
    group : h5py.Group
        A group returned by :func:`replace_group`.
    status : str
        The status for a group still "running" (default "complete").

    Raises
    ------
    StoreError
        If the part file or the top file cannot be written (full disk, ...);
        the results on disk are then as before this call.
    """
    found = _PART_SESSIONS.get(group.file.filename)
    if found is None or found[1].group_path != group.name:
        if group.attrs.get("status") == "running":
            group.attrs["status"] = status
        return
    session, part = found
    session.finish_part(part, status)
    session.commit()


def record_gpu(f, backend):
    """Name the GPU of a cuda run in the ``gpu`` attr of the results' top file; nothing for other backends.

    Parameters
    ----------
    f : h5py.File
        The top file yielded by :func:`open_results`.
    backend : str
        The backend the results were computed on.
    """
    if backend == "cuda":
        from .machine import gpu_name

        f.attrs["gpu"] = gpu_name()


def mark_interrupted(group, reason="interrupted by the user"):
    """Mark ``group`` as interrupted (call it from an ``except KeyboardInterrupt``).

    Parameters
    ----------
    group : h5py.Group
        A group made by :func:`replace_group`.
    reason : str
        Stored as its ``interrupted_reason`` attr.
    """
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


def create_appendable(
    group,
    name,
    row_shape=(),
    dtype="float32",
    *,
    chunk_rows=None,
    compression="gzip",
    compression_opts=4,
    attrs=None,
):
    """Create an empty dataset ``name`` in ``group`` that grows along its first axis.

    The dataset has shape ``(0,) + row_shape`` and ``maxshape (None,) + row_shape``,
    is chunked (at most about 1 MiB and ``chunk_rows`` rows per chunk), shuffled
    and gzip-compressed, so rows can be streamed with :func:`append` using
    constant memory. An existing dataset of that name is replaced.

    Parameters
    ----------
    group : h5py.Group
        Where to create it.
    name : str
        Its name.
    row_shape : tuple of int
        The shape of one row (``()``: a 1-D series).
    dtype : str or numpy.dtype
        Its dtype.
    chunk_rows : int, optional
        At most this many rows per chunk (default: as many as fit in about 1 MiB, up to 4096).
    compression : str or None
        h5py compression filter ("gzip" by default; None for none).
    compression_opts : int
        The gzip level.
    attrs : dict, optional
        Attrs of the dataset (None becomes "none", lists of str string arrays).

    Returns
    -------
    h5py.Dataset
        The new, empty dataset.

    Raises
    ------
    ValueError
        If a size in ``row_shape`` is below 1.
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

    Parameters
    ----------
    ds : h5py.Dataset
        A dataset made by :func:`create_appendable`.
    rows : array_like
        Shape ``(k,) + row_shape`` (k rows) or ``row_shape`` (one row); cast to the dataset's dtype.

    Returns
    -------
    int
        The number of rows in ``ds`` now.

    Raises
    ------
    ValueError
        If the rows do not have the dataset's row shape.
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
        ds[n : n + k] = rows
    return n + k


@contextmanager
def open_read(path):
    """Open an existing results file read-only; yield the ``h5py.File``.

    External links to part files resolve by themselves (relative to the top
    file's folder), so the yielded file shows the whole tree.

    Parameters
    ----------
    path : str or os.PathLike
        The top file (or a file of the single-file layout).

    Yields
    ------
    h5py.File
        The file, open read-only.

    Raises
    ------
    StoreError
        If the file is missing, unreadable, or not HDF5.
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
        raise StoreError(f"cannot read {path}: {h5_reason(exc)}") from None
    try:
        yield f
    finally:
        f.close()


def walk(group):
    """Every group and dataset under ``group``, through external links, in file (name) order.

    Parameters
    ----------
    group : h5py.Group
        Usually a file from :func:`open_read`.

    Yields
    ------
    (str, h5py.Group or h5py.Dataset)
        The path in the tree (``/train/he/loss``) and the object, parents
        before their children.

    Raises
    ------
    StoreError
        If a linked part file is missing or unreadable (naming it).
    """
    for name in group.keys():
        path = f"{group.name.rstrip('/')}/{name}"
        try:
            obj = group[name]
        except (KeyError, OSError) as exc:
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.ExternalLink):
                raise StoreError(f"cannot read {path} of {group.file.filename}: {h5_reason(exc)}") from None
            part = os.path.join(os.path.dirname(group.file.filename), link.filename)
            reason = h5_reason(exc) if os.path.exists(part) else "the file is missing"
            raise StoreError(
                f"cannot read {path} of {group.file.filename}: its part file {link.filename}: {reason}"
            ) from None
        if obj is None:
            continue
        yield path, obj
        if isinstance(obj, h5py.Group):
            yield from walk(obj)


def plain(value):
    """An attribute value as plain Python: bytes -> str, string arrays -> lists, NumPy scalars -> Python.

    Parameters
    ----------
    value : object
        A value read from ``h5py`` attrs.

    Returns
    -------
    object
        ``str``, ``list``, a Python number, or numeric NumPy arrays unchanged.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [plain(v) for v in value.tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value
