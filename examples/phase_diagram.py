"""How deep can a tanh network train? The mean-field theory's depth scale xi_c (Schoenholz et al.
2017) against short MNIST trainings over a grid of weight variance sigma_w^2 and depth.

Networks train up to about 6 xi_c layers deep; xi_c diverges at the edge of chaos
(sigma_w^2 about 1.76 for tanh with sigma_b^2 = 0.05).

    python examples/phase_diagram.py [--steps 300] [--depths 5 20 50] [--out phase-diagram.png]
"""

import argparse

import numpy as np
from matplotlib.figure import Figure

from fastinit import MLP
from fastinit.data import load_mnist
from fastinit.theory import critical_sw2, mean_field
from fastinit.training import sgd

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sw2", type=float, nargs="+", default=[1.0, 1.75, 2.5, 4.0])
parser.add_argument("--depths", type=int, nargs="+", default=[5, 20, 50])
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--sb2", type=float, default=0.05)
parser.add_argument("--out", default="phase-diagram.png")
args = parser.parse_args()

mnist = load_mnist()
x, y = mnist.train_images[:10000], mnist.train_labels[:10000]
accuracy = np.zeros((len(args.depths), len(args.sw2)))
for i, depth in enumerate(args.depths):
    for j, sw2 in enumerate(args.sw2):
        mlp = MLP([784] + [100] * depth + [10], activation="tanh", init=f"lecun,gain={np.sqrt(sw2)}", seed=0)
        rng = np.random.default_rng(1)  # biases ~ N(0, sb2)
        mlp.load_params(
            [(w, (np.sqrt(args.sb2) * rng.standard_normal(b.size)).astype(b.dtype)) for w, b in mlp.params]
        )
        for stop in sgd(mlp, x, y, lr=0.005, batch_size=128, seed=0, stops=[args.steps]):
            _, accuracy[i, j] = mlp.evaluate(x[:2000], y[:2000])
            print(f"sw2 {sw2:5.2f} depth {depth:3d}, step {stop.step}: train accuracy {accuracy[i, j]:.1%}")

grid = np.linspace(min(args.sw2), max(args.sw2), 200)
six_xi = [6 * mean_field("tanh", s, args.sb2).xi_c for s in grid]
fig = Figure(figsize=(6, 4), layout="tight")
ax = fig.subplots()
mesh = ax.pcolormesh(args.sw2, args.depths, accuracy, vmin=0, vmax=1, shading="nearest", cmap="viridis")
ax.plot(grid, six_xi, "w-", label="6 xi_c (theory)")
ax.axvline(critical_sw2("tanh", args.sb2), color="w", ls=":", label="edge of chaos")
ax.set_ylim(0, max(args.depths) * 1.1)
ax.set_xlabel("sigma_w^2")
ax.set_ylabel("depth (hidden layers)")
ax.legend(loc="upper right")
fig.colorbar(mesh, label="train accuracy")
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
