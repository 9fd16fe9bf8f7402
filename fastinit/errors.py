"""The one base of every error fastinit raises on purpose.

Each module's error derives from :class:`FastinitError` (and from the builtin it is a kind
of, e.g. ``ValueError`` for bad data), so callers catch ``FastinitError`` for "fastinit said
no" and the CLI turns any of them into one line and the exit status the class names.
"""

__all__ = ["FastinitError", "UsageError", "EXIT_FAILED", "EXIT_USAGE"]

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
