"""``fastinit theory``: the mean-field quantities over a range of weight variances.

The four parts every experiment has: :class:`TheoryConfig`, :func:`run` returning a
:class:`TheoryResult`, the result's own table (:meth:`TheoryResult.format_table`), and its HDF5
layout (:func:`write`, under ``/theory/<activation>/sb2=<sb2>``, as :data:`fastinit.schema.THEORY`
declares it).
"""

from dataclasses import dataclass, field, replace

import numpy as np

from .. import schema
from ..theory import check_parameters, critical_sw2, mean_field

__all__ = ["TheoryConfig", "TheoryResult", "run", "write", "group_path", "DEFAULT_SW2", "COLUMNS"]

#: sigma_w^2 from 1 to 4 in steps of 0.25.
DEFAULT_SW2 = tuple(1.0 + 0.25 * i for i in range(13))

#: Stored columns (their units and descriptions: :data:`fastinit.schema.THEORY`).
COLUMNS = tuple(d.name for d in schema.THEORY.datasets)


@dataclass(frozen=True)
class TheoryConfig:
    """What ``fastinit theory`` computes.

    Parameters
    ----------
    activation : str
        One of ``fastinit.theory.ACTIVATIONS``.
    sb2 : float
        Bias variance sigma_b^2.
    sw2 : tuple of float
        Weight variances sigma_w^2 (times 1/fan_in).
    """

    activation: str = "tanh"
    sb2: float = 0.05
    sw2: tuple = field(default=DEFAULT_SW2)

    def validate(self):
        """Check every field.

        Returns
        -------
        TheoryConfig
            This config, with ``sw2`` as a tuple of floats.

        Raises
        ------
        ValueError
            For an unknown activation, no weight variance, or a variance that is negative or
            not finite.
        TypeError
            For a variance that is not a real number.
        """
        if isinstance(self.sw2, (str, bytes)) or not np.iterable(self.sw2) or len(self.sw2) == 0:
            raise ValueError(f"sw2 must be a non-empty sequence of numbers, got {self.sw2!r}")
        sw2 = tuple(check_parameters(self.activation, v, self.sb2)[0] for v in self.sw2)
        return replace(self, sw2=sw2)


@dataclass
class TheoryResult:
    """The mean-field quantities of each weight variance of a :class:`TheoryConfig`.

    Parameters
    ----------
    config : TheoryConfig
        What was computed.
    rows : list of fastinit.theory.MeanField
        One per ``config.sw2``.
    critical_sw2 : float
        The edge of chaos for ``config.activation`` and ``config.sb2``.
    """

    config: TheoryConfig
    rows: list
    critical_sw2: float

    def column(self, name):
        """One quantity over the weight variances.

        Parameters
        ----------
        name : str
            One of :data:`COLUMNS`.

        Returns
        -------
        ndarray, float64, shape (len(config.sw2),)
            The values.
        """
        return np.array([getattr(m, name) for m in self.rows], dtype=np.float64)

    def format_table(self):
        """Render the result as the text table ``fastinit theory`` prints.

        Returns
        -------
        str
            The edge of chaos, then one line per weight variance.
        """
        c = self.config
        lines = [
            f"{c.activation}, sb2 = {c.sb2:g}: edge of chaos at sw2 = {self.critical_sw2:.4g}",
            f"{'sw2':>8} {'q*':>10} {'chi1':>8} {'c*':>8} {'xi_c':>9} {'6 xi_c':>9}  phase",
        ]
        for m in self.rows:
            lines.append(
                f"{m.sw2:8.4g} {m.q_star:10.4g} {m.chi1:8.4f} {m.c_star:8.4f} {m.xi_c:9.4g} "
                f"{6 * m.xi_c:9.4g}  {m.phase}"
            )
        return "\n".join(lines)


def run(config=None):
    """Compute the mean-field quantities of every weight variance of ``config``.

    Parameters
    ----------
    config : TheoryConfig, optional
        Default: ``TheoryConfig()`` (tanh, sb2 = 0.05, sw2 from 1 to 4).

    Returns
    -------
    TheoryResult
        The quantities and the edge of chaos.

    Raises
    ------
    ValueError
        For an unknown activation or a variance that is negative or not finite.
    """
    config = (config or TheoryConfig()).validate()
    rows = [mean_field(config.activation, sw2, config.sb2) for sw2 in config.sw2]
    return TheoryResult(config, rows, critical_sw2(config.activation, config.sb2))


def group_path(config):
    """Where :func:`write` stores a result of ``config``.

    Parameters
    ----------
    config : TheoryConfig
        The result's config.

    Returns
    -------
    str
        ``/theory/<activation>/sb2=<sb2>``.
    """
    return schema.THEORY.at(activation=config.activation, sb2=f"{config.sb2:g}")


def write(f, result):
    """Store ``result`` in an open results file, one dataset per column.

    Parameters
    ----------
    f : h5py.File
        The results file, open for writing (``fastinit.store.open_results``).
    result : TheoryResult
        What to store.

    Returns
    -------
    str
        The group written (:func:`group_path`), replacing one of the same config.
    """
    from ..store import replace_group

    c = result.config
    where = group_path(c)
    g = replace_group(
        f, where, attrs=dict(activation=c.activation, sb2=c.sb2, critical_sw2=result.critical_sw2)
    )
    for entry in schema.THEORY.datasets:
        schema.label(g.create_dataset(entry.name, data=result.column(entry.name)), entry)
    return where
