"""A signal cache reads a long record only as far as preprocessing uses it, as zero-shot does: `ecglang data build`
over Holter records held each whole record in memory (a 6-hour 12-lead record: 2.5 GB)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from ecglang.data.cache import SignalCache
from ecglang.record.io import load_ecg
from ecglang.signal.preprocess import PreprocessConfig, preprocess


def test_a_long_record_is_cached_from_the_part_preprocessing_uses(shared_data: Path, tmp_path: Path) -> None:
    record = shared_data / "mitbih" / "100"  # 30 min, 2 leads at 360 Hz: 10 MB as float64 when read whole
    tracemalloc.start()
    try:
        cache = SignalCache.build([("100", str(record))], tmp_path / "cache", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache.failures.empty
    assert peak < 8e6, f"peak traced memory {peak / 1e6:.1f} MB (48 MB when the whole record was read)"
    config = PreprocessConfig()
    expected = preprocess(load_ecg(record, window=config.read_window()), config)  # what zero-shot prepares
    signal, mask = cache[0]
    np.testing.assert_array_equal(mask, expected.lead_mask)
    np.testing.assert_allclose(signal, expected.signal, atol=2e-2 * np.abs(expected.signal).max())
