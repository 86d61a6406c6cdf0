"""Each training augmentation does what `AugmentConfig` says, one at a time, on a random `[12, T]` signal.

`test_train.py` checks that augmentation is a pure function of the seed; these check the effect itself: a scale
drawn but not applied, or a shift that no longer moves the signal, leaves every training run deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from ecglang.signal.augment import AugmentConfig, augment_signal

FS = 500.0
N = 5000
SEEDS = range(20)


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((12, N)).astype(np.float32)


def _run(x: np.ndarray, cfg: AugmentConfig, seed: int, mask: np.ndarray | None = None):
    mask = np.ones(12, dtype=bool) if mask is None else mask
    return augment_signal(x, mask, FS, cfg, np.random.default_rng([seed, 0, 0]))


def test_amplitude_scale_multiplies_every_lead_by_one_factor_from_the_range(signal: np.ndarray) -> None:
    cfg = AugmentConfig(amplitude_scale=(0.5, 1.5))
    factors = []
    for seed in SEEDS:
        out, mask, n_valid = _run(signal, cfg, seed)
        assert mask.all() and n_valid == N
        s = float((out * signal).sum() / (signal * signal).sum())  # the least-squares factor
        np.testing.assert_allclose(out, signal * np.float32(s), rtol=1e-6, atol=1e-6)  # one factor for all leads
        assert 0.5 <= s <= 1.5
        factors.append(s)
    assert np.ptp(factors) > 0.3 and not np.allclose(factors, 1.0)  # drawn afresh, and applied

    fixed, _, _ = _run(signal, AugmentConfig(amplitude_scale=(0.7, 0.7)), 0)
    np.testing.assert_array_equal(fixed, signal * np.float32(0.7))


def test_time_shift_drops_the_first_samples_and_zero_pads_the_end(signal: np.ndarray) -> None:
    cfg = AugmentConfig(time_shift_ms=200)  # at most 100 samples at 500 Hz
    shifts = []
    for seed in SEEDS:
        out, mask, n_valid = _run(signal, cfg, seed)
        shift = N - n_valid
        assert mask.all() and 0 <= shift <= 100
        np.testing.assert_array_equal(out[:, :n_valid], signal[:, shift:])
        assert np.all(out[:, n_valid:] == 0)
        shifts.append(shift)
    assert sum(s > 0 for s in shifts) >= len(shifts) - 2 and len(set(shifts)) > 5


def test_noise_has_the_configured_spread_on_valid_leads_only(signal: np.ndarray) -> None:
    mask = np.ones(12, dtype=bool)
    mask[[3, 7]] = False
    x = signal.copy()
    x[~mask] = 0.0  # a lead the record lacks holds zeros
    out, out_mask, n_valid = _run(x, AugmentConfig(noise_std=0.1), 0, mask)
    assert n_valid == N and np.array_equal(out_mask, mask)
    noise = out - x
    assert np.all(noise[~mask] == 0)
    assert noise[mask].std() == pytest.approx(0.1, rel=0.03) and abs(noise[mask].mean()) < 0.005
    # With a shift, the zero-padded tail gets no noise either.
    out, _, n_valid = _run(x, AugmentConfig(noise_std=0.1, time_shift_ms=200), 1, mask)
    assert n_valid < N and np.all(out[:, n_valid:] == 0) and np.all(out[~mask] == 0)
    assert (out[mask][:, :n_valid] - x[mask][:, N - n_valid :]).std() == pytest.approx(0.1, rel=0.03)


def test_lead_dropping_zeroes_and_unmasks_dropped_leads_and_keeps_the_rest(signal: np.ndarray) -> None:
    lacking = np.ones(12, dtype=bool)
    lacking[5] = False
    x = signal.copy()
    x[5] = 0.0
    dropped = []
    for seed in SEEDS:
        out, mask, n_valid = _run(x, AugmentConfig(lead_mask_p=0.5), seed, lacking)
        assert n_valid == N and 1 <= mask.sum() and not mask[5]  # a lead the record lacks stays missing
        assert np.all(out[~mask] == 0)
        np.testing.assert_array_equal(out[mask], x[mask])  # kept leads are untouched
        dropped.append(int(lacking.sum() - mask.sum()))
    assert 2 <= np.mean(dropped) <= 9  # about half of the 11 valid leads
    # p=0.9 on every seed: leads go, but one always stays.
    kept = [_run(x, AugmentConfig(lead_mask_p=0.9), seed, lacking)[1].sum() for seed in SEEDS]
    assert min(kept) >= 1 and np.mean(kept) < 4
