"""fastinit: how weight initialisation decides whether an MLP learns.

Hand-written Numba kernels (``fastinit.kernels``) train and probe multilayer
perceptrons; this package holds the toolkit around them: init schemes, the
MLP, data loading, the HDF5 store, the experiments, plots and the CLI.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "MLP", "gain", "init_weights", "parse_init"]

_LAZY = {"MLP": "mlp", "gain": "init", "init_weights": "init", "parse_init": "init"}


def __getattr__(name):
    # Imported on first use, so `import fastinit` (and the CLI's start-up, where a Ctrl-C
    # must not print a traceback) stays light: the MLP pulls in Numba, init pulls in NumPy.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fastinit' has no attribute {name!r}")
