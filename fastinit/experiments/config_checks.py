"""Field checks the experiments' config dataclasses share; each raises naming the bad field."""

import math

import numpy as np

__all__ = ["positive_int", "positive_number", "float_dtype", "train_limit"]


def positive_int(name, value, minimum=1):
    """``value`` as an int, if it is an integer (not a bool) of at least ``minimum``.

    Parameters
    ----------
    name : str
        The field, for the message.
    value : object
    minimum : int, default 1

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Otherwise.
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

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Otherwise.
    """
    number = (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, number) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def float_dtype(value):
    """``value`` if it is ``"float32"`` or ``"float64"``.

    Parameters
    ----------
    value : object

    Returns
    -------
    str

    Raises
    ------
    TypeError
        Otherwise.
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

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        Otherwise.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < batch_size:
        raise ValueError(f"train_limit must be None or an integer >= batch_size, got {value!r}")
    return int(value)
