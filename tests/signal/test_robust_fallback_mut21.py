"""Robust z-score of a lead whose MAD is 0: a coarsely quantised record (0.05 mV steps) without band-pass, whose
baseline between beats is exactly 0 for most samples. Median ± 1.4826·MAD cannot scale it (MAD = 0), so the lead
is scaled by its standard deviation: the output is `(x - median) / std`, not a division by a tiny epsilon."""

from __future__ import annotations

import numpy as np

from ecglang.record.ecg import Ecg
from ecglang.signal.preprocess import PreprocessConfig, preprocess

FS = 500.0


def _quantised_record() -> np.ndarray:
    t = np.arange(5000) / FS
    beats = np.arange(0.5, 10.0, 0.8)
    k = np.arange(beats.size)

    def g(at: np.ndarray, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((t[None, :] - at[:, None]) / width) ** 2)

    # R (heights vary), S (depths vary) and T waves; the lead's extremes are single beats, not a rail
    x = ((1 + 0.1 * np.sin(k))[:, None] * g(beats, 0.01)).sum(0)
    x -= ((0.3 + 0.05 * np.cos(k))[:, None] * g(beats + 0.03, 0.01)).sum(0)
    x += 0.2 * g(beats + 0.3, 0.05).sum(0)
    q = np.round(x / 0.05) * 0.05
    return np.tile(q, (12, 1)).astype(np.float32)


def test_a_lead_with_zero_mad_is_scaled_by_its_standard_deviation() -> None:
    sig = _quantised_record()
    assert np.median(sig[0]) == 0.0 and np.median(np.abs(sig[0])) == 0.0  # MAD = 0: over half the samples are 0
    out = preprocess(Ecg(sig, FS), PreprocessConfig(bandpass=None))
    assert out.lead_mask.all() and not out.metadata["quality"]  # a real lead, neither flat nor saturated
    np.testing.assert_allclose(out.signal, sig / sig.std(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert np.abs(out.signal).max() < 10  # an R wave of ~1 mV is a few units, as for any other lead
