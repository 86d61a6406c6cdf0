"""Beat tokenizer: multi-lead R-peak detection and fixed-duration beat windows.

Detection (`detect_rpeaks`) uses every valid lead together, all in vectorised numpy/scipy:

1. decimate to about `detect_fs` (100 Hz) by block averaging (an integer factor, so indices map back
   exactly);
2. per lead: zero-phase QRS band-pass (`qrs_band`, 8–25 Hz; the `sosfiltfilt` response of a 2nd-order
   Butterworth as a short FIR) and derivative, squared;
3. per-lead robust scaling: divide by the median over ~2.5 s blocks of the block maximum (the lead's
   typical QRS energy), so inverted, small or large leads all weigh the same;
4. combine: mean over valid leads, moving-window integration (`integration_s`), square root (an
   amplitude-like envelope);
5. candidates: `scipy.signal.find_peaks` with the refractory distance; accepted when above
   `threshold` × the local QRS level (rolling median over ~5 blocks of the block maxima), which
   follows amplitude changes over seconds and ignores isolated artefacts;
6. search-back: an RR gap longer than `searchback_rr` × the local median RR is searched again at half
   the threshold (missed small beats, e.g. ectopics with low slope); then a weak peak (below
   `weak_ratio` × the 80th-percentile peak) closer than `early_rr` × the local RR to a strong beat is dropped
   (T, P, flutter or fibrillation waves);
7. refinement at the signal's rate: each peak moves to the extreme of the dominant deflection within
   ±`refine_s`, using all leads at once (each lead's dominant polarity and scale are estimated over all
   beats; biphasic leads get little weight), so there is one R location for all leads;
   a beat whose deflection is clearly opposite (an inverted ectopic) takes its extreme on that side;
8. the refractory distance is enforced again at full rate (the stronger peak wins).

At the record edges: a QRS cut by the end of the record still counts (its R is there); at the start,
the first peak counts only when the envelope rises to it from below half its height inside the record,
so a settling transient at the start (or a QRS whose onset was not recorded) is not a beat.

The 8 Hz lower edge keeps T waves (even tall, peaked ones) far below QRS level; the price is that an
extremely smooth, wide complex (a Gaussian-like QRS over 200 ms, as in a sine-wave pattern) carries
little energy in the band and may be missed. Real ventricular ectopics have steep enough slopes.

Tokenization (`tokenize_beats`) cuts a fixed-duration window (`pre_s` before to `post_s` after R) for
each beat and resamples it linearly to `beat_len` samples by index arithmetic; samples outside the
signal are zero. When more than `max_beats` beats are found, the first `max_beats` are kept (10 s at
220 bpm is 37 beats, so the default of 40 keeps every beat of a standard 10 s ECG).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from ecglang.errors import ConfigError, EcgQualityError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import N_LEADS


@dataclass
class BeatConfig:
    """Beat detection and window settings (see the module docstring for the algorithm)."""

    pre_s: float = 0.25
    post_s: float = 0.45
    beat_len: int = 96
    max_beats: int = 40
    min_beats: int = 2
    refractory_s: float = 0.2  # 220 bpm is an RR of 0.27 s
    qrs_band: tuple[float, float] = (8.0, 25.0)
    detect_fs: float = 100.0
    integration_s: float = 0.08
    threshold: float = 0.3
    level_block_s: float = 2.5
    level_blocks: int = 5
    searchback_rr: float = 1.6
    weak_ratio: float = 0.4
    early_rr: float = 0.6
    refine_s: float = 0.05

    def __post_init__(self) -> None:
        self.qrs_band = tuple(float(v) for v in self.qrs_band)  # JSON gives lists
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid field."""
        for name in ("pre_s", "post_s", "refine_s", "weak_ratio", "early_rr"):
            if not (getattr(self, name) >= 0):
                raise ConfigError(f"BeatConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.pre_s + self.post_s <= 0:
            raise ConfigError("BeatConfig.pre_s + post_s must be > 0")
        for name, low in (("beat_len", 2), ("max_beats", 1), ("min_beats", 1), ("level_blocks", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"BeatConfig.{name} must be an int >= {low}, got {value!r}")
        if self.min_beats > self.max_beats:
            raise ConfigError(f"BeatConfig.min_beats ({self.min_beats}) exceeds max_beats ({self.max_beats})")
        for name in ("refractory_s", "detect_fs", "integration_s", "threshold", "level_block_s"):
            if not (getattr(self, name) > 0):
                raise ConfigError(f"BeatConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.refractory_s > 1.0:
            raise ConfigError(f"BeatConfig.refractory_s={self.refractory_s} would forbid heart rates above 60 bpm")
        if len(self.qrs_band) != 2 or not (0 < self.qrs_band[0] < self.qrs_band[1]):
            raise ConfigError(f"BeatConfig.qrs_band needs 0 < low < high, got {self.qrs_band}")
        if self.detect_fs < 2 * self.qrs_band[1] / 0.9:
            raise ConfigError(f"BeatConfig.detect_fs ({self.detect_fs}) must be at least 2.2 × qrs_band high edge")
        if not (self.searchback_rr > 1):
            raise ConfigError(f"BeatConfig.searchback_rr must be > 1, got {self.searchback_rr}")

    @property
    def window_s(self) -> float:
        return self.pre_s + self.post_s

    @property
    def r_index(self) -> int:
        """Index of the R peak inside a beat window."""
        return round(self.pre_s / self.window_s * self.beat_len)

    def offsets_s(self) -> np.ndarray:
        """Time of each window sample relative to R, in seconds (R falls exactly on `r_index`)."""
        dt = self.window_s / self.beat_len
        return (np.arange(self.beat_len) - self.r_index) * dt

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["qrs_band"] = list(d["qrs_band"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BeatConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown BeatConfig key(s) {unknown}; known keys: {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"invalid BeatConfig: {exc}") from exc


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


@lru_cache(maxsize=1)
def _default_config() -> BeatConfig:
    return BeatConfig()  # built once: validation costs more than a short record's detection steps


_EMPTY = np.zeros(0, dtype=np.int64)
_MIN_FS = 50.0
_MAX_ABS = 1e9  # far beyond any ECG in mV or raw ADC units; keeps float arithmetic away from overflow


@lru_cache(maxsize=64)
def _qrs_kernel(lo: float, hi: float, fs: float) -> np.ndarray:
    """Zero-phase QRS band-pass followed by a central difference, as one antisymmetric FIR kernel.

    The band-pass is the impulse response of a 2nd-order Butterworth run forwards and backwards
    (`sosfiltfilt`), truncated at ±0.12 s where over 99.9 % of its energy lies: a short FIR applied
    with `ndimage.correlate1d` is 3-5x cheaper than `sosfiltfilt` on 10 s records and has no phase.
    """
    sos = sps.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
    half = max(3, round(0.12 * fs))
    impulse = np.zeros(8 * half + 1)
    impulse[4 * half] = 1.0
    response = sps.sosfiltfilt(sos, impulse)[3 * half : 5 * half + 1]
    return np.convolve(response, [0.5, 0.0, -0.5]).astype(np.float32)  # d/dt per sample; odd length, centred


def _decimate(x: np.ndarray, q: int) -> np.ndarray:
    """Block-average decimation by `q` (drops < q trailing samples); the band-pass does the rest."""
    if q == 1:
        return x.astype(np.float32, copy=False)
    m = x.shape[1] // q
    out = x[:, 0 : m * q : q].astype(np.float32)  # a sum of strided slices beats reshape().mean() 10x
    for k in range(1, q):
        out += x[:, k : m * q : q]
    out *= 1.0 / q
    return out


def _block_max(v: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Maxima of `v` (last axis) over blocks of `block` samples and the blocks' centres.

    A trailing block shorter than half a block joins the previous one.
    """
    m = v.shape[-1]
    starts = np.arange(0, m, block)
    if len(starts) > 1 and m - starts[-1] < block / 2:
        starts = starts[:-1]
    ends = np.append(starts[1:], m)
    return np.maximum.reduceat(v, starts, axis=-1), (starts + ends - 1) / 2


def _p80(v: np.ndarray) -> float:
    """80th percentile (nearest rank) of a short array; np.percentile's overhead dwarfs the work here."""
    return float(np.sort(v)[round(0.8 * (len(v) - 1))])


def _rolling_median(v: np.ndarray, size: int) -> np.ndarray:
    """Centred rolling median (edges use the nearest full window); one median when `v` is short."""
    if len(v) <= size:
        return np.full(len(v), np.median(v))
    return ndimage.median_filter(v, size=size, mode="nearest")


def _envelope(x: np.ndarray, fs_d: float, cfg: BeatConfig) -> np.ndarray | None:
    """The combined QRS envelope of decimated leads `x [L, m]` (None when too short to filter)."""
    lo, hi = cfg.qrs_band
    kernel = _qrs_kernel(lo, min(hi, 0.45 * fs_d), fs_d)
    if x.shape[1] < len(kernel):  # shorter than one QRS filter span: nothing to find
        return None
    # float32 is safe: inputs are bounded by _MAX_ABS, so the squared response stays far from overflow.
    # mode="reflect" continues the signal at the edges.
    e = ndimage.correlate1d(x, kernel, axis=1, mode="reflect")
    e *= e
    # Per-lead typical QRS energy: median of block maxima (robust to a few artefact blocks).
    bmax, _ = _block_max(e, max(1, round(cfg.level_block_s * fs_d)))
    scale = np.median(bmax, axis=1)
    keep = scale > 0
    if not keep.any():
        return None
    combined = (e[keep] / scale[keep, None]).mean(axis=0)
    width = max(1, round(cfg.integration_s * fs_d))
    smoothed = ndimage.uniform_filter1d(combined, width, mode="nearest")
    return np.sqrt(np.maximum(smoothed, 0.0))  # the running sum can dip a hair below zero


def _select(env: np.ndarray, fs_d: float, cfg: BeatConfig) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of the envelope (decimated indices) and their heights, with adaptive threshold + search-back."""
    distance = max(1, int(np.floor(cfg.refractory_s * fs_d)))
    # Zero padding lets a maximum on the last sample (a QRS cut by the end of the record) count as a peak.
    cand, props = sps.find_peaks(np.concatenate(([0.0], env, [0.0])), distance=distance, height=0.0)
    cand -= 1
    h = props["peak_heights"]
    # The first peak must rise from below half its height inside the record: a maximum at the start
    # is a settling transient or a QRS whose onset was not recorded.
    if cand.size and (cand[0] == 0 or env[: cand[0]].min() >= 0.5 * h[0]):
        cand, h = cand[1:], h[1:]
    if cand.size == 0:
        return _EMPTY, np.zeros(0)
    bmax, centres = _block_max(env, max(1, round(cfg.level_block_s * fs_d)))
    level = _rolling_median(bmax, cfg.level_blocks)
    level_at = np.interp(cand, centres, level)
    accepted = h >= cfg.threshold * level_at
    peaks = cand[accepted]
    if peaks.size >= 3:
        # Search-back: candidates inside unusually long RR gaps, at half the threshold, best one per gap.
        rr = np.diff(peaks)
        local = _rolling_median(rr, 9)
        long_gap = rr > cfg.searchback_rr * local
        if long_gap.any():
            gap = np.searchsorted(peaks, cand) - 1  # gap index each candidate falls in
            # Half the threshold relative to the local level, but never weaker than a weak beat overall
            # (in atrial fibrillation the long gaps hold only f-waves).
            floor = cfg.weak_ratio * _p80(h[accepted])
            ok = (~accepted) & (gap >= 0) & (gap < len(rr)) & (h >= 0.5 * cfg.threshold * level_at) & (h >= floor)
            ok[ok] &= long_gap[gap[ok]]
            idx = np.flatnonzero(ok)
            if idx.size:
                # far enough from both neighbours
                g = gap[idx]
                far = (cand[idx] - peaks[g] >= distance) & (peaks[g + 1] - cand[idx] >= distance)
                idx = idx[far]
                order = np.lexsort((-h[idx], gap[idx]))  # by gap, strongest first
                _, first = np.unique(gap[idx][order], return_index=True)
                accepted[idx[order][first]] = True
                peaks = cand[accepted]
    heights = h[accepted]
    keep = _drop_weak_early(peaks, heights, cfg)
    return peaks[keep], heights[keep]


def _drop_weak_early(peaks: np.ndarray, heights: np.ndarray, cfg: BeatConfig) -> np.ndarray:
    """Keep-mask that rejects weak peaks lying too close to a strong beat.

    A peak weaker than `weak_ratio` × the 80th-percentile peak that sits closer than `early_rr` × the local
    median RR to its nearest strong beat is a T wave, a P/flutter wave or an f-wave, not a QRS: real
    early beats (premature atrial or ventricular) carry QRS energy similar to or above normal beats.
    """
    keep = np.ones(peaks.size, dtype=bool)
    if peaks.size < 3:
        return keep
    # The reference is a high percentile, not the median: with a T wave after every beat half the
    # peaks are weak, and the median would sit between the two populations.
    strong = heights >= cfg.weak_ratio * _p80(heights)
    s = peaks[strong]
    weak = np.flatnonzero(~strong)
    if s.size < 3 or weak.size == 0:
        return keep
    rr = np.diff(s).astype(np.float64)
    rr_local = _rolling_median(rr, 9)
    w = peaks[weak]
    j = np.searchsorted(s, w)
    before = np.where(j > 0, w - s[np.maximum(j - 1, 0)], np.inf)
    after = np.where(j < s.size, s[np.minimum(j, s.size - 1)] - w, np.inf)
    ref_rr = np.interp(w, (s[:-1] + s[1:]) / 2, rr_local)
    keep[weak[np.minimum(before, after) < cfg.early_rr * ref_rr]] = False
    return keep


def _refine(x: np.ndarray, coarse: np.ndarray, strength: np.ndarray, fs: float, cfg: BeatConfig) -> np.ndarray:
    """Move coarse peak positions (full-rate samples) to the R extreme, one location for all leads."""
    n = x.shape[1]
    w = max(1, round(cfg.refine_s * fs))
    wide = 2 * w  # baseline/polarity statistics use a window twice as wide
    offs = np.arange(-wide, wide + 1)
    idx = np.clip(coarse[:, None] + offs[None, :], 0, n - 1)  # [P, 4w+1]
    win = x[:, idx]  # [L, P, 4w+1]
    # Baseline: the mean of the wide window. The QRS pulls it towards the dominant deflection, which only
    # shrinks that side's margin; the polarity decision below stays the same and costs one reduction.
    base = win.mean(axis=2, keepdims=True)
    core = win[:, :, wide - w : wide + w + 1] - base  # ±refine_s
    pos = core.max(axis=2)
    neg = -core.min(axis=2)
    # Per lead, over all beats (one median call): dominance of the positive deflection, QRS size, range.
    diff, size, span = np.median(np.stack([pos - neg, np.maximum(pos, neg), pos + neg]), axis=2)
    size = np.where(size > 0, size, 1.0)
    weight = np.abs(diff) / np.maximum(span, 1e-12)  # ~1 for a monophasic lead, ~0 for a biphasic one
    if not (weight > 0.05).any():  # every lead biphasic: use the absolute deflection
        score = (np.abs(core) / size[:, None, None]).sum(axis=0)
    else:
        sign_w = np.sign(diff) * weight / size
        score = np.einsum("l,lpt->pt", sign_w.astype(core.dtype), core)
    # A beat whose combined deflection is clearly opposite to the usual one (e.g. a ventricular ectopic
    # with inverted QRS) takes its extreme on that side; otherwise the usual polarity keeps all beats aligned.
    top, bottom = score.max(axis=1), -score.min(axis=1)
    flip = bottom > 1.5 * np.maximum(top, 0)
    refined = coarse + np.where(flip, score.argmin(axis=1), score.argmax(axis=1)) - w
    refined = np.clip(refined, 0, n - 1)
    # Enforce the refractory distance at full rate: the stronger detection wins.
    distance = max(1, int(np.ceil(cfg.refractory_s * fs)))
    order = np.argsort(refined, kind="stable")
    refined, strength = refined[order], strength[order]
    if refined.size > 1 and (np.diff(refined) < distance).any():
        sparse = np.zeros(n + 2)
        np.maximum.at(sparse, refined + 1, strength + 1.0)
        keep, _ = sps.find_peaks(sparse, distance=distance)
        refined = keep - 1
    return np.unique(refined).astype(np.int64)


def detect_rpeaks(
    signal: np.ndarray, fs: float, lead_mask: np.ndarray | None = None, cfg: BeatConfig | None = None
) -> np.ndarray:
    """R-peak sample indices (int64, sorted, unique) from all valid leads of `signal` (`[L, n]` or `[n]`).

    Leads with `lead_mask` False or with a constant signal are ignored. Returns an empty array when no
    beat is found (a flat or very short signal). Raises `EcgQualityError` for NaN/inf or absurd
    amplitudes in a valid lead (run `preprocess` first) or `fs` below 50 Hz, `ConfigError` for a
    non-positive `fs`.
    """
    cfg = cfg or _default_config()
    x = np.asarray(signal)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise EcgQualityError(None, f"signal must be [leads, samples] or [samples], got shape {x.shape}")
    if not (np.isfinite(fs) and fs > 0):
        raise ConfigError(f"sampling frequency must be a positive number, got {fs}")
    if fs < _MIN_FS:
        raise EcgQualityError(
            None, f"sampling frequency {fs:g} Hz is too low for QRS detection (needs >= {_MIN_FS} Hz)"
        )
    valid = np.ones(x.shape[0], dtype=bool) if lead_mask is None else np.asarray(lead_mask, dtype=bool).copy()
    if valid.shape != (x.shape[0],):
        raise EcgQualityError(None, f"lead_mask shape {valid.shape} does not match {x.shape[0]} leads")
    if not valid.all():
        x = x[valid]
    if x.shape[1] < 2 or x.shape[0] == 0:
        return _EMPTY.copy()
    lo, hi = x.min(axis=1), x.max(axis=1)  # NaN and inf propagate into these
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise EcgQualityError(None, "signal holds NaN/inf samples in a valid lead; run ecglang.signal.preprocess first")
    if max(-lo.min(), hi.max()) > _MAX_ABS:
        raise EcgQualityError(None, f"signal amplitude above {_MAX_ABS:g}: not a voltage (mV or ADC units)")
    varying = hi > lo  # a constant lead carries no beat
    if not varying.all():
        x = x[varying]
    if x.shape[0] == 0:
        return _EMPTY.copy()

    q = max(1, round(fs / cfg.detect_fs))
    fs_d = fs / q
    env = _envelope(_decimate(x, q), fs_d, cfg)
    if env is None:
        return _EMPTY.copy()
    peaks_d, strength = _select(env, fs_d, cfg)
    if peaks_d.size == 0:
        return _EMPTY.copy()
    coarse = peaks_d * q + (q - 1) // 2  # centre of the averaged block
    return _refine(x.astype(np.float32, copy=False), coarse, strength, fs, cfg)


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
    Raises `EcgQualityError` (naming `record`) with fewer than `cfg.min_beats` beats.
    """
    cfg = cfg or _default_config()
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
            f"found {all_peaks.size} beat(s) in {limit / fs:.2f} s, need at least {cfg.min_beats}",
        )
    heart_rate = float(60.0 / np.median(np.diff(all_peaks) / fs)) if all_peaks.size >= 2 else float("nan")
    rr_all = _rr_pairs(all_peaks, fs)
    k = min(all_peaks.size, cfg.max_beats)  # keep the first max_beats beats
    rpeaks = all_peaks[:k]
    beats = np.zeros((cfg.max_beats, N_LEADS, cfg.beat_len), dtype=np.float32)
    beats[:k] = extract_windows(x, rpeaks, fs, cfg)
    beats[:, ~mask] = 0.0
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
