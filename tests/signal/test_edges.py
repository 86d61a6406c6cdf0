"""Record edges: the band-pass must not invent a baseline swing where a record starts or ends (MIT-BIH 100)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglang.record.io import load_ecg
from ecglang.signal.preprocess import PreprocessConfig, preprocess_array


@pytest.fixture(scope="module")
def mitbih(shared_data: Path):
    path = shared_data / "mitbih" / "100.hea"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return load_ecg(path)


def test_band_pass_edges_keep_the_st_level_of_edge_beats(mitbih) -> None:
    """10 s pieces preprocessed alone against the same samples filtered inside 50 s of context: from 0.2 s
    after the start to 0.2 s before the end, within 0.05 mV (the ST-level resolution AHA asks of a high-pass).
    scipy's odd padding of 30 ms left 0.74 mV at 0.2 s and 0.35 mV at 1 s before the end."""
    fs, x, mask = mitbih.fs, mitbih.signal, mitbih.lead_mask
    n, ctx = int(10 * fs), int(20 * fs)
    worst = 0.0
    for start in np.arange(60, 1700, 37) * int(fs):  # 45 pieces, starting anywhere in the beat cycle
        piece, _, _ = preprocess_array(x[:, start : start + n], fs, mask, PreprocessConfig(normalize="none"))
        cfg_long = PreprocessConfig(normalize="none", target_samples=None)
        long, _, _ = preprocess_array(x[:, start - ctx : start + n + ctx], fs, mask, cfg_long)
        truth = long[:, 10000:15000]  # 20 s of context at 500 Hz
        worst = max(worst, float(np.abs(piece[mask] - truth[mask])[:, 100:-100].max()))
    assert worst < 0.05, f"edge transient of {worst:.3f} mV beyond 0.2 s from the record edges"


def test_odd_edge_padding_stays_available_for_the_old_inputs(mitbih) -> None:
    """`edge_pad="odd"` is scipy's default padding (inputs prepared before `edge_pad` existed)."""
    from scipy import signal as sps

    fs = 500.0
    x = np.zeros((12, 5000), np.float32)
    x[:] = mitbih.signal[1, 100_000:103_600][np.round(np.arange(5000) * 360 / 500).astype(int).clip(0, 3599)]
    out, _, _ = preprocess_array(x, fs, None, PreprocessConfig(normalize="none", edge_pad="odd"))
    ref = sps.sosfiltfilt(sps.butter(2, (0.5, 40.0), btype="bandpass", fs=fs, output="sos"), x, axis=1)
    assert np.abs(out - ref).max() < 1e-5


def test_a_record_in_volts_is_refused_with_a_units_hint(ptbxl_dir: Path) -> None:
    """Volts read as mV: every lead is below the flat thresholds (mV); the error says what to do."""
    from ecglang.errors import EcgQualityError
    from ecglang.record.ecg import Ecg
    from ecglang.signal.preprocess import preprocess

    ecg = load_ecg(sorted((ptbxl_dir / "records500").glob("*/*_hr.hea"))[0])
    with pytest.raises(EcgQualityError, match=r"rec.*flat.*volts must be converted to mV"):
        preprocess(Ecg(ecg.signal / 1000, ecg.fs, ecg.lead_mask, record_id="rec"))
