"""`fastinit.training`: the seeded mini-batches and the one SGD loop (stops, divergence, a hand loop)."""

import math

import numpy as np
import pytest

from fastinit import MLP
from fastinit.training import Stop, batch_indices, sgd

SIZES = (6, 8, 3)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])), rng.integers(0, SIZES[-1], n).astype(np.int64)


def _model():
    return MLP(SIZES, activation="tanh", init="xavier", backend="numpy", dtype="float64", seed=1)


class Scripted:
    """A stand-in model whose step ``i`` (from 1) returns ``losses[i - 1]``."""

    def __init__(self, losses):
        self.losses, self.steps = list(losses), 0

    def set_dataset(self, x, labels):
        self.rows = x.shape[0]

    def train_step_indices(self, idx, lr):
        self.steps += 1
        return self.losses[self.steps - 1]


def test_batch_indices_are_seeded_and_cover_each_epoch():
    a = list(batch_indices(50, 8, 20, seed=3))
    b = list(batch_indices(50, 8, 20, seed=3))
    c = list(batch_indices(50, 8, 20, seed=4))
    assert len(a) == 20 and all(len(i) == 8 for i in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    flat = np.concatenate(a)
    assert np.array_equal(np.sort(flat[:50]), np.arange(50))  # first epoch: each image once
    assert flat.min() >= 0 and flat.max() < 50
    with pytest.raises(ValueError, match="batch_size 60 is larger"):
        next(batch_indices(50, 60, 1, seed=0))


def test_sgd_stops_where_asked_with_the_parameters_of_a_hand_loop():
    x, y = _data()
    model, hand = _model(), _model()
    stops = (0, 1, 7, 20)
    seen, losses = [], []
    points = sgd(
        model, x, y, lr=0.2, batch_size=16, seed=5, stops=stops, on_step=lambda s, v: losses.append((s, v))
    )
    for point in points:
        seen.append(point.step)
        assert not point.diverged and len(losses) == point.step  # on_step saw every step so far
        if point.step == 0:
            assert math.isnan(point.loss)
        else:
            assert point.loss == losses[-1][1]
        # The same steps by hand: the params at each stop are those of a run of that many steps.
        hand = _model()
        hand.set_dataset(x, y)
        for step, idx in enumerate(batch_indices(x.shape[0], 16, point.step, 5), start=1):
            assert hand.train_step_indices(idx, 0.2) == losses[step - 1][1]
        for (w, b), (hw, hb) in zip(model.params, hand.params):
            assert np.array_equal(w, hw) and np.array_equal(b, hb)
    assert seen == list(stops) and [s for s, _ in losses] == list(range(1, 21))


def test_sgd_ends_at_a_non_finite_loss_and_says_so():
    x, y = _data()
    calls = []
    model = Scripted([2.0, 1.5, 1.2, math.inf, 0.5, 0.4])
    points = list(
        sgd(model, x, y, lr=0.1, batch_size=8, seed=0, stops=(2, 5, 6), on_step=lambda s, v: calls.append(v))
    )
    assert points == [Stop(2, False, 1.5), Stop(4, True, math.inf)]
    assert model.steps == 4 and calls == [2.0, 1.5, 1.2, math.inf]  # on_step sees the diverging step
    nan = list(sgd(Scripted([math.nan]), x, y, lr=0.1, batch_size=8, seed=0, stops=(3,)))
    assert len(nan) == 1 and nan[0].step == 1 and nan[0].diverged and math.isnan(nan[0].loss)


def test_a_real_overflow_is_a_divergence_without_warnings():
    x, y = _data()
    model = MLP(SIZES, activation="relu", init="std=10", backend="numpy", dtype="float32", seed=0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # as a warning inside the loop would
        points = list(sgd(model, x.astype(np.float32) * 1e3, y, lr=1e3, batch_size=8, seed=0, stops=(50,)))
    assert points[-1].diverged and points[-1].step < 50


def test_breaking_out_stops_the_training_and_leaves_no_error_setting_behind():
    x, y = _data()
    model = Scripted([1.0] * 10)
    before = np.geterr()
    for point in sgd(model, x, y, lr=0.1, batch_size=8, seed=0, stops=(2, 4, 10)):
        assert np.geterr() == before  # the loop's silenced warnings do not reach the caller's code
        if point.step == 4:
            break
    assert model.steps == 4


@pytest.mark.parametrize("stops", [(), (3, 3), (5, 2), (-1, 2)])
def test_bad_stops_are_refused_at_once(stops):
    x, y = _data()
    model = Scripted([])
    with pytest.raises(ValueError, match="stops must be a non-empty increasing"):
        sgd(model, x, y, lr=0.1, batch_size=8, seed=0, stops=stops)
    assert not hasattr(model, "rows")  # refused before anything was set
