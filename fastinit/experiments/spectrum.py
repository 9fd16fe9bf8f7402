"""Dynamical isometry: the singular values of a deep network's input-output Jacobian at init.

Pennington, Schoenholz and Ganguli (2017, "Resurrecting the sigmoid in deep
learning through dynamical isometry") show that at the edge of chaos the mean
squared singular value of ``J = dx_L / dx_0 = D_L W_L ... D_1 W_1`` stays 1 at
any depth, while its spread grows linearly with depth, as
``L (mu2 / mu1^2 - 1 - s1)`` (:func:`fastinit.theory.jacobian_spectrum`): for
Gaussian weights (``s1 = -1``) at least like ``L``, for ReLU (``mu2 / mu1^2 =
2``) whatever the weights, and only for orthogonal weights with tanh at a small
variance fixed point ``q*`` (``mu2 ~ mu1^2``) does it stay near 0, the
network an isometry: "dynamical isometry".

This experiment measures it. For each activation and weight distribution, and
each of ``samples`` draws: a fresh network of ``max(depths)`` square layers of
``width`` units (weights ``N(0, sw2 / width)`` or ``sqrt(sw2)`` times a random
orthogonal matrix, biases ``N(0, sb2)``), an input ``x_0 = phi(h_0)`` with
``h_0 ~ N(0, q*)`` (the fixed-point distribution, so every layer's
pre-activations have variance ``q*``), the forward pass and, layer by layer,
``J^T <- J^T W_l`` with its columns scaled by ``phi'(h_l)``, all with the
backend's ``matmul`` kernel in float64 (no autograd); at each depth in
``depths`` the singular values of ``J`` (``numpy.linalg.svd``, float64). Depths
share the draw: depth 8 is the first 8 layers of the depth-128 network.

Seeding: draw ``k`` uses ``numpy.random.default_rng([seed, k])`` for its
input, weights and biases (in that order, layer by layer), the same for every
activation and weight distribution, so runs differ only where they must.

HDF5 layout written by :func:`write`: ``/spectrum/<activation>-<weights>`` (attrs: the
config and the theory) with one ``depth=<L>/singular_values`` per depth, as
:data:`fastinit.schema.SPECTRUM_RUN` and :data:`fastinit.schema.SPECTRUM_DEPTH` declare them
(``docs/storage.md``). ``/spectrum/training``, written by ``fastinit spectrum --train``, is the
learning-speed comparison of :mod:`fastinit.experiments.spectrum_training`; :func:`read`
skips it.

Python use::

    from fastinit.experiments.spectrum import SpectrumConfig, run, write
    result = run(SpectrumConfig(activations=("tanh",), depths=(8, 32), width=128))
    result.runs["tanh-orthogonal"].stats(32)     # measured and theory mean, variance
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .. import schema
from ..backends import check_backend, kernels_for
from .config_checks import choices, integers, optional_number, positive_int

__all__ = [
    "SpectrumConfig",
    "SpectrumRun",
    "SpectrumResult",
    "SpectrumStats",
    "ACTIVATIONS",
    "WEIGHTS",
    "DEFAULT_Q_STAR",
    "run",
    "write",
    "read",
    "format_summary",
    "group_path",
]

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")  # what the kernels compute
WEIGHTS = ("gaussian", "orthogonal")
DEFAULT_Q_STAR = 1.0 / 64.0  # a small fixed point, as in Pennington et al. (2017)
#: Squared singular values below this fraction of the largest one count as 0 (ReLU's D zeroes rows).
ZERO_FRACTION = 1e-24


def group_path(activation, weights):
    """The HDF5 group of one run (``fastinit.schema.SPECTRUM_RUN``).

    Parameters
    ----------
    activation : str
        The activation.
    weights : str
        The weight distribution, one of :data:`WEIGHTS`.

    Returns
    -------
    str
        ``/spectrum/<activation>-<weights>``.
    """
    return schema.SPECTRUM_RUN.at(activation=activation, weights=weights)


@dataclass(frozen=True)
class SpectrumConfig:
    """What :func:`run` measures.

    ``sw2``/``sb2`` ``None`` (default): the edge of chaos of each activation, at the
    fixed point ``q_star`` (default :data:`DEFAULT_Q_STAR`) for tanh, at ``sb2 = 0``
    for sigmoid (whose edge needs a large ``q*``), ``(2, 0)`` for ReLU (He's init)
    and ``(1, 0)`` for linear units. Only ``sb2`` given: the critical ``sw2`` for it.
    Only ``sw2`` given: ``sb2 = 0``. Both: taken as they are (off the edge too).
    ``q_star`` cannot be combined with ``sw2`` or ``sb2``.

    Parameters
    ----------
    activations : tuple of str
        Activations from :data:`ACTIVATIONS`, one run per activation and weight distribution.
    weights : tuple of str
        Weight distributions from :data:`WEIGHTS`.
    depths : tuple of int
        Depths at which the singular values are taken (sorted by ``validate``).
    width : int
        Units of every square layer.
    sw2 : float or None
        Weight variance sigma_w^2.
    sb2 : float or None
        Bias variance sigma_b^2.
    q_star : float or None
        The fixed point at which the edge of chaos is sought.
    samples : int
        Independent draws of network and input.
    seed : int
        Seed of the draws (see the module docstring).
    backend : {"numpy", "cpu"}
        Kernel backend of the matmuls (cuda is refused).
    """

    activations: tuple = ("tanh", "relu")
    weights: tuple = WEIGHTS
    depths: tuple = (8, 32, 128)
    width: int = 200
    sw2: float = None
    sb2: float = None
    q_star: float = None
    samples: int = 4
    seed: int = 0
    backend: str = "cpu"

    def validate(self):
        """The config with normalised types.

        Returns
        -------
        SpectrumConfig
            A checked copy, ``depths`` sorted.

        Raises
        ------
        ValueError
            Naming the bad field (the cuda backend included).
        fastinit.backends.BackendError
            For an unknown backend.
        """
        depths = integers("depths", self.depths, 1)
        q_star = optional_number("q_star", self.q_star, positive=True)
        if q_star is not None and (self.sw2 is not None or self.sb2 is not None):
            raise ValueError("give q_star or sw2/sb2, not both")
        return replace(
            self,
            activations=choices("activations", self.activations, ACTIVATIONS),
            weights=choices("weights", self.weights, WEIGHTS),
            depths=tuple(sorted(depths)),
            width=positive_int("width", self.width),
            sw2=optional_number("sw2", self.sw2),
            sb2=optional_number("sb2", self.sb2),
            q_star=q_star,
            samples=positive_int("samples", self.samples),
            seed=positive_int("seed", self.seed, 0),
            backend=check_backend(self.backend) if self.backend != "cuda" else _no_cuda(),
        )

    def point(self, activation):
        """The point ``(sw2, sb2)`` for ``activation`` under this config (see the class docstring).

        Parameters
        ----------
        activation : str
            An activation of :data:`ACTIVATIONS`.

        Returns
        -------
        tuple of float
            The weight and bias variances.

        Raises
        ------
        ValueError
            For an edge of chaos that does not exist for ``activation`` at the config's values.
        """
        from ..theory import critical_sw2, edge_of_chaos

        if self.sw2 is not None:
            return self.sw2, (self.sb2 if self.sb2 is not None else 0.0)
        if self.sb2 is not None:
            return critical_sw2(activation, self.sb2), self.sb2
        if self.q_star is not None:
            return edge_of_chaos(activation, self.q_star)
        try:
            return edge_of_chaos(activation, DEFAULT_Q_STAR)
        except ValueError:  # sigmoid: its edge needs a large q*
            return critical_sw2(activation, 0.0), 0.0


def _no_cuda():
    raise ValueError("backend must be 'numpy' or 'cpu': the spectrum runs its matmuls on the host")


@dataclass(frozen=True)
class SpectrumStats:
    """Statistics of the squared singular values ``lam = s^2`` at one depth.

    Parameters
    ----------
    depth : int
        The depth.
    mean, variance : float
        Measured, over all draws' values together.
    mean_se, variance_se : float
        Their standard errors (jackknife over the draws; NaN for one draw).
    theory_mean, theory_variance : float
        The theory's mean and variance (large width).
    zero : float
        The fraction below :data:`ZERO_FRACTION` of the largest (exact zeros of ReLU, and
        values below float64's resolution).
    p5, median, p95 : float
        The 5th, 50th and 95th percentiles of the rest (NaN when none is left).
    """

    depth: int
    mean: float
    variance: float
    mean_se: float
    variance_se: float
    theory_mean: float
    theory_variance: float
    zero: float
    p5: float
    median: float
    p95: float


@dataclass
class SpectrumRun:
    """One activation and weight distribution: its point, its theory and its singular values.

    Parameters
    ----------
    activation : str
        The activation.
    weights : str
        The weight distribution.
    sw2, sb2 : float
        The point: weight and bias variances.
    q_star : float
        The theory's fixed point of the pre-activation variance.
    chi1 : float
        The theory's chi1.
    mu1, mu2 : float
        The theory's ``mu_k = E[phi'(h)^(2k)]``, ``h ~ N(0, q_star)`` (``q = 1`` where ``q_star``
        is not finite).
    width : int, default 0
        Units per layer (0: unknown, the draws are then taken together).
    singular_values : dict, optional
        Depth -> float64 array of shape (samples * width,).
    """

    activation: str
    weights: str
    sw2: float
    sb2: float
    q_star: float
    chi1: float
    mu1: float
    mu2: float
    width: int = 0
    singular_values: dict = field(default_factory=dict)

    @property
    def name(self):
        """``<activation>-<weights>``, the run's key in :class:`SpectrumResult`."""
        return f"{self.activation}-{self.weights}"

    def theory(self, depth):
        """The theory's mean and variance of the squared singular values at ``depth`` (large width).

        Parameters
        ----------
        depth : int
            The number of layers.

        Returns
        -------
        tuple of float
            ``(mean, variance)``.
        """
        from ..theory import WEIGHTS as S1

        chi = self.sw2 * self.mu1
        return chi**depth, depth * (self.mu2 / self.mu1**2 - 1.0 - S1[self.weights]) * chi ** (2 * depth)

    def stats(self, depth):
        """The statistics of the squared singular values at ``depth``.

        Parameters
        ----------
        depth : int
            A depth of ``singular_values``.

        Returns
        -------
        SpectrumStats
            Measured and theory values at ``depth``.

        Raises
        ------
        KeyError
            For a depth that was not measured.
        """
        lam = np.square(self.singular_values[depth])
        nonzero = lam[lam > ZERO_FRACTION * lam.max()] if lam.size and lam.max() > 0 else lam[:0]
        p5, median, p95 = np.percentile(nonzero, [5, 50, 95]) if nonzero.size else (math.nan,) * 3
        mean, var = self.theory(depth)
        draws = lam.reshape(-1, self.width) if self.width else lam[None, :]
        m, m2 = draws.mean(axis=1), np.square(draws).mean(axis=1)
        k = len(draws)
        if k > 1:  # jackknife: leave one draw out
            m_out = (m.sum() - m) / (k - 1)
            v_out = (m2.sum() - m2) / (k - 1) - m_out**2
            mean_se = math.sqrt((k - 1) / k * np.sum((m_out - m_out.mean()) ** 2))
            var_se = math.sqrt((k - 1) / k * np.sum((v_out - v_out.mean()) ** 2))
        else:
            mean_se = var_se = math.nan
        return SpectrumStats(
            depth,
            float(lam.mean()),
            float(lam.var()),
            mean_se,
            var_se,
            mean,
            var,
            1.0 - nonzero.size / max(1, lam.size),
            float(p5),
            float(median),
            float(p95),
        )


@dataclass
class SpectrumResult:
    """What :func:`run` returns.

    Parameters
    ----------
    config : SpectrumConfig
        The validated config.
    runs : dict
        ``<activation>-<weights>`` -> :class:`SpectrumRun`.
    """

    config: SpectrumConfig
    runs: dict


def _draw_weights(kind, width, sw2, rng):
    if kind == "gaussian":
        return rng.normal(0.0, math.sqrt(sw2 / width), size=(width, width))
    q, r = np.linalg.qr(rng.standard_normal((width, width)))
    return np.ascontiguousarray(math.sqrt(sw2) * q * np.sign(np.diag(r)))  # Haar (Mezzadri 2007)


def _singular_values(activation, kind, sw2, sb2, q_in, depths, width, rng, k):
    """One draw: the singular values of J at each depth in ``depths`` (sorted)."""
    from ..theory import phi_prime

    x = np.ascontiguousarray(
        np.asarray(
            k.activation_forward(np.sqrt(q_in) * rng.standard_normal((1, width)), activation),
            dtype=np.float64,
        )
    )
    jt = np.eye(width)  # J^T, (input, unit)
    out = {}
    for layer in range(1, depths[-1] + 1):
        w = _draw_weights(kind, width, sw2, rng)
        b = rng.normal(0.0, math.sqrt(sb2), size=width) if sb2 > 0 else np.zeros(width)
        h = np.asarray(k.matmul(x, w)) + b
        jt = np.asarray(k.matmul(jt, w)) * phi_prime(h[0], activation)[None, :]  # J^T W_l D_l
        x = np.ascontiguousarray(np.asarray(k.activation_forward(np.ascontiguousarray(h), activation)))
        if layer in depths:
            out[layer] = np.linalg.svd(jt, compute_uv=False)
    return out


def run(config, *, progress=True):
    """Measure the Jacobian spectra described by ``config``.

    Parameters
    ----------
    config : SpectrumConfig
        Validated here.
    progress : bool, optional
        A progress bar (or heartbeat lines off a terminal) over the draws.

    Returns
    -------
    SpectrumResult
        One run per activation and weight distribution.

    Raises
    ------
    ValueError, TypeError
        For a bad config (see :meth:`SpectrumConfig.validate`), or an edge of chaos that does
        not exist for an activation.
    """
    from ..progress import Progress
    from ..theory import mean_field, slope_moments

    config = config.validate()
    k = kernels_for(config.backend)
    runs = {}
    points = {a: config.point(a) for a in config.activations}  # raises before any work
    bar = Progress(
        len(config.activations) * len(config.weights) * config.samples, "spectrum", "draw", enabled=progress
    )
    for activation in config.activations:
        sw2, sb2 = points[activation]
        m = mean_field(activation, sw2, sb2)
        q_in = m.q_star if 0 < m.q_star < math.inf else 1.0  # ReLU/linear at sb2 = 0: any scale is kept
        mu1, mu2 = slope_moments(m.q_star if math.isfinite(m.q_star) else 1.0, activation)
        for kind in config.weights:
            r = SpectrumRun(activation, kind, sw2, sb2, m.q_star, m.chi1, mu1, mu2, config.width)
            draws = []
            for sample in range(config.samples):
                rng = np.random.default_rng([config.seed, sample])
                draws.append(
                    _singular_values(activation, kind, sw2, sb2, q_in, config.depths, config.width, rng, k)
                )
                bar.update(1, run=r.name)
            r.singular_values = {d: np.concatenate([s[d] for s in draws]) for d in config.depths}
            runs[r.name] = r
    bar.close(f"{len(runs)} runs x {config.samples} draws, depths {', '.join(map(str, config.depths))}")
    return SpectrumResult(config, runs)


def _attrs(result, r):
    c = result.config
    return dict(
        activation=r.activation,
        weights=r.weights,
        sw2=r.sw2,
        sb2=r.sb2,
        q_star=r.q_star,
        chi1=r.chi1,
        mu1=r.mu1,
        mu2=r.mu2,
        width=c.width,
        samples=c.samples,
        seed=c.seed,
        backend=c.backend,
    )


def write(f, result):
    """Write ``result`` into the open results file ``f`` (from :func:`fastinit.store.open_results`).

    Replaces ``/spectrum/<activation>-<weights>`` for each run and leaves every other group alone.

    Parameters
    ----------
    f : h5py.File
        A results file open for writing.
    result : SpectrumResult
        What :func:`run` returned.

    Returns
    -------
    list of str
        The group paths written.
    """
    from ..store import replace_group

    entry = schema.SPECTRUM_DEPTH["singular_values"]
    written = []
    for r in result.runs.values():
        attrs = _attrs(result, r)
        g = replace_group(f, group_path(r.activation, r.weights), attrs=attrs)
        for depth, values in r.singular_values.items():
            s = r.stats(depth)
            ds = g.create_group(f"depth={depth}").create_dataset(
                entry.name, data=np.asarray(values, dtype=np.float64), compression="gzip", shuffle=True
            )
            schema.label(
                ds,
                entry,
                dict(depth=depth, samples=result.config.samples, width=result.config.width),
                depth=depth,
                theory_mean=s.theory_mean,
                theory_variance=s.theory_variance,
                mean=s.mean,
                variance=s.variance,
                **attrs,
            )
        written.append(g.name)
    return written


def read(path):
    """Read every ``/spectrum`` run of the results file ``path`` back into a :class:`SpectrumResult`.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 results file.

    Returns
    -------
    SpectrumResult
        Its config rebuilt from the stored attrs.

    Raises
    ------
    fastinit.store.StoreError
        For a bad file.
    KeyError
        When the file holds no spectrum.
    """
    from ..store import open_read

    runs, depths, first = {}, set(), None
    with open_read(path) as f:
        if "spectrum" not in f or not any(name != "training" for name in f["spectrum"]):
            raise KeyError(f"{path} holds no /spectrum group (run 'fastinit spectrum')")
        for name, g in f["spectrum"].items():
            if name == "training":  # fastinit spectrum --train (spectrum_training.read)
                continue
            a = g.attrs
            first = first or dict(a)
            r = SpectrumRun(
                str(a["activation"]),
                str(a["weights"]),
                float(a["sw2"]),
                float(a["sb2"]),
                float(a["q_star"]),
                float(a["chi1"]),
                float(a["mu1"]),
                float(a["mu2"]),
                int(a["width"]),
            )
            for key, sub in g.items():
                depth = int(key.split("=", 1)[1])
                r.singular_values[depth] = sub["singular_values"][()]
                depths.add(depth)
            runs[name] = r
    config = SpectrumConfig(
        activations=tuple(dict.fromkeys(r.activation for r in runs.values())),
        weights=tuple(dict.fromkeys(r.weights for r in runs.values())),
        depths=tuple(sorted(depths)),
        width=int(first["width"]),
        samples=int(first["samples"]),
        seed=int(first["seed"]),
        backend=str(first["backend"]),
    )
    return SpectrumResult(config, runs)


def format_summary(result):
    """A table of the squared singular values per run and depth.

    Parameters
    ----------
    result : SpectrumResult
        From :func:`run` or :func:`read`.

    Returns
    -------
    str
        Per run and depth, the measured and theory mean and variance of the squared singular
        values, the fraction at 0 and the 5-95 % range of the rest.
    """
    c = result.config
    lines = [
        f"Jacobian spectrum at init: width {c.width}, {c.samples} draws, seed {c.seed} "
        "(lam = squared singular value; theory: infinite width)",
        f"{'run':<18} {'sw2':>6} {'sb2':>8} {'q*':>7} {'L':>4} {'mean ± se':>15} {'theory':>7} "
        f"{'variance ± se':>19} {'theory':>8} {'lam~0':>6}  5-95% of the rest",
    ]
    for r in result.runs.values():
        for depth in sorted(r.singular_values):
            s = r.stats(depth)
            lines.append(
                f"{r.name:<18} {r.sw2:6.4g} {r.sb2:8.3g} {r.q_star:7.3g} {depth:4d} "
                f"{f'{s.mean:.3g} ± {s.mean_se:.2g}':>15} {s.theory_mean:7.3g} "
                f"{f'{s.variance:.3g} ± {s.variance_se:.2g}':>19} {s.theory_variance:8.3g} "
                f"{100 * s.zero:5.1f}%  {s.p5:.3g} to {s.p95:.3g}"
            )
    lines.append(
        "lam~0: below 1e-24 of the largest (ReLU's exact zeros, and values under float64's resolution)"
    )
    return "\n".join(lines)
