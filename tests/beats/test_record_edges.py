"""Beats at the record edges (audit 18, finding 7): `BeatConfig.edge_rule`.

Before ("start", kept by processor files of format < 3): zero padding let a maximum on the last sample count, so a QRS
cut by the end before its R became a beat with its "R" ~30 ms early (52 of 55 MIT-BIH 10 s pieces ending 10 ms before
an R), and the first peak counted only when the envelope rose to it from below half its height inside the record, so
a beat with its R within ~65 ms of the start was lost. "symmetric" (default): an edge peak counts only if its R is a
peak inside the record, at either end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecglang.beats.config import BeatConfig
from ecglang.beats.detect import detect_rpeaks, detect_rpeaks_long
from ecglang.beats.evaluation import BEAT_SYMBOLS, beat_f1
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "ecglang-mini"
# Pieces of MIT-BIH 100, each ending or starting near one of these reference beats (every 40th, 55 pieces).
PICKS = slice(50, 2250, 40)


@pytest.fixture(scope="module")
def mit(shared_data: Path) -> tuple[np.ndarray, float, np.ndarray]:
    """MIT-BIH 100 (MLII, V5; 30 min at 360 Hz) and its reference beats."""
    path = str(shared_data / "mitbih" / "100")
    rec, ann = wfdb.rdrecord(path), wfdb.rdann(path, "atr")
    ref = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS], dtype=np.int64)
    return rec.p_signal.T.astype(np.float32), float(rec.fs), ref


@pytest.mark.parametrize("after_ms", [3, 10, 20])
def test_a_qrs_cut_by_the_end_is_no_beat(mit: tuple[np.ndarray, float, np.ndarray], after_ms: float) -> None:
    """10 s pieces ending `after_ms` before a reference R (its upstroke inside, its R not). Before: an extra last beat
    in 55, 52 and 1 of the 55 pieces, its "R" on the Q wave or the last samples."""
    x, fs, ref = mit
    extra = []
    for r in ref[PICKS]:
        end = r - round(after_ms / 1000 * fs)
        a = end - round(10 * fs)
        last = detect_rpeaks(x[:, a:end], fs)[-1] + a
        previous = ref[ref < end][-1]
        if abs(last - previous) > 0.01 * fs:
            extra.append(round((last - r) / fs * 1000))
    assert extra == [], f"last beat not the last R inside: {len(extra)}/55, ms from the cut R: {extra}"


@pytest.mark.parametrize("inside_ms", [10, 20, 60])
def test_a_last_r_inside_the_record_is_kept(mit: tuple[np.ndarray, float, np.ndarray], inside_ms: float) -> None:
    """The rule costs no beat whose R lies 10 ms or more before the end (found before too), and places its R right
    (at 5 ms 54 of 55 are kept)."""
    x, fs, ref = mit
    for r in ref[PICKS]:
        end = r + round(inside_ms / 1000 * fs) + 1
        a = end - round(10 * fs)
        assert abs(detect_rpeaks(x[:, a:end], fs)[-1] + a - r) <= 0.01 * fs, (int(r), inside_ms)


@pytest.mark.parametrize("inside_ms", [15, 30, 60])
def test_a_beat_mostly_inside_the_start_is_kept(mit: tuple[np.ndarray, float, np.ndarray], inside_ms: float) -> None:
    """10 s pieces starting `inside_ms` before a reference R. Before: that beat was lost in 55, 55 and 54 of the 55
    pieces (now 53 are kept at 10 ms, 0 at 5 ms)."""
    x, fs, ref = mit
    lost = []
    for r in ref[PICKS]:
        a = r - round(inside_ms / 1000 * fs)
        first = detect_rpeaks(x[:, a : a + round(10 * fs)], fs)[0] + a
        if abs(first - r) > 0.01 * fs:
            lost.append(int(r))
    assert lost == [], f"first beat lost in {len(lost)}/55 pieces"


def test_settling_transients_at_either_edge_are_no_beats(mit: tuple[np.ndarray, float, np.ndarray]) -> None:
    """An amplifier settling from ±3 mV at the start, or drifting away by 3 mV at the end, is not a beat."""
    x, fs, ref = mit
    a, end = ref[300] + round(0.4 * fs), ref[312] + round(0.4 * fs)  # both edges mid-RR
    piece = x[:, a:end]
    inside = ref[(ref >= a) & (ref < end)] - a
    t = np.arange(piece.shape[1]) / fs
    for sign in (1.0, -1.0):
        for drift in (np.exp(-t / 0.05), np.exp((t - t[-1]) / 0.05)):
            found = detect_rpeaks(piece + (sign * 3.0 * drift).astype(np.float32), fs)
            assert beat_f1(inside, found, round(0.02 * fs)) == (inside.size, inside.size, found.size), sign


def test_a_format_2_processor_keeps_the_old_edges(mit: tuple[np.ndarray, float, np.ndarray]) -> None:
    """The bundled checkpoint (format 2) keeps the start rule, peaks included; re-saved, it says so in format 3."""
    saved = json.loads((BUNDLED / "processor_config.json").read_text(encoding="utf-8"))
    assert saved["format_version"] == 2 and "edge_rule" not in saved["beats"]
    proc = EcgProcessor.from_pretrained(BUNDLED)
    assert proc.beat_config.edge_rule == "start"
    x, fs, ref = mit
    a, end = ref[200] - 11, ref[213] - 4  # an R 31 ms after the start; the record ends 11 ms before an R
    # Peaks of the code before this rule (the start beat lost, a last beat at the cut):
    old = [308, 605, 895, 1172, 1449, 1737, 2031, 2333, 2635, 2923, 3209, 3497, 3777]
    assert detect_rpeaks(x[:, a:end], fs, cfg=proc.beat_config).tolist() == old
    assert detect_rpeaks(x[:, a:end], fs, cfg=proc.beat_config, mode="robust").tolist() == old
    assert detect_rpeaks(x[:, a:end], fs).tolist() == [10, *old[:-1]]  # the new default, for contrast
    resaved = proc.to_dict()
    assert resaved["format_version"] == 3 and resaved["beats"]["edge_rule"] == "start"
    assert EcgProcessor.from_dict(resaved).beat_config == proc.beat_config


def test_edge_rule_default_round_trip_and_validate() -> None:
    assert BeatConfig().edge_rule == "symmetric"
    assert EcgProcessor.from_dict({"beats": {"max_beats": 30}}).beat_config.edge_rule == "symmetric"
    old = EcgProcessor().to_dict()
    assert old["beats"]["edge_rule"] == "symmetric"
    old["format_version"] = 2
    del old["beats"]["edge_rule"]
    assert EcgProcessor.from_dict(old).beat_config.edge_rule == "start"
    old["beats"]["edge_rule"] = "symmetric"  # an explicit value is kept, whatever the format
    assert EcgProcessor.from_dict(old).beat_config.edge_rule == "symmetric"
    assert BeatConfig.from_saved({}).edge_rule == "start"
    for value in ("end", None, 1):
        with pytest.raises(ConfigError, match=r"BeatConfig\.edge_rule"):
            BeatConfig(edge_rule=value)
        with pytest.raises(ConfigError, match="edge_rule"):
            BeatConfig.from_dict({"edge_rule": value})


@pytest.mark.parametrize("rule", ["symmetric", "start"])
def test_chunk_joins_are_not_record_edges(mit: tuple[np.ndarray, float, np.ndarray], rule: str) -> None:
    """Chunked detection keeps each chunk's peaks only mid-overlap, away from the chunk's edges: the same beats as one
    call on the whole record (which starts 31 ms before an R and ends 11 ms before one)."""
    x, fs, ref = mit
    cfg = BeatConfig(edge_rule=rule)
    a, end = ref[3] - 11, ref[-3] - 4
    whole = detect_rpeaks(x[:, a:end], fs, cfg=cfg)
    chunked = detect_rpeaks_long(x[:, a:end], fs, cfg=cfg, chunk_s=300.0, overlap_s=10.0)
    assert chunked.size == whole.size and np.abs(chunked - whole).max() <= 1
    if rule == "symmetric":  # the first beat found, no beat at the cut
        assert abs(whole[0] - 11) <= 2 and whole[-1] < end - a - 0.1 * fs
