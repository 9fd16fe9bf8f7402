"""The experiments of fastinit, one module each, each behind one ``fastinit`` command.

Every experiment module has the same four parts:

1. a config dataclass, ``<X>Config``, whose ``validate()`` returns it checked (each bad field
   named in a ``ValueError`` or ``TypeError``);
2. ``run(config, *, progress=True, ...) -> <X>Result``, which computes and writes no file;
3. the result's statistics, as its methods or as functions of the result alone, so that the
   figures (:mod:`fastinit.plots`) and text tables depend only on results;
4. its HDF5 layout: ``write(f, result)`` into a results file opened with
   :func:`fastinit.store.open_results`, and ``read(path, ...)``; the paths, units and
   descriptions come from :mod:`fastinit.schema`.

``train`` and ``sweep`` also have a command-shaped function of the same name that writes as it
goes (each finished run or cell is kept if the process is stopped; a sweep resumes).
``reproduce`` is not an experiment of its own: it runs histogram and train for the seed
article's figures and writes ``summary.md``.

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
- :mod:`fastinit.experiments.spectrum_training`: how fast deep tanh networks learn,
  orthogonal against Gaussian weights (``fastinit spectrum --train``).

Import the module you need (``from fastinit.experiments import train``, then
``train.run(train.TrainConfig(iterations=200))``);
this package imports none of them, so importing it stays light.
"""
