"""`linear_probe(..., val_x=, val_y=)` keeps the epoch of best validation macro AUROC (checked every
`eval_every` epochs) and scores the test split with *that* epoch's head. Expected values come from probes
trained without validation for a fixed number of epochs (full batch: deterministic), one per checked epoch."""

from __future__ import annotations

import numpy as np
import pytest

from ecglang.evaluation.probe import linear_probe

D, C = 16, 3
EPOCHS, EVERY = 60, 5
KW = dict(fractions=(1.0,), seed=0, lr=0.1, weight_decay=0.0, n_boot=0, num_threads=1)


def _split(n: int, seed: int, w: np.ndarray, flip: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    y = (x @ w > 0).astype(int)
    noisy = rng.random(y.shape) < flip
    y[noisy] = 1 - y[noisy]
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def splits():
    """A small training set with a quarter of its labels flipped: the head overfits, so validation peaks early."""
    w = np.random.default_rng(0).normal(size=(D, C))
    return _split(50, 1, w, 0.25), _split(300, 2, w, 0.0), _split(300, 3, w, 0.0)


def test_validation_keeps_the_best_checked_epoch_and_scores_its_head(splits):
    (tx, ty), (ex, ey), (vx, vy) = splits
    checked = list(range(EVERY, EPOCHS + 1, EVERY))
    # validation macro AUROC of the head after e epochs (the validation split scored as a test split)
    curve = [linear_probe(tx, ty, vx, vy, epochs=e, **KW)[1.0].macro_auroc.point for e in checked]
    best = checked[int(np.argmax(curve))]  # the first of equal maxima
    assert max(curve) > curve[-1] + 0.005, curve  # the data must make an earlier epoch best, or nothing is tested

    got = linear_probe(tx, ty, ex, ey, epochs=EPOCHS, val_x=vx, val_y=vy, eval_every=EVERY, **KW)[1.0]
    assert got.meta["best_epoch"] == best
    assert got.meta["val_macro_auroc"] == pytest.approx(max(curve), abs=1e-9)
    # the test scores are those of the head trained for exactly `best` epochs, not of the last epoch's head
    want = linear_probe(tx, ty, ex, ey, epochs=best, **KW)[1.0]
    last = linear_probe(tx, ty, ex, ey, epochs=EPOCHS, **KW)[1.0]
    assert got.per_class_auroc == pytest.approx(want.per_class_auroc, abs=1e-9)
    assert got.per_class_auroc != pytest.approx(last.per_class_auroc, abs=1e-6)
