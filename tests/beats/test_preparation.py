"""The per-record preparation that feeds the tokenizer (band-pass + robust z-score of `preprocess`) is the
documented scipy/numpy computation: `sosfiltfilt` with even padding (`edge_padlen`), then per lead the median and
1.4826 x MAD of every second sample (at most 2500 samples per lead). The band-pass runs by blocks
(`ecglang.signal.zero_phase`, float64 to ~1e-10 of scipy's), so a float32 sample may round the other way:
a few ulps at most, on a small fraction of the samples; everything else is bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from ecglang.signal.preprocess import PreprocessConfig, edge_padlen, preprocess_array


def _reference(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    sos = sps.butter(2, [0.5, 40.0], btype="bandpass", fs=500.0, output="sos")
    y = np.zeros_like(x)
    padlen = edge_padlen(0.5, 500.0, x.shape[1])
    y[mask] = sps.sosfiltfilt(sos, x[mask], axis=1, padtype="even", padlen=padlen)  # float64 stored as float32
    v = y[mask]
    sub = v[:, :: -(-v.shape[1] // 2500)]
    center = np.median(sub, axis=1, keepdims=True)
    scale = 1.4826 * np.median(np.abs(sub - center), axis=1, keepdims=True)
    y[mask] = (v - center) / np.maximum(scale, 1e-6)
    return y


@pytest.mark.parametrize("n", [5000, 4997, 3001])  # even and odd subsample lengths; 4997/3001 get padded
@pytest.mark.parametrize("masked", [False, True])
def test_bandpass_and_robust_zscore_match_scipy_numpy(n: int, masked: bool) -> None:
    rng = np.random.default_rng(n)
    t = np.arange(n) / 500.0
    x = rng.standard_normal((12, n)) * 0.1 + np.sin(2 * np.pi * 1.2 * t) + 0.3 * t + rng.normal(0, 2, (12, 1))
    x = x.astype(np.float32)
    mask = np.ones(12, dtype=bool)
    if masked:
        mask[[3, 7]] = False
    out, out_mask, _ = preprocess_array(x, 500.0, mask, PreprocessConfig())
    assert out.shape == (12, 5000) and (out_mask == mask).all()
    expected = _reference(x, mask)
    ulp = np.spacing(np.abs(expected).max())
    np.testing.assert_allclose(out[:, :n], expected, rtol=0, atol=4 * ulp)
    assert (out[:, :n] != expected).mean() < 0.01  # rounding flips only
    assert not out[:, n:].any()  # zero padding stays zero
