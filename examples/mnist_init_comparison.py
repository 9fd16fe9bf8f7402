"""MNIST with a 784-100-100-100-100-10 ReLU MLP, SGD lr 0.01, batch 128: the training loss for
std=0.01, Xavier and He initial weights, every init on the same mini-batches.

He learns fastest, Xavier a little slower (its ReLU activations shrink layer by layer),
std=0.01 not at all (the loss stays at ln 10).

    python examples/mnist_init_comparison.py [--iterations 2000] [--out mnist-loss.png]
"""

import argparse

import numpy as np
from matplotlib.figure import Figure

from fastinit import MLP
from fastinit.data import load_mnist
from fastinit.training import sgd

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=2000)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--out", default="mnist-loss.png")
args = parser.parse_args()

mnist = load_mnist()  # shipped with the package: no download
fig = Figure(figsize=(6, 4), layout="tight")
ax = fig.subplots()
for init in ("std=0.01", "xavier", "he"):
    mlp = MLP([784, 100, 100, 100, 100, 10], activation="relu", init=init, backend="cpu", seed=0)
    loss = []  # every step's mini-batch loss; the same seed gives every init the same batches
    training = sgd(
        mlp,
        mnist.train_images,
        mnist.train_labels,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=0,
        stops=[args.iterations],
        on_step=lambda step, batch_loss: loss.append(batch_loss),
    )
    for stop in training:  # sgd hands control back at each of `stops`: here once, at the end
        _, accuracy = mlp.evaluate(mnist.test_images, mnist.test_labels)
        recent = np.mean(loss[-100:])
        print(f"{init:9s} {stop.step} steps: loss (last 100) {recent:.3f}, test accuracy {accuracy:.1%}")
    ax.plot(np.convolve(loss, np.ones(20) / 20, mode="valid"), label=init)
ax.set_xlabel("iteration")
ax.set_ylabel("training loss (20-step mean)")
ax.set_ylim(0, 2.5)
ax.legend()
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
