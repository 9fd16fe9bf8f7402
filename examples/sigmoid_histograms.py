"""The classic figure: 1000 Gaussian samples through 5 sigmoid layers of 100 units, one row per
init scheme, one histogram per layer (after "Deep Learning from Scratch", ch06).

std=1 saturates the units at 0 and 1 (vanishing gradients), std=0.01 collapses them onto 0.5
(no expressiveness), Xavier keeps a healthy spread.

    python examples/sigmoid_histograms.py [--samples 1000] [--out sigmoid-histograms.png]
"""

import argparse

import numpy as np
from matplotlib.figure import Figure

from fastinit import init_weights
from fastinit.kernels import cpu  # the compiled kernels; fastinit.kernels.reference is the NumPy twin

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--samples", type=int, default=1000)
parser.add_argument("--units", type=int, default=100)
parser.add_argument("--layers", type=int, default=5)
parser.add_argument("--out", default="sigmoid-histograms.png")
args = parser.parse_args()

inits = ["std=1", "std=0.01", "xavier"]
rng = np.random.default_rng(0)
x0 = rng.standard_normal((args.samples, args.units), dtype=np.float32)
fig = Figure(figsize=(2.2 * args.layers, 2.0 * len(inits)), layout="tight")
axes = fig.subplots(len(inits), args.layers, sharex=True, squeeze=False)
for row, spec in enumerate(inits):
    x = x0
    for layer in range(args.layers):
        w = init_weights(spec, args.units, args.units, rng)
        x = cpu.dense_forward(x, w, activation="sigmoid")  # sigmoid(x @ w)
        ax = axes[row, layer]
        ax.hist(x.ravel(), bins=30, range=(0, 1))
        ax.set_yticks([])
        ax.set_title(f"{spec}, layer {layer + 1}\nstd {x.std():.3f}", fontsize=8)
        saturated = np.mean((x < 0.01) | (x > 0.99))
        print(f"{spec:9s} layer {layer + 1}: mean {x.mean():.3f} std {x.std():.3f} saturated {saturated:.0%}")
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
