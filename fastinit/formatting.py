"""Small text formatters shared by the reports, tables and figures (no dependencies).

A neutral home so that :mod:`fastinit.benchreport`, :mod:`fastinit.plots` and
:mod:`fastinit.experiments.profile` can share them without importing each other.
"""

import math

__all__ = ["format_time"]


def format_time(seconds):
    """Format a duration with a unit, to 3 significant digits.

    Parameters
    ----------
    seconds : float or None
        The duration in seconds.

    Returns
    -------
    str
        E.g. ``"1.23 ms"`` (units s, ms, us, ns); ``"-"`` for None, NaN or Inf.
    """
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
