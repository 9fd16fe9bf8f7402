"""The one base of every error fastinit raises on purpose.

Each module's error derives from :class:`FastinitError` (and from the builtin it is a kind
of, e.g. ``ValueError`` for bad data), so callers catch ``FastinitError`` for "fastinit said
no" and the CLI turns any of them into one line and the exit status the class names.
"""

__all__ = ["FastinitError", "UsageError", "EXIT_FAILED", "EXIT_USAGE", "exit_status_for", "one_line_message"]

EXIT_FAILED = 1
EXIT_USAGE = 2


class FastinitError(Exception):
    """A failure fastinit explains in one line: a bad file, missing data, an unreachable cluster.

    Attributes
    ----------
    exit_status : int
        The CLI's exit status for it: 1 (``EXIT_FAILED``, the command failed) unless a
        subclass says otherwise.
    """

    exit_status = EXIT_FAILED


class UsageError(FastinitError):
    """A bad command-line argument or option value.

    Attributes
    ----------
    exit_status : int
        2 (``EXIT_USAGE``).
    """

    exit_status = EXIT_USAGE


def exit_status_for(exc):
    """The exit status of a command that raised `exc`, or None for a bug.

    Parameters
    ----------
    exc : Exception
        What the command raised.

    Returns
    -------
    int or None
        The class's ``exit_status`` for a :class:`FastinitError`; 1 (``EXIT_FAILED``) for an
        ``OSError`` or a ``KeyError`` (a file or an entry that is not there); 2
        (``EXIT_USAGE``) for a ``ValueError`` or ``TypeError`` (a bad value that reached the
        library's own checks); None for anything else, which is a bug and keeps its traceback.
    """
    if isinstance(exc, FastinitError):
        return exc.exit_status
    if isinstance(exc, (OSError, KeyError)):
        return EXIT_FAILED
    if isinstance(exc, (ValueError, TypeError)):
        return EXIT_USAGE
    return None


def one_line_message(exc):
    """What went wrong, on one line, for the user.

    Parameters
    ----------
    exc : Exception
        The error.

    Returns
    -------
    str
        Its message with runs of white space (newlines included) made single spaces; a
        ``KeyError``'s key without quotes; ``<file>: <reason>`` for an ``OSError`` that names
        both.
    """
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"
    return " ".join(str(message).split())
