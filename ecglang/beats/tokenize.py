"""Beat tokenizer: fixed-duration beat windows around the R peaks found by `ecglang.beats.detect`.

Tokenization (`tokenize_beats`) cuts a fixed-duration window (`pre_s` before to `post_s` after R) for
each beat and resamples it linearly to `beat_len` samples by index arithmetic; samples outside the
signal are zero. When more than `max_beats` beats are found, the first `max_beats` are kept (10 s at
220 bpm is 37 beats, so the default of 40 keeps every beat of a standard 10 s ECG); `n_detected` says how
many there were, and a warning names the record and the seconds left unread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ecglang.beats.config import BeatConfig, default_config
from ecglang.beats.detect import detect_rpeaks
from ecglang.errors import EcgQualityError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import N_LEADS

logger = logging.getLogger(__name__)
# Records already warned about (per process): training reads each record once per epoch, and one line says it.
_CUT_RECORDS: set[str] = set()
# What a record without a train of similar beats can be. Ventricular fibrillation and flutter are ECGs with no
# distinct beats: calling them "not an ECG" would invite a user to discard the most urgent record of a batch.
NO_BEATS_CAUSES = (
    "noise, a signal that is not an ECG, or a rhythm without distinct beats (ventricular fibrillation or flutter, "
    "which this beat-level model cannot score): look at the trace"
)

__all__ = [
    "NO_BEATS_CAUSES",
    "BeatConfig",
    "BeatTokens",
    "detect_rpeaks",
    "extract_windows",
    "tokenize_array",
    "tokenize_beats",
]


@dataclass
class BeatTokens:
    """Beats of one record (shapes in docs/ARCHITECTURE.md)."""

    beats: np.ndarray  # float32 [max_beats, 12, beat_len]; padded rows are zero
    beat_mask: np.ndarray  # bool [max_beats]; True for real beats
    rpeaks: np.ndarray  # int64 [n_beats]: sample index (at the signal's fs) of each kept beat
    rr: np.ndarray  # float32 [max_beats, 2]: (previous RR, next RR) in seconds; edge beats reuse the neighbour
    times: np.ndarray  # float32 [max_beats]: R-peak time in seconds
    lead_mask: np.ndarray  # bool [12]
    fs: float
    n_beats: int
    heart_rate: float  # bpm from median RR (nan if < 2 beats)
    n_detected: int  # beats found before the `max_beats` cut (n_beats when none was cut)
    consistency: float = float("nan")  # `beat_consistency` of the kept beats (nan if < 2 beats)


def _rr_pairs(rpeaks: np.ndarray, fs: float) -> np.ndarray:
    """(previous RR, next RR) in seconds for each peak; edge beats reuse their neighbour's interval."""
    if rpeaks.size < 2:
        return np.zeros((rpeaks.size, 2), dtype=np.float32)
    rr = np.diff(rpeaks) / fs
    prev = np.concatenate(([rr[0]], rr))
    nxt = np.concatenate((rr, [rr[-1]]))
    return np.stack([prev, nxt], axis=1).astype(np.float32)


def extract_windows(signal12: np.ndarray, rpeaks: np.ndarray, fs: float, cfg: BeatConfig) -> np.ndarray:
    """Windows `[n, L, beat_len]` around `rpeaks`, linearly resampled; samples outside the signal are zero."""
    x = np.asarray(signal12, dtype=np.float32)
    n_leads, n = x.shape
    if rpeaks.size == 0:
        return np.zeros((0, n_leads, cfg.beat_len), dtype=np.float32)
    pos = rpeaks[:, None] + cfg.offsets_s()[None, :] * fs  # fractional sample positions [P, beat_len]
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    # Zero padding on both sides keeps every index valid: a margin of one sample covers the
    # interpolation neighbour, anything further out is clipped onto a zero.
    padded = np.zeros((n_leads, n + 2), dtype=np.float32)
    padded[:, 1:-1] = x
    a = np.clip(i0 + 1, 0, n + 1)
    b = np.clip(i0 + 2, 0, n + 1)
    out = padded[:, a] * (1 - frac) + padded[:, b] * frac  # [L, P, beat_len]
    return np.ascontiguousarray(out.transpose(1, 0, 2))


def beat_consistency(windows: np.ndarray, lead_mask: np.ndarray) -> float:
    """How much the beats of a record resemble each other: for each valid lead, the mean correlation of each
    beat window `[n, 12, beat_len]` with the mean of the other beats; the median over leads. About 1 for an
    ECG (ectopic beats lower it a little), about 0 for noise. NaN with fewer than 2 beats."""
    beats = np.asarray(windows, dtype=np.float64)[:, np.asarray(lead_mask, dtype=bool)]  # [n, L, len]
    if len(beats) < 2 or beats.shape[1] == 0:
        return float("nan")
    others = (beats.sum(0, keepdims=True) - beats) / (len(beats) - 1)  # leave-one-out: a beat is not its own model
    a = beats - beats.mean(-1, keepdims=True)
    b = others - others.mean(-1, keepdims=True)
    denom = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, (a * b).sum(-1) / denom, np.nan)  # [n, L]; a flat window has none
    seen = np.isfinite(corr).any(axis=0)  # leads flat in every window have no correlation to average
    if not seen.any():
        return float("nan")
    return float(np.median(np.nanmean(corr[:, seen], axis=0)))


def tokenize_array(
    signal12: np.ndarray,
    fs: float,
    lead_mask: np.ndarray | None = None,
    cfg: BeatConfig | None = None,
    *,
    n_valid: int | None = None,
    record: str | None = None,
) -> BeatTokens:
    """Array-level core of `tokenize_beats`.

    `n_valid` limits detection to the first `n_valid` samples (the rest is padding added by
    `preprocess`, whose edge would look like a QRS); windows still read the whole signal.
    Raises `EcgQualityError` (naming `record`) with fewer than `cfg.min_beats` beats, or beats that do not
    resemble each other (`beat_consistency` below `cfg.min_consistency`: noise).
    """
    cfg = cfg or default_config()
    x = np.asarray(signal12, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != N_LEADS:
        raise EcgQualityError(record, f"signal must be [12, n_samples] in canonical lead order, got {x.shape}")
    mask = np.ones(N_LEADS, dtype=bool) if lead_mask is None else np.asarray(lead_mask, dtype=bool)
    if mask.shape != (N_LEADS,):
        raise EcgQualityError(record, f"lead_mask must have shape (12,), got {mask.shape}")
    if not mask.any():
        raise EcgQualityError(record, "no valid lead to find beats in")
    limit = x.shape[1] if n_valid is None else max(0, min(int(n_valid), x.shape[1]))
    try:
        all_peaks = detect_rpeaks(x[:, :limit], fs, mask, cfg)
    except EcgQualityError as exc:  # name the record
        raise EcgQualityError(record, exc.problem) from None
    if all_peaks.size < cfg.min_beats:
        raise EcgQualityError(
            record,
            # the searched length, not the padded one: a 1 s record padded to 10 s has 1 s of signal
            f"found {all_peaks.size} beat(s) in {limit / fs:.2f} s, need at least {cfg.min_beats}"
            # a record long enough for beats at any heart rate above 20 bpm: the cause is not its length
            + (f"; {NO_BEATS_CAUSES}" if limit / fs >= 6.0 else ""),
        )
    heart_rate = float(60.0 / np.median(np.diff(all_peaks) / fs)) if all_peaks.size >= 2 else float("nan")
    rr_all = _rr_pairs(all_peaks, fs)
    k = min(all_peaks.size, cfg.max_beats)  # keep the first max_beats beats
    rpeaks = all_peaks[:k]
    if all_peaks.size > k and (record is None or record not in _CUT_RECORDS):  # said once, not silently cut
        if record is not None:
            _CUT_RECORDS.add(record)
        logger.warning(
            "%s: %d beats found, the model takes the first %d (max_beats); the last %.1f s are not read",
            record or "record", all_peaks.size, k, (limit - all_peaks[k]) / fs,
        )  # fmt: skip
    beats = np.zeros((cfg.max_beats, N_LEADS, cfg.beat_len), dtype=np.float32)
    beats[:k] = extract_windows(x, rpeaks, fs, cfg)
    beats[:, ~mask] = 0.0
    consistency = beat_consistency(beats[:k], mask)
    if cfg.min_consistency > 0 and consistency < cfg.min_consistency:  # NaN (too few beats to tell) passes
        raise EcgQualityError(
            record,
            f"no consistent heartbeat: the {k} beats found correlate {consistency:.2f} on average with the other "
            f"beats (a real ECG: about 1; needed: {cfg.min_consistency:g}); {NO_BEATS_CAUSES}",
        )
    beat_mask = np.zeros(cfg.max_beats, dtype=bool)
    beat_mask[:k] = True
    rr = np.zeros((cfg.max_beats, 2), dtype=np.float32)
    rr[:k] = rr_all[:k]
    times = np.zeros(cfg.max_beats, dtype=np.float32)
    times[:k] = rpeaks / fs
    return BeatTokens(
        beats=beats,
        beat_mask=beat_mask,
        rpeaks=rpeaks,
        rr=rr,
        times=times,
        lead_mask=mask.copy(),
        fs=float(fs),
        n_beats=int(k),
        heart_rate=heart_rate,
        consistency=consistency,
        n_detected=int(all_peaks.size),
    )


def tokenize_beats(ecg: Ecg, cfg: BeatConfig | None = None) -> BeatTokens:
    """Detect beats in `ecg` (all valid leads) and cut one fixed-duration window per beat.

    Padding added by `preprocess` (`metadata["pad_samples"]`) is excluded from detection.
    Raises `EcgQualityError` naming the record when fewer than `cfg.min_beats` beats are found.
    """
    record = str(ecg.metadata.get("source_path") or ecg.record_id or "") or None
    pad = int(ecg.metadata.get("pad_samples", 0) or 0)
    n_valid = ecg.n_samples - pad if 0 < pad < ecg.n_samples else None
    return tokenize_array(ecg.signal, ecg.fs, ecg.lead_mask, cfg, n_valid=n_valid, record=record)
