"""The experiments of fastinit, one module each, each behind one ``fastinit`` command.

- :mod:`fastinit.experiments.histogram`: activation histograms per layer for
  several init schemes (``fastinit histogram``).
- :mod:`fastinit.experiments.train`: the MLP trained on MNIST once per init
  scheme, loss, gradient norms, accuracy and activations streamed to HDF5
  (``fastinit train``).
- :mod:`fastinit.experiments.reproduce`: the whole study in one call:
  histograms, MNIST runs, figures and ``summary.md`` (``fastinit reproduce``).
- :mod:`fastinit.experiments.profile`: every kernel and the training step
  timed per backend (``fastinit profile``).
- :mod:`fastinit.experiments.sweep`: a grid of MNIST training runs over
  weight variance x depth x seed, on local processes or a Dask cluster, and
  its phase diagram against the mean-field theory (``fastinit sweep``).
- :mod:`fastinit.experiments.meanfield`: the mean-field quantities over a range of
  weight variances (``fastinit theory``).
- :mod:`fastinit.experiments.spectrum`: the singular values of deep random
  networks' input-output Jacobians against free probability: dynamical
  isometry (``fastinit spectrum``).

Import the module you need (``from fastinit.experiments.train import train``);
this package imports none of them, so importing it stays light.
"""
