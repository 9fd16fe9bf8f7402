"""fastinit: how weight initialisation decides whether an MLP learns.

Hand-written Numba kernels (``kernels`` package) train and probe multilayer
perceptrons; this package holds the toolkit around them: init schemes, the
MLP, data loading, the HDF5 store, the experiments, plots and the CLI.
"""

__version__ = "0.1.0"

from .init import gain, init_weights, parse_init  # noqa: E402

__all__ = ["__version__", "MLP", "gain", "init_weights", "parse_init"]


def __getattr__(name):
    # The MLP pulls in Numba; import it on first use so `import fastinit` stays light.
    if name == "MLP":
        from .mlp import MLP

        return MLP
    raise AttributeError(f"module 'fastinit' has no attribute {name!r}")
