"""Multi-lead R-peak detection (`detect_rpeaks`), fast by default, with a noise-robust mode and a chunked
variant for long records.

Detection (`detect_rpeaks`) uses every valid lead together, all in vectorised numpy/scipy:

1. decimate to about `detect_fs` (100 Hz) by block averaging (an integer factor, so indices map back
   exactly);
2. per lead: zero-phase QRS band-pass (`qrs_band`, 8–25 Hz; the `sosfiltfilt` response of a 2nd-order
   Butterworth as a short FIR) and derivative, squared;
3. per-lead robust scaling: divide by the median over ~2.5 s blocks of the block maximum (the lead's
   typical QRS energy), so inverted, small or large leads all weigh the same; with
   `lead_weighting="qrs_evidence"` (default) a lead whose energy has no train of tall, short peaks (white
   noise, mains hum, a loose electrode: that typical energy under 30-80 × its median) weighs less, down to 0;
4. combine: weighted mean over valid leads, with `lead_combine="trimmed"` (default, 4+ weighted leads)
   leaving out the largest lead at each sample so that one lead alone (an electrode artefact) makes no
   beat; moving-window integration (`integration_s`), square root (an amplitude-like envelope);
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

At the record edges (`edge_rule="symmetric"`, default): a first or last envelope peak that does not rise from
(or fall to) below half its height inside the record counts only if its R is a peak inside the record: the combined
deflection falls by a quarter of its range on both sides of it (`_peak_inside`). A QRS cut by the end before its R,
or a settling transient at the start, is no beat; a beat with its R 10 ms or more inside is kept. On MIT-BIH 100 cut
into 1776 pieces of 10 s, 30 false end beats (their "R" up to 31 ms early) and 168 missed start beats (R 0-65 ms in)
became 0 and 41 (R within 10 ms of an edge); 16 of the 353 PTB-XL sample records gain a real first beat (R at 18-54
ms), nothing else changes. `edge_rule="start"` (processor format < 3) drops such a first peak and keeps such a last
one (its R at the cut).

The 8 Hz lower edge keeps T waves (even tall, peaked ones) far below QRS level; the price is that an
extremely smooth, wide complex (a Gaussian-like QRS over 200 ms, as in a sine-wave pattern) carries
little energy in the band and may be missed. Real ventricular ectopics have steep enough slopes.
"""

from __future__ import annotations

import mmap
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from ecglang.beats.config import BeatConfig, default_config
from ecglang.errors import ConfigError, EcgQualityError

DetectMode = Literal["fast", "robust"]
DETECT_MODES = ("fast", "robust")
# Robust mode's beat-consistency check (`_drop_inconsistent`), tuned on MIT-BIH 100 minutes 0-20 and
# simulated records with seeds 0-2 at 6, 0 and -3 dB (benchmarks/bench_rpeaks_noisy.py holds out the rest).
TEMPLATE_S = 0.06
TEMPLATE_CORR = 0.7
TEMPLATE_GAP_RR = 1.3

# Lead weighting (`BeatConfig.lead_weighting="qrs_evidence"`, `_lead_weights`): the QRS evidence of a lead, its
# median block maximum of energy over its median energy, was >= 27 on all 4236 real leads of the 353 PTB-XL sample
# records (1st percentile 141, median 4506) and 13-24 on white noise (audit 18). As computed here: weight 1 for 4217
# of those leads (17 between 0 and 1, 2 at 0; the records' beats unchanged) and 0 for 298 of 300 noise or hum leads.
EVIDENCE_LOW = 30.0
EVIDENCE_HIGH = 80.0
# The evidence leaves out 0.15 s at each end: the filters' edge transients on a hum lead reached evidence 147.
EVIDENCE_EDGE_S = 0.15
EVIDENCE_SAMPLES = 512
_LOG_EVIDENCE_LOW = float(np.log(EVIDENCE_LOW))
_LOG_EVIDENCE_SPAN = float(np.log(EVIDENCE_HIGH / EVIDENCE_LOW))
# `lead_combine="trimmed"` leaves out the largest lead only when at least this many leads weigh: with 2-3 leads the
# rest would have to see every beat (MIT-BIH 100's V5 alone misses 3).
TRIM_MIN_LEADS = 4

# An edge beat's R must be a peak inside the record: the deflection falls by this part of its range in the window
# (±`refine_s`) on both sides of it, inside the record (`_peak_inside`). On MIT-BIH 100 pieces with an R 5/10/15 ms
# inside the end: 54/55/55 of 55 kept with 0.25, 21/54/54 with 0.5; at the start (10/15 ms): 53/55 and 1/33. No
# false beat with any value from 0.15 to 0.5 for a QRS cut 1-20 ms before its R, at either end.
EDGE_FALL = 0.25

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


def _refractory_samples(seconds: float, fs: float) -> int:
    """A refractory distance in whole samples at rate `fs` (rounded up, at least 1)."""
    return max(1, int(np.ceil(seconds * fs)))


@lru_cache(maxsize=256)
def _blocks(m: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and centres of the blocks of `_block_max` (cached: records share a few lengths)."""
    starts = np.arange(0, m, block)
    if len(starts) > 1 and m - starts[-1] < block / 2:
        starts = starts[:-1]
    ends = np.append(starts[1:], m)
    starts.flags.writeable = False
    centres = (starts + ends - 1) / 2
    centres.flags.writeable = False
    return starts, centres


def _block_max(v: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Maxima of `v` (last axis) over blocks of `block` samples and the blocks' centres.

    A trailing block shorter than half a block joins the previous one.
    """
    starts, centres = _blocks(v.shape[-1], block)
    return np.maximum.reduceat(v, starts, axis=-1), centres


# Short-array helpers. A 10 s record has ~10-30 beats and ~4 level blocks: there numpy's Python-level
# wrappers (np.median, np.clip, np.diff, ndarray.mean) cost more than the arithmetic, and detection is
# called once per record, so these plain-ufunc versions (same results) are a large share of its speed.


def _median(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """np.median along `axis` (float result; no NaN handling: inputs are finite) by one sort."""
    s = np.sort(v, axis=axis)
    k = s.shape[axis]
    lo = np.take(s, (k - 1) // 2, axis=axis)
    if k % 2:
        return lo.astype(np.float64) if lo.dtype.kind in "iub" else lo
    return (lo + np.take(s, k // 2, axis=axis)) / 2


def _clip(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """np.clip for integer index arrays, without its dtype checks."""
    return np.minimum(np.maximum(v, lo), hi)


def _p80(v: np.ndarray) -> float:
    """80th percentile (nearest rank) of a short array; np.percentile's overhead dwarfs the work here."""
    return float(np.sort(v)[round(0.8 * (len(v) - 1))])


def _rolling_median(v: np.ndarray, size: int) -> np.ndarray:
    """Centred rolling median (edges use the nearest full window); one median when `v` is short.

    Odd windows over short arrays (beats, level blocks) sort a sliding-window view, which equals
    `ndimage.median_filter(mode="nearest")` and skips its set-up; long arrays use the filter.
    """
    n = len(v)
    if n <= size:
        return np.full(n, float(_median(v)))
    if size % 2 and n <= 512:
        h = size // 2
        padded = np.concatenate((np.full(h, v[0]), v, np.full(h, v[-1])))
        return np.sort(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)[:, h]
    return ndimage.median_filter(v, size=size, mode="nearest")


def _envelope(
    x: np.ndarray, fs_d: float, cfg: BeatConfig, keep_filtered: bool = False
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The combined QRS envelope of decimated leads `x [L, m]` (None when too short to filter), and with
    `keep_filtered` the per-lead band-passed derivative `[L, m]` it was made from (else None)."""
    lo, hi = cfg.qrs_band
    kernel = _qrs_kernel(lo, min(hi, 0.45 * fs_d), fs_d)
    if x.shape[1] < len(kernel):  # shorter than one QRS filter span: nothing to find
        return None, None
    # float32 is safe: inputs are bounded by _MAX_ABS, so the squared response stays far from overflow.
    # mode="reflect" continues the signal at the edges.
    filtered = ndimage.correlate1d(x, kernel, axis=1, mode="reflect")
    e = filtered * filtered
    # Per-lead typical QRS energy: median of block maxima (robust to a few artefact blocks).
    block = max(1, round(cfg.level_block_s * fs_d))
    bmax, _ = _block_max(e, block)
    scale = _median(bmax, axis=1)
    # A lead whose typical QRS energy is a vanishing part of the others' carries no QRS; dividing by a subnormal
    # scale would overflow to inf (float32) and swamp the leads that do.
    keep = scale > max(float(scale.max()) * 1e-12, float(np.finfo(e.dtype).tiny))
    if not keep.any():
        return None, None
    if cfg.lead_weighting == "qrs_evidence":
        weight = _lead_weights(e, keep, block, round(EVIDENCE_EDGE_S * fs_d))
    else:
        weight = keep.astype(np.float64)
    used = weight > 0
    norm = e / scale[:, None] if used.all() else e[used] / scale[used, None]
    w = weight[used]
    if (w != 1.0).any():
        norm *= w.astype(norm.dtype)[:, None]
    total = np.add.reduce(norm, axis=0)
    if cfg.lead_combine == "trimmed" and w.size >= TRIM_MIN_LEADS:
        # Leave out the largest lead at each sample: a beat needs energy in at least two leads. The rounded sum of
        # non-negative terms is never below its largest term, so the difference stays >= 0.
        combined = (total - np.maximum.reduce(norm, axis=0)) / float(w.sum() - w.max())
    else:
        combined = total / (int(w.size) if (w == 1.0).all() else float(w.sum()))
    width = max(1, round(cfg.integration_s * fs_d))
    smoothed = ndimage.uniform_filter1d(combined, width, mode="nearest")
    env = np.sqrt(np.maximum(smoothed, 0.0))  # the running sum can dip a hair below zero
    return env, filtered if keep_filtered else None


def _lead_weights(e: np.ndarray, keep: np.ndarray, block: int, edge: int) -> np.ndarray:
    """Each lead's weight in the combined envelope from its QRS evidence (`EVIDENCE_LOW`/`EVIDENCE_HIGH`).

    The evidence is the lead's typical QRS energy (the median of its block maxima, as the scale in `_envelope`)
    over its median energy: a lead with a QRS train has a few short, tall energy peaks; noise or mains hum has
    none. Both leave out `edge` samples at each end (when the record is long enough), where filter transients of
    a hum lead look like peaks. Weight 0 at or below `EVIDENCE_LOW`, 1 at or above `EVIDENCE_HIGH`, log-linear
    between; when no lead has weight (every lead looks like noise) the leads weigh equally, as before.
    """
    if e.shape[1] > 4 * edge + block:
        e = e[:, edge : e.shape[1] - edge]
    typical = _median(_block_max(e, block)[0], axis=1).astype(np.float64)
    # The (upper) median energy from at most EVIDENCE_SAMPLES evenly spaced samples, in linear time: on all samples
    # it was a fifth of a 10 s record's detection time, and a 1 h record's cost as much as its QRS filter.
    sample = e[:, :: -(-e.shape[1] // EVIDENCE_SAMPLES)]
    half = sample.shape[1] // 2
    med = np.partition(sample, half, axis=1)[:, half]
    # A lead that is mostly exact zeros (padding) has a median of 0: its evidence is capped at 1e9, not infinite.
    evidence = typical / np.maximum(med, typical * 1e-9 + 1e-300)
    ramp = (np.log(np.maximum(evidence, 1.0)) - _LOG_EVIDENCE_LOW) / _LOG_EVIDENCE_SPAN
    weight = np.minimum(np.maximum(ramp, 0.0), 1.0) * keep
    return weight if weight.any() else keep.astype(np.float64)


def _select(env: np.ndarray, fs_d: float, cfg: BeatConfig) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Peaks of the envelope (decimated indices) and their heights, with adaptive threshold + search-back, and the
    edge candidates (first, last; -1 for none) whose R `_refine` must find inside the record."""
    distance = max(1, int(np.floor(cfg.refractory_s * fs_d)))
    # Zero padding lets a maximum on the first or last sample (a QRS cut by a record edge) count as a peak.
    padded = np.concatenate(([0.0], env, [0.0]))
    cand, _ = sps.find_peaks(padded, distance=distance)
    h = padded[cand]  # all heights count: the envelope is >= 0
    cand -= 1
    # An edge candidate: the first peak when the envelope does not rise to it from below half its height inside the
    # record, the last when it does not fall below half after it (a settling transient, a QRS cut by the edge, or
    # a beat within ~65 ms of it). `edge_rule="start"` (processor format < 3) drops the start one and keeps the end
    # one; "symmetric" keeps both for `_refine`, which keeps a beat only if its R is a peak inside the record.
    start_edge = bool(cand.size) and (cand[0] == 0 or env[: cand[0]].min() >= 0.5 * h[0])
    if start_edge and cfg.edge_rule == "start":
        cand, h, start_edge = cand[1:], h[1:], False
    end_edge = (
        cfg.edge_rule == "symmetric"
        and bool(cand.size)
        and (cand[-1] == env.size - 1 or env[cand[-1] + 1 :].min() >= 0.5 * h[-1])
    )
    edges = (int(cand[0]) if start_edge else -1, int(cand[-1]) if end_edge else -1)
    if cand.size == 0:
        return _EMPTY, np.zeros(0), edges
    bmax, centres = _block_max(env, max(1, round(cfg.level_block_s * fs_d)))
    level = _rolling_median(bmax, cfg.level_blocks)
    level_at = np.interp(cand, centres, level)
    accepted = h >= cfg.threshold * level_at
    peaks = cand[accepted]
    if peaks.size >= 3:
        # Search-back: candidates inside unusually long RR gaps, at half the threshold, best one per gap.
        rr = peaks[1:] - peaks[:-1]
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
    return peaks[keep], heights[keep], edges


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
    rr = (s[1:] - s[:-1]).astype(np.float64)
    rr_local = _rolling_median(rr, 9)
    w = peaks[weak]
    j = np.searchsorted(s, w)
    before = np.where(j > 0, w - s[np.maximum(j - 1, 0)], np.inf)
    after = np.where(j < s.size, s[np.minimum(j, s.size - 1)] - w, np.inf)
    ref_rr = np.interp(w, (s[:-1] + s[1:]) / 2, rr_local)
    keep[weak[np.minimum(before, after) < cfg.early_rr * ref_rr]] = False
    return keep


def _refine(
    x: np.ndarray, coarse: np.ndarray, strength: np.ndarray, fs: float, cfg: BeatConfig, edge: np.ndarray | None = None
) -> np.ndarray:
    """Move coarse peak positions (full-rate samples) to the R extreme, one location for all leads.

    Peaks marked in `edge` (edge candidates of `_select`) are kept only where `_peak_inside` finds their R."""
    n = x.shape[1]
    w = max(1, round(cfg.refine_s * fs))
    wide = 2 * w  # baseline/polarity statistics use a window twice as wide
    offs = np.arange(-wide, wide + 1)
    idx = _clip(coarse[:, None] + offs[None, :], 0, n - 1)  # [P, 4w+1]
    win = x[:, idx]  # [L, P, 4w+1]
    # Baseline: the mean of the wide window. The QRS pulls it towards the dominant deflection, which only
    # shrinks that side's margin; the polarity decision below stays the same and costs one reduction.
    base = np.add.reduce(win, axis=2, keepdims=True) / win.shape[2]
    core = win[:, :, wide - w : wide + w + 1] - base  # ±refine_s
    pos = np.maximum.reduce(core, axis=2)
    neg = -np.minimum.reduce(core, axis=2)
    # Per lead, over all beats (one median call): dominance of the positive deflection, QRS size, range. Edge beats
    # (windows cut by the record, maybe no QRS) take no part when there are others.
    stats = np.stack([pos - neg, np.maximum(pos, neg), pos + neg])
    if edge is not None and edge.any() and not edge.all():
        stats = stats[:, :, ~edge]
    diff, size, span = _median(stats, axis=2)
    # A lead whose typical QRS is a vanishing part of the largest deflection adds nothing (as in `_envelope`):
    # dividing by a near-subnormal size overflowed float32 (a lone spike over ~1e-38 noise). No lead has one:
    # the raw deflections decide.
    floor = max(float(np.abs(core).max(initial=0.0)) * 1e-12, float(np.finfo(np.float32).tiny))
    usable = size > floor
    size = np.where(usable, size, np.inf) if usable.any() else np.ones_like(size)
    weight = np.abs(diff) / np.maximum(span, 1e-12)  # ~1 for a monophasic lead, ~0 for a biphasic one
    if not (weight > 0.05).any():  # every lead biphasic: use the absolute deflection
        score = (np.abs(core) / size[:, None, None]).sum(axis=0)
    else:
        sign_w = np.sign(diff) * weight / size
        score = np.einsum("l,lpt->pt", sign_w.astype(core.dtype), core)
    # A beat whose combined deflection is clearly opposite to the usual one (e.g. a ventricular ectopic
    # with inverted QRS) takes its extreme on that side; otherwise the usual polarity keeps all beats aligned.
    top, bottom = np.maximum.reduce(score, axis=1), -np.minimum.reduce(score, axis=1)
    flip = bottom > 1.5 * np.maximum(top, 0)
    refined = coarse + np.where(flip, score.argmin(axis=1), score.argmax(axis=1)) - w
    if edge is not None and edge.any():
        inside, at = _peak_inside(score[edge], coarse[edge] - w, n)
        refined[edge] = at
        if not inside.all():
            keep = ~edge
            keep[edge] = inside
            refined, strength = refined[keep], strength[keep]
    refined = _clip(refined, 0, n - 1).astype(np.int64, copy=False)
    # Enforce the refractory distance at full rate: the stronger detection wins. Coarse peaks are sorted
    # and at least a refractory distance apart, so a sort is rarely needed; the result is sorted and unique.
    gaps = refined[1:] - refined[:-1]
    if (gaps < 0).any():
        order = np.argsort(refined, kind="stable")
        refined, strength = refined[order], strength[order]
        gaps = refined[1:] - refined[:-1]
    if (gaps < _refractory_samples(cfg.refractory_s, fs)).any():
        sparse = np.zeros(n + 2)
        np.maximum.at(sparse, refined + 1, strength + 1.0)
        keep, _ = sps.find_peaks(sparse, distance=_refractory_samples(cfg.refractory_s, fs))
        refined = (keep - 1).astype(np.int64)
    return refined


def _peak_inside(score: np.ndarray, first: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For edge beats: whether the usual-polarity R is a peak inside the record, and where it is.

    `score [P, T]` is the beats' combined deflection at samples `first + arange(T)` (positions outside `0..n-1`
    repeat the edge sample). The R is the maximum over the samples inside the record; it is a peak when the
    deflection falls by `EDGE_FALL` of its range in the window on both sides of it, inside the record. A QRS
    cut before its R rises to the edge (its R is not in the record) and a settling transient decays from it; the
    polarity flip of `_refine` is not used: with a cut window it took a Q wave 30 ms before the cut for the R.
    """
    pos = first[:, None] + np.arange(score.shape[1])[None, :]
    valid = (pos >= 0) & (pos < n)
    j = np.where(valid, score, -np.inf).argmax(axis=1)
    top = np.take_along_axis(score, j[:, None], axis=1)
    floor = np.where(valid, score, np.inf).min(axis=1, keepdims=True)
    low = valid & (score < top - EDGE_FALL * (top - floor))
    before = np.arange(score.shape[1])[None, :] < j[:, None]
    inside = (low & before).any(axis=1) & (low & ~before).any(axis=1)
    return inside, first + j


def _drop_inconsistent(
    peaks: np.ndarray, heights: np.ndarray, filtered: np.ndarray, fs_d: float
) -> tuple[np.ndarray, np.ndarray]:
    """Robust mode: drop peaks unlike the record's typical beat whose removal leaves a normal RR.

    Each peak's window (±`TEMPLATE_S`) of the band-passed derivative, all leads together, is correlated
    with the median window over all peaks. A peak with correlation below `TEMPLATE_CORR` whose neighbours
    are less than `TEMPLATE_GAP_RR` × the median RR apart is an artefact squeezed between two beats (a
    real premature beat leaves its neighbours about two RR apart, so it stays). The worst is dropped
    first, at most one per neighbourhood and pass, for up to three passes.
    """
    corr = None  # computed on the first pass that finds a squeezed peak: most records have none
    for _ in range(3):
        if peaks.size < 5:
            break
        # Squeezed: the two neighbours are closer than TEMPLATE_GAP_RR x the median RR (ends never are).
        squeezed = np.zeros(peaks.size, dtype=bool)
        squeezed[1:-1] = peaks[2:] - peaks[:-2] < TEMPLATE_GAP_RR * _median(peaks[1:] - peaks[:-1])
        if not squeezed.any():
            break
        if corr is None:
            corr = _template_corr(peaks, filtered, fs_d)
        bad = np.flatnonzero(squeezed & (corr < TEMPLATE_CORR))
        if bad.size == 0:
            break
        keep = np.ones(peaks.size, dtype=bool)
        blocked = np.zeros(peaks.size + 1, dtype=bool)  # one spare slot: blocking i + 1 past the end
        for i in bad[np.argsort(corr[bad], kind="stable")]:  # worst first; a few candidates at most
            if not blocked[i]:
                keep[i] = False
                blocked[max(0, i - 1) : i + 2] = True
        peaks, heights, corr = peaks[keep], heights[keep], corr[keep]
    return peaks, heights


def _template_corr(peaks: np.ndarray, filtered: np.ndarray, fs_d: float) -> np.ndarray:
    """Correlation of each peak's window (±`TEMPLATE_S`, all leads) of `filtered` with the median window."""
    w = max(2, round(TEMPLATE_S * fs_d))
    idx = _clip(peaks[:, None] + np.arange(-w, w + 1)[None, :], 0, filtered.shape[1] - 1)
    wins = filtered[:, idx].transpose(1, 0, 2).reshape(peaks.size, -1)  # [P, L * (2w + 1)]
    wins -= (np.add.reduce(wins, axis=1) / wins.shape[1])[:, None]
    template = _median(wins, axis=0)
    norms = np.sqrt(np.einsum("ij,ij->i", wins, wins)) * np.sqrt(template @ template)
    return wins @ template / (norms + 1e-12)


def _valid_leads(signal: np.ndarray, fs: float, lead_mask: np.ndarray | None) -> np.ndarray:
    """The leads of `signal` to search (`[L', n]`, possibly empty), after the input checks of `detect_rpeaks`."""
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
        return x[:0]
    lo, hi = x.min(axis=1), x.max(axis=1)  # NaN and inf propagate into these
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise EcgQualityError(None, "signal holds NaN/inf samples in a valid lead; run ecglang.signal.preprocess first")
    if max(-lo.min(), hi.max()) > _MAX_ABS:
        raise EcgQualityError(None, f"signal amplitude above {_MAX_ABS:g}: not a voltage (mV or ADC units)")
    varying = hi > lo  # a constant lead carries no beat
    return x if varying.all() else x[varying]


def detect_rpeaks(
    signal: np.ndarray,
    fs: float,
    lead_mask: np.ndarray | None = None,
    cfg: BeatConfig | None = None,
    *,
    mode: DetectMode = "fast",
) -> np.ndarray:
    """R-peak sample indices (int64, sorted, unique) from all valid leads of `signal` (`[L, n]` or `[n]`).

    `mode="fast"` (default) is steps 1-8 of the module docstring; `mode="robust"` adds a beat-consistency
    check for noisy recordings (a few % more time: its beat templates are built only when a peak sits
    between close neighbours; measured by benchmarks/bench_rpeaks_noisy.py).
    Leads with `lead_mask` False or with a constant signal are ignored. Returns an empty array when no
    beat is found (a flat or very short signal). Raises `EcgQualityError` for NaN/inf or absurd
    amplitudes in a valid lead (run `preprocess` first) or `fs` below 50 Hz, `ConfigError` for a
    non-positive `fs` or an unknown `mode`.
    """
    if mode not in DETECT_MODES:
        raise ConfigError(f"detection mode must be one of {DETECT_MODES}, got {mode!r}")
    cfg = cfg or default_config()
    x = _valid_leads(signal, fs, lead_mask)
    if x.shape[0] == 0 or x.shape[1] < 2:
        return _EMPTY.copy()
    q = max(1, round(fs / cfg.detect_fs))
    fs_d = fs / q
    env, filtered = _envelope(_decimate(x, q), fs_d, cfg, keep_filtered=mode == "robust")
    if env is None:
        return _EMPTY.copy()
    peaks_d, strength, edges = _select(env, fs_d, cfg)
    if filtered is not None:
        peaks_d, strength = _drop_inconsistent(peaks_d, strength, filtered, fs_d)
    if peaks_d.size == 0:
        return _EMPTY.copy()
    coarse = peaks_d * q + (q - 1) // 2  # centre of the averaged block
    edge = (peaks_d == edges[0]) | (peaks_d == edges[1])
    return _refine(x.astype(np.float32, copy=False), coarse, strength, fs, cfg, edge)


def read_chunk(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Samples `lo:hi` (last axis) of `x` (`[n]` or `[L, n]`) as float32.

    A C-ordered `numpy.memmap` opened on a file (not a slice of one) is read with file I/O: reading through
    the mapping would leave the record's pages in this process's resident set until the kernel reclaims
    them (a 24 h record's whole file, in the RSS), while file reads keep the memory bounded by the chunk.
    """
    if not (
        isinstance(x, np.memmap)
        and isinstance(x.base, mmap.mmap)
        and x.filename
        and x.flags.c_contiguous
        and x.ndim <= 2
    ):
        return np.asarray(x[..., lo:hi], dtype=np.float32)
    n, item = x.shape[-1], x.dtype.itemsize
    out = np.empty((1 if x.ndim == 1 else x.shape[0], hi - lo), dtype=np.float32)
    with open(x.filename, "rb") as f:
        for row in range(out.shape[0]):  # one read per lead
            f.seek(x.offset + (row * n + lo) * item)
            out[row] = np.fromfile(f, dtype=x.dtype, count=hi - lo)
    return out[0] if x.ndim == 1 else out


def detect_rpeaks_long(
    signal: np.ndarray,
    fs: float,
    lead_mask: np.ndarray | None = None,
    cfg: BeatConfig | None = None,
    *,
    mode: DetectMode = "fast",
    chunk_s: float = 60.0,
    overlap_s: float = 10.0,
) -> np.ndarray:
    """`detect_rpeaks` over a long record in chunks, in memory bounded by the chunk (not the record) length.

    Chunks of `chunk_s` seconds overlap by `overlap_s` on each side; a chunk's peaks are kept only in its
    own core (from the middle of the overlap with the previous chunk to the middle of the next one), so
    every peak comes from a chunk that saw at least `overlap_s / 2` of context around it. `signal` may be a
    `numpy.memmap`: only one chunk (converted to float32) is in memory at a time (`read_chunk`). The same beats as one
    call on the whole record (tested on 1 h of MIT-BIH 100: every beat found by both; a few positions move
    by one sample, since the refinement's per-lead polarity and scale come from each chunk's beats).
    """
    if not (chunk_s > 0 and 0 <= overlap_s < chunk_s):
        raise ConfigError(f"need chunk_s > overlap_s >= 0, got chunk_s={chunk_s}, overlap_s={overlap_s}")
    x = signal if isinstance(signal, np.memmap) else np.asarray(signal)
    n = x.shape[-1]
    step = round(chunk_s * fs)
    ov = round(overlap_s * fs)
    if n <= step + 2 * ov:
        return detect_rpeaks(x, fs, lead_mask, cfg, mode=mode)
    found = []
    for start in range(0, n, step):
        lo, hi = max(0, start - ov), min(n, start + step + ov)
        part = read_chunk(x, lo, hi)
        peaks = detect_rpeaks(part, fs, lead_mask, cfg, mode=mode) + lo
        core_lo = start - ov // 2 if start > 0 else 0
        core_hi = start + step - ov // 2 if start + step < n else n
        # Cores tile the record: [start - ov/2, start + step - ov/2) for every chunk but the ends.
        found.append(peaks[(peaks >= max(core_lo, 0)) & (peaks < core_hi)])
    peaks = np.concatenate(found)
    # Two cores meet mid-overlap: a beat seen by both (a hair apart) is kept once.
    distance = _refractory_samples((cfg or default_config()).refractory_s, fs)
    keep = np.concatenate(([True], np.diff(peaks) >= distance))
    return peaks[keep].astype(np.int64)
