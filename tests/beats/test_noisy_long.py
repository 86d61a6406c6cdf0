"""Noise-robust detection (F1 on a small held-out noisy set) and chunked detection of long records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecglang.beats.detect import detect_rpeaks, detect_rpeaks_long, read_chunk
from ecglang.beats.evaluation import BEAT_SYMBOLS, add_noise, beat_f1, f1, mitbih_segments, simulate_record
from ecglang.errors import ConfigError

MITBIH = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mitbih" / "100"
needs_data = pytest.mark.skipif(not MITBIH.with_suffix(".hea").is_file(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def noisy_6db() -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Held-out part (minutes 25-28 of MIT-BIH 100, simulated seed 20) at 6 dB, noise seed 1234."""
    mit, fs = mitbih_segments(str(MITBIH), 25, 28)
    sim = [(r.signal, r.rpeaks) for hr in (40, 90, 150, 210) for r in [simulate_record(hr, 10.0, fs, 20_000 + hr)]]
    rng = np.random.default_rng(1234)
    return [(add_noise(x, fs, 6.0, rng), ref) for x, ref in mit + sim], fs


def _f1(segs: list[tuple[np.ndarray, np.ndarray]], fs: float, mode: str) -> float:
    tot = np.zeros(3, dtype=np.int64)
    for y, ref in segs:
        tot += beat_f1(ref, detect_rpeaks(y, fs, mode=mode), 0.075 * fs, y.size, 0.5 * fs)
    return f1(*tot)


@needs_data
@pytest.mark.shared_data
@pytest.mark.parametrize("mode", ["fast", "robust"])
def test_f1_at_6db(noisy_6db: tuple[list, float], mode: str) -> None:
    segs, fs = noisy_6db
    assert _f1(segs, fs, mode) >= 0.98


@needs_data
@pytest.mark.shared_data
def test_robust_mode_on_clean_mitbih_100() -> None:
    rec = wfdb.rdrecord(str(MITBIH))
    ann = wfdb.rdann(str(MITBIH), "atr")
    ref = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS])
    peaks = detect_rpeaks(rec.p_signal.T, rec.fs, mode="robust")
    assert f1(*beat_f1(ref, peaks, 0.05 * rec.fs)) >= 0.999


def test_beat_f1_matches_one_to_one() -> None:
    # two detections near one reference beat: one TP, one FP; edges drop the beat at 5
    assert beat_f1(np.array([5, 100, 200]), np.array([98, 101, 205]), 5, n=300, edge=10) == (2, 2, 3)
    assert f1(0, 0, 0) == 1.0


def test_add_noise_hits_the_snr() -> None:
    x = np.sin(np.linspace(0, 60, 3600)).astype(np.float32)
    y = add_noise(x, 360.0, 6.0, np.random.default_rng(0))
    snr = 10 * np.log10(x.var() / (y - x).var())
    assert abs(snr - 6.0) < 0.05


@needs_data
@pytest.mark.shared_data
def test_chunked_equals_unchunked_on_one_hour() -> None:
    rec = wfdb.rdrecord(str(MITBIH))
    x = np.ascontiguousarray(np.tile(rec.p_signal.T.astype(np.float32), 2))  # 1 h, 2 leads
    whole = detect_rpeaks(x, rec.fs)
    chunked = detect_rpeaks_long(x, rec.fs, chunk_s=300.0, overlap_s=10.0)
    assert whole.size > 4000
    # The same beats; a position may move by one sample (2.8 ms) where the refinement's per-lead polarity
    # and scale, estimated over each chunk's beats instead of the whole record's, differ a hair.
    assert chunked.size == whole.size
    assert np.abs(chunked - whole).max() <= 1
    assert (chunked == whole).mean() >= 0.98  # 4485 of 4546 identical when written


def test_chunked_short_record_and_bad_settings() -> None:
    x = np.zeros(1000, dtype=np.float32)
    assert detect_rpeaks_long(x, 500.0).size == 0
    with pytest.raises(ConfigError):
        detect_rpeaks_long(x, 500.0, chunk_s=10.0, overlap_s=10.0)
    with pytest.raises(ConfigError):
        detect_rpeaks(x, 500.0, mode="slow")


def test_memmap_chunks_read_from_the_file(tmp_path: Path) -> None:
    # A file-backed memmap is read with file I/O (bounded RSS); a slice of one through the mapping.
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 5000)).astype(np.float32)
    data.tofile(tmp_path / "r.f32")
    offset = 64  # a header before the samples
    with open(tmp_path / "h.f32", "wb") as f:
        f.write(b"\0" * offset)
        f.write(data.astype(">f8").tobytes())  # big-endian float64 on disk
    plain = np.memmap(tmp_path / "r.f32", dtype=np.float32, mode="r", shape=(2, 5000))
    header = np.memmap(tmp_path / "h.f32", dtype=">f8", mode="r", offset=offset, shape=(2, 5000))
    one = np.memmap(tmp_path / "r.f32", dtype=np.float32, mode="r", shape=(10000,))
    for lo, hi in ((0, 100), (1234, 4321), (4900, 5000)):
        np.testing.assert_array_equal(read_chunk(plain, lo, hi), data[:, lo:hi])
        np.testing.assert_array_equal(read_chunk(header, lo, hi), data[:, lo:hi])
        np.testing.assert_array_equal(read_chunk(plain[1], lo, hi), data[1, lo:hi])  # a slice: mapped read
        np.testing.assert_array_equal(read_chunk(one, lo + 5000, hi + 5000), data[1, lo:hi])
        assert read_chunk(header, lo, hi).dtype == np.float32


@needs_data
@pytest.mark.shared_data
def test_chunked_memmap_equals_in_memory(tmp_path: Path) -> None:
    rec = wfdb.rdrecord(str(MITBIH), sampto=360 * 600)  # 10 min, 2 leads
    x = np.ascontiguousarray(rec.p_signal.T, dtype=np.float32)
    x.tofile(tmp_path / "rec.f32")
    mm = np.memmap(tmp_path / "rec.f32", dtype=np.float32, mode="r", shape=x.shape)
    in_memory = detect_rpeaks_long(x, rec.fs, chunk_s=60.0)
    assert in_memory.size > 700
    np.testing.assert_array_equal(detect_rpeaks_long(mm, rec.fs, chunk_s=60.0), in_memory)
