"""Field checks the experiments' config dataclasses share; each raises naming the bad field."""

import math

import numpy as np

__all__ = [
    "positive_int",
    "positive_number",
    "optional_number",
    "integers",
    "choices",
    "float_dtype",
    "train_limit",
]


def positive_int(name, value, minimum=1):
    """``value`` as an int, if it is an integer (not a bool) of at least ``minimum``.

    Parameters
    ----------
    name : str
        The field, for the message.
    value : object
        The value to check.
    minimum : int, default 1
        The smallest value allowed.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not an integer, or below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def positive_number(name, value):
    """``value`` as a float, if it is a finite number (not a bool) above 0.

    Parameters
    ----------
    name : str
        The field, for the message.
    value : object
        The value to check.

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not a number, not finite, or not above 0.
    """
    number = (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, number) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def optional_number(name, value, positive=False):
    """``value`` as a float, if it is a finite number (not a bool) of at least 0; None stays None.

    Parameters
    ----------
    name : str
        The field, for the message.
    value : object
        The value to check, or None.
    positive : bool, default False
        Refuse 0 too.

    Returns
    -------
    float or None
        ``value`` as a Python float, or None if ``value`` is None.

    Raises
    ------
    ValueError
        If ``value`` is a bool, not a number, not finite, below 0, or 0 with ``positive``.
    """
    if value is None:
        return None
    number = (int, float, np.integer, np.floating)
    if (
        isinstance(value, bool)
        or not isinstance(value, number)
        or not 0 <= value < math.inf
        or (positive and value == 0)
    ):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


def _values(name, value, scalar):
    """``value`` as a non-empty tuple of distinct values (a ``scalar`` alone is one value)."""
    values = (value,) if isinstance(value, scalar) or not np.iterable(value) else tuple(value)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated values: {values}")
    return values


def integers(name, value, minimum):
    """``value``, an integer or a sequence of distinct integers of at least ``minimum``, as a tuple.

    Parameters
    ----------
    name : str
        The field, for the message.
    value : int or sequence of int
        The value or values to check.
    minimum : int
        The smallest value allowed.

    Returns
    -------
    tuple of int
        In the given order.

    Raises
    ------
    ValueError
        For no value, a repeated one, or one that is not an integer of at least ``minimum``.
    """
    return tuple(positive_int(name, v, minimum) for v in _values(name, value, (int, np.integer)))


def choices(name, value, allowed):
    """``value``, one of ``allowed`` or a sequence of distinct ones, as a tuple.

    Parameters
    ----------
    name : str
        The field, for the message.
    value : str or sequence of str
        The value or values to check.
    allowed : sequence of str
        The values allowed.

    Returns
    -------
    tuple of str
        In the given order.

    Raises
    ------
    ValueError
        For no value, a repeated one, or one not in ``allowed``.
    """
    values = _values(name, value, str)
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name} must hold values from {', '.join(allowed)}, got {v!r}")
    return values


def float_dtype(value):
    """``value`` if it is ``"float32"`` or ``"float64"``.

    Parameters
    ----------
    value : object
        The dtype name to check.

    Returns
    -------
    str
        ``value``, unchanged.

    Raises
    ------
    TypeError
        If ``value`` is neither ``"float32"`` nor ``"float64"``.
    """
    if value not in ("float32", "float64"):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {value!r}")
    return value


def train_limit(value, batch_size):
    """``value`` (training images to use) as an int, or None for all of them.

    Parameters
    ----------
    value : object
        None, or an integer of at least ``batch_size``.
    batch_size : int
        The training batch size, the smallest limit allowed.

    Returns
    -------
    int or None
        ``value`` as a Python int, or None if ``value`` is None.

    Raises
    ------
    ValueError
        If ``value`` is not None and is a bool, not an integer, or below ``batch_size``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < batch_size:
        raise ValueError(f"train_limit must be None or an integer >= batch_size, got {value!r}")
    return int(value)
