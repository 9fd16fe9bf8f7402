"""MNIST with a 784-100-100-100-100-10 ReLU MLP, SGD lr 0.01, batch 128: the training loss for
std=0.01, Xavier and He initial weights, every init on the same mini-batches.

He learns fastest, Xavier a little slower (its ReLU activations shrink layer by layer),
std=0.01 not at all (the loss stays at ln 10).

    python examples/mnist_init_comparison.py [--iterations 2000] [--out mnist-loss.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastinit import MLP  # noqa: E402
from fastinit.data import load_mnist  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=2000)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--out", default="mnist-loss.png")
args = parser.parse_args()

mnist = load_mnist()  # shipped with the package: no download
batches = np.random.default_rng(0).integers(
    0, mnist.train_images.shape[0], (args.iterations, args.batch_size)
)
fig, ax = plt.subplots(figsize=(6, 4))
for init in ("std=0.01", "xavier", "he"):
    mlp = MLP([784, 100, 100, 100, 100, 10], activation="relu", init=init, backend="cpu", seed=0)
    mlp.set_dataset(mnist.train_images, mnist.train_labels)
    loss = np.array([mlp.train_step_indices(idx, args.lr) for idx in batches])
    accuracy = np.mean(mlp.predict(mnist.test_images) == mnist.test_labels)
    print(f"{init:9s} loss (last 100 steps) {loss[-100:].mean():.3f}, test accuracy {accuracy:.1%}")
    ax.plot(np.convolve(loss, np.ones(20) / 20, mode="valid"), label=init)
ax.set_xlabel("iteration")
ax.set_ylabel("training loss (20-step mean)")
ax.set_ylim(0, 2.5)
ax.legend()
fig.tight_layout()
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
