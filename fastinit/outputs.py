"""Where a command's results and figures go, and how a file is replaced in one step.

One folder for everything: ``fastinit-results/fastinit.h5`` by default, each figure beside it
under the name ``fastinit reproduce`` gives it (``fastinit-results/histogram-sigmoid.png``,
``mnist-loss.png``, ...). With another results file ``FILE.h5`` the figures are
``FILE-<suffix>.png`` beside it.
"""

import os
from contextlib import contextmanager

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_OUT",
    "default_figure",
    "why_unwritable",
    "replacing",
    "write_text",
]

#: The folder every command writes to unless told otherwise.
DEFAULT_DIR = "fastinit-results"
#: The results file in it.
DEFAULT_OUT = os.path.join(DEFAULT_DIR, "fastinit.h5")


def _stem(out):
    return out[:-3] if out.endswith(".h5") else (out[:-5] if out.endswith(".hdf5") else out)


def default_figure(out, name, suffix=None):
    """The figure file a command writing `out` draws when no other file is named.

    Parameters
    ----------
    out : str
        The command's results file.
    name : str
        The figure's name in the default folder (``fastinit reproduce``'s name), e.g.
        ``"mnist-loss"``.
    suffix : str, optional
        What follows ``<out without .h5>-`` for any other results file; `name` when None.

    Returns
    -------
    str
        ``fastinit-results/<name>.png`` when `out` is ``DEFAULT_OUT``, else
        ``<out without .h5>-<suffix>.png``.
    """
    if os.path.abspath(out) == os.path.abspath(DEFAULT_OUT):
        return os.path.join(DEFAULT_DIR, f"{name}.png")
    return f"{_stem(out)}-{suffix or name}.png"


def why_unwritable(path):
    """Say why a file cannot be written at `path`, before any work starts.

    Parameters
    ----------
    path : str
        The file to write.

    Returns
    -------
    str or None
        ``"<path> is a directory; ..."``, ``"cannot write <path>: folder <folder> does not
        exist"`` or ``"... is not writable"``; None when none is the case.
    """
    if os.path.isdir(path):
        return f"{path} is a directory; give the name of a file in it"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"cannot write {path}: folder {parent} does not exist"
    if not os.access(parent, os.W_OK):
        return f"cannot write {path}: folder {parent} is not writable"
    return None


@contextmanager
def replacing(path):
    """Write a file in one step: a temporary file beside `path` that replaces it at the end.

    Readers see the old file or the new one, never half of it; when the block raises, the
    temporary file is removed and `path` is left as it was.

    Parameters
    ----------
    path : str
        The file to write.

    Yields
    ------
    str
        The temporary file to write (``.<name>.<pid>.tmp`` in the folder of `path`).

    Raises
    ------
    OSError
        If the temporary file cannot replace `path`.
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Write `text` to `path` (UTF-8) in one step.

    Parameters
    ----------
    path : str
        The file to write.
    text : str
        Its content.

    Returns
    -------
    str
        `path`.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
