"""Linear probe on synthetic frozen features."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecglang.errors import ConfigError
from ecglang.evaluation.probe import linear_probe, stratified_subset

D, C = 32, 5
NAMES = ["NORM", "MI", "STTC", "CD", "HYP"]


def make_split(n: int, seed: int, w: np.ndarray):
    """Linearly separable multi-label data (labels = sign of a linear map), offset and scaled features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    logits = x @ w - np.array([0.0, 0.5, 1.0, 1.5, 2.0])  # prevalence from ~50 % down to ~5 %
    y = (logits > 0).astype(int)
    return (3 * x + 7).astype(np.float32), y  # standardisation must undo the offset/scale


@pytest.fixture(scope="module")
def data():
    w = np.random.default_rng(0).normal(size=(D, C))
    w /= np.linalg.norm(w, axis=0)
    return make_split(1500, 1, w), make_split(600, 2, w), make_split(300, 3, w)


def test_probe_learns_separable_features_and_is_deterministic(data):
    (tx, ty), (ex, ey), _ = data
    kw = dict(fractions=(0.1, 1.0), seed=0, epochs=150, n_boot=200, label_names=NAMES, num_threads=1)
    a = linear_probe(tx, ty, ex, ey, **kw)
    b = linear_probe(tx, ty, ex, ey, **kw)
    assert list(a) == [0.1, 1.0]
    full = a[1.0]
    assert full.macro_auroc.point > 0.95
    assert min(full.per_class_auroc.values()) > 0.9
    assert full.macro_auroc.low <= full.macro_auroc.point <= full.macro_auroc.high
    assert full.meta["n_train"] == 1500 and a[0.1].meta["n_train"] == 150
    assert full.label_names == NAMES
    assert a[0.1].macro_auroc.point < full.macro_auroc.point + 0.01
    assert {f: r.to_dict() for f, r in a.items()} == {f: r.to_dict() for f, r in b.items()}


def test_probe_minibatch_with_validation_selects_an_epoch(data):
    (tx, ty), (ex, ey), (vx, vy) = data
    kw = dict(fractions=(1.0,), epochs=20, batch_size=128, eval_every=5, n_boot=0, num_threads=1)
    a = linear_probe(tx, ty, ex, ey, val_x=vx, val_y=vy, seed=4, **kw)[1.0]
    b = linear_probe(tx, ty, ex, ey, val_x=vx, val_y=vy, seed=4, **kw)[1.0]
    assert a.meta["best_epoch"] in {5, 10, 15, 20}
    assert a.meta["val_macro_auroc"] > 0.95
    assert a.macro_auroc.point > 0.95
    assert a.to_dict() == b.to_dict()


def test_probe_different_seed_draws_different_subset(data):
    (tx, ty), (ex, ey), _ = data
    kw = dict(fractions=(0.05,), epochs=30, n_boot=0, num_threads=1)
    a = linear_probe(tx, ty, ex, ey, seed=0, **kw)[0.05]
    b = linear_probe(tx, ty, ex, ey, seed=1, **kw)[0.05]
    assert a.per_class_auroc != b.per_class_auroc


def test_stratified_subset_keeps_every_class_both_ways():
    rng = np.random.default_rng(0)
    y = (rng.random((2000, 8)) < np.array([0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.004, 0.002])).astype(int)
    idx = stratified_subset(y, 0.01, seed=3)
    assert idx.size >= math.ceil(0.01 * 2000)
    assert np.all(np.diff(idx) > 0)
    sub = y[idx]
    has_pos = y.sum(axis=0) > 0
    assert np.all(sub[:, has_pos].sum(axis=0) >= 1)
    assert np.all((1 - sub).sum(axis=0) >= 1)
    np.testing.assert_array_equal(idx, stratified_subset(y, 0.01, seed=3))
    assert not np.array_equal(idx, stratified_subset(y, 0.01, seed=4))
    np.testing.assert_array_equal(stratified_subset(y, 1.0), np.arange(2000))


def test_stratified_subset_grows_when_classes_outnumber_the_target():
    y = np.eye(50, dtype=int)  # 50 classes, each with one positive
    idx = stratified_subset(y, 0.02, seed=0)  # target 1 record
    assert idx.size == 50


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(fractions=(0.0,)), "fractions"),
        (dict(fractions=(1.5,)), "fractions"),
        (dict(epochs=0), "epochs"),
        (dict(val_x=np.zeros((3, D), np.float32)), "val_x and val_y"),
    ],
)
def test_probe_bad_arguments(data, kwargs, match):
    (tx, ty), (ex, ey), _ = data
    with pytest.raises(ConfigError, match=match):
        linear_probe(tx, ty, ex, ey, n_boot=0, progress=False, **kwargs)


def test_probe_bad_arrays(data):
    (tx, ty), (ex, ey), _ = data
    with pytest.raises(ConfigError, match="test_x has 31 features"):
        linear_probe(tx, ty, ex[:, :31], ey, n_boot=0)
    with pytest.raises(ConfigError, match="train_x has 1500 records but train_y has 1499"):
        linear_probe(tx, ty[:-1], ex, ey, n_boot=0)
    bad = tx.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ConfigError, match=r"train_x has non-finite values in 1 rows \(first: \[7\]\)"):
        linear_probe(bad, ty, ex, ey, n_boot=0)
    with pytest.raises(ConfigError, match="test_y has 4 classes"):
        linear_probe(tx, ty, ex, ey[:, :4], n_boot=0)


def test_probe_restores_torch_threads(data):
    import torch

    (tx, ty), (ex, ey), _ = data
    before = torch.get_num_threads()
    linear_probe(tx, ty, ex, ey, fractions=(1.0,), epochs=2, n_boot=0, num_threads=1)
    assert torch.get_num_threads() == before
