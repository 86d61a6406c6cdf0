"""The block zero-phase filter (ecglang.signal.zero_phase) against its reference, scipy's `sosfiltfilt`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy import signal as sps

from ecglang.record.ecg import Ecg
from ecglang.record.leads import to_canonical
from ecglang.signal import zero_phase as zp
from ecglang.signal.preprocess import PreprocessConfig, edge_padlen, preprocess


def _padlen(sos: np.ndarray) -> int:
    return 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))


def _reference(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    return sps.sosfiltfilt(sos, x, axis=1, padlen=_padlen(sos))


def _signal(leads: int, n: int, seed: int) -> np.ndarray:
    """Noise on a random-walk baseline with an offset: the band-pass removes a lot, which tests the edges."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.05, (leads, n)), axis=1)
    return (3.0 + walk + rng.normal(0, 1.0, (leads, n))).astype(np.float32)


@pytest.mark.parametrize(
    ("order", "band", "fs"),
    [(2, (0.5, 40.0), 500.0), (1, (0.5, 40.0), 500.0), (4, (0.5, 40.0), 500.0), (2, (0.67, 100.0), 1000.0),
     (3, (1.0, 30.0), 250.0)],
)  # fmt: skip
@pytest.mark.parametrize("n", [5000, 1234, 100, 33])
def test_block_filter_matches_sosfiltfilt(order: int, band: tuple[float, float], fs: float, n: int) -> None:
    sos = sps.butter(order, band, btype="bandpass", fs=fs, output="sos")
    x = _signal(12, n, seed=n + order)
    out = zp.zero_phase(sos, sps.sosfilt_zi(sos)[:, None, :], x, _padlen(sos))
    ref = _reference(sos, x)
    assert out.shape == ref.shape and out.dtype == np.float64
    # float64 throughout: far below the float32 resolution of the stored result (~1e-7 of the scale)
    assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()


def test_block_filter_handles_any_lead_count_and_a_partial_last_block() -> None:
    sos = sps.butter(2, (0.5, 40.0), btype="bandpass", fs=500.0, output="sos")
    for leads, n in ((1, 5000), (5, zp.BLOCK * 7 + 1), (12, zp.BLOCK * 7 - _padlen(sos) * 2)):
        x = _signal(leads, n, seed=leads)
        out = zp.zero_phase(sos, sps.sosfilt_zi(sos)[:, None, :], x, _padlen(sos))
        ref = _reference(sos, x)
        assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()


@pytest.mark.parametrize("n", [5000, 1234, 100])
def test_even_padding_matches_sosfiltfilt(n: int) -> None:
    sos = sps.butter(2, (0.5, 40.0), btype="bandpass", fs=500.0, output="sos")
    x = _signal(12, n, seed=n)
    padlen = min(n - 1, 750)
    out = zp.zero_phase(sos, sps.sosfilt_zi(sos)[:, None, :], x, padlen, "even")
    ref = sps.sosfiltfilt(sos, x, axis=1, padtype="even", padlen=padlen)
    assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()


def test_long_records_go_through_scipy_with_the_same_output(monkeypatch: pytest.MonkeyPatch) -> None:
    sos = sps.butter(2, (0.5, 40.0), btype="bandpass", fs=500.0, output="sos")
    x = _signal(3, 3000, seed=7)
    zi = sps.sosfilt_zi(sos)[:, None, :]
    by_blocks = zp.zero_phase(sos, zi, x, _padlen(sos))
    monkeypatch.setattr(zp, "MAX_BLOCK_SAMPLES", 1000)
    calls = []
    monkeypatch.setattr(zp, "block_filter", lambda *a: calls.append(a) or zp.block_filter(*a))
    by_scipy = zp.zero_phase(sos, zi, x, _padlen(sos))
    assert not calls  # the long path never built a block filter
    assert np.abs(by_blocks - by_scipy).max() <= 1e-9 * np.abs(by_scipy).max()


@pytest.mark.parametrize("edge_pad", ["even", "odd"])
def test_preprocess_of_real_records_matches_the_sosfiltfilt_reference(ptbxl_dir: Path, edge_pad: str) -> None:
    """The whole preprocessing contract on real PTB-XL records against a reference written out here with
    scipy's `sosfiltfilt` (the implementation before the block filter): the same within float32 rounding."""
    paths = sorted((ptbxl_dir / "records500").glob("*/*_hr.hea"))[:6]
    assert paths
    cfg = PreprocessConfig(edge_pad=edge_pad)
    sos = sps.butter(cfg.filter_order, cfg.bandpass, btype="bandpass", fs=cfg.target_fs, output="sos")
    for path in paths:
        rec = wfdb.rdrecord(str(path.with_suffix("")))
        signal, mask, _ = to_canonical(rec.p_signal.T, rec.sig_name, path=str(path))
        out = preprocess(Ecg(signal, rec.fs, mask, record_id=path.stem), cfg)
        assert out.lead_mask.all()
        x = signal.astype(np.float32)
        if edge_pad == "odd":
            ref = _reference(sos, x)
        else:
            ref = sps.sosfiltfilt(sos, x, axis=1, padtype="even", padlen=edge_padlen(0.5, 500.0, x.shape[1]))
        ref = ref.astype(np.float32)[:, : cfg.target_samples]
        sub = ref[:, :: -(-ref.shape[1] // 2500)]
        center = np.median(sub, axis=1, keepdims=True)
        scale = 1.4826 * np.median(np.abs(sub - center), axis=1, keepdims=True)
        ref = (ref - center) / np.maximum(scale, 1e-6)
        assert np.abs(out.signal - ref).max() <= 1e-5 * np.abs(ref).max()
