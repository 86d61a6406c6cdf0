"""Scoring R-peak detectors on noisy data: beat F1, noise at a chosen SNR, simulated records.

Used by the noisy benchmark (`benchmarks/bench_rpeaks_noisy.py`), the tests and the CNN training script.
Noise and simulation need neurokit2 (the `dev`/`demo` extra), imported on first use.

Noise (`add_noise`): the sum of four neurokit2 `signal_distort` components, each scaled to a fixed
share of the noise power: baseline wander (0.3 Hz random walk, 35 %), muscle artefact (broadband
Laplace noise, 30 %), electrode motion (5 Hz noise plus transient bursts, 30 %) and 50 Hz powerline
(5 %). The total is scaled so that `10 log10(var(signal) / var(noise)) = snr_db` per lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_SHARES = {"baseline": 0.35, "muscle": 0.30, "motion": 0.30, "powerline": 0.05}
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")  # MIT-BIH beat annotation symbols


def _neurokit():
    try:
        import neurokit2 as nk
    except ImportError as exc:
        raise ImportError("noise and simulated ECGs need neurokit2: pip install neurokit2 (the 'dev' extra)") from exc
    return nk


def beat_f1(
    reference: np.ndarray, detected: np.ndarray, tolerance: float, n: int | None = None, edge: float = 0.0
) -> tuple[int, int, int]:
    """(true positives, reference count, detection count) with one-to-one matching within `tolerance` samples.

    With `n` (the segment length) and `edge` (samples), beats of either list closer than `edge` to the
    segment's start or end are left out before matching. Sum the counts over segments, then call `f1`.
    """
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    det = np.sort(np.asarray(detected, dtype=np.int64))
    if n is not None and edge > 0:
        ref = ref[(ref >= edge) & (ref < n - edge)]
        det = det[(det >= edge) & (det < n - edge)]
    if ref.size == 0 or det.size == 0:
        return 0, int(ref.size), int(det.size)
    # Greedy one-to-one matching in time order: each reference beat takes the nearest unused detection.
    j = np.searchsorted(det, ref)
    tp, used = 0, np.zeros(det.size, dtype=bool)
    for r, k in zip(ref, j, strict=True):
        best, best_d = -1, tolerance + 1
        for c in (k - 1, k):
            if 0 <= c < det.size and not used[c] and abs(int(det[c]) - int(r)) < best_d:
                best, best_d = c, abs(int(det[c]) - int(r))
        if best >= 0 and best_d <= tolerance:
            used[best] = True
            tp += 1
    return tp, int(ref.size), int(det.size)


def f1(tp: int, n_ref: int, n_det: int) -> float:
    """F1 = 2 TP / (reference + detected); 1.0 when both are empty."""
    return 1.0 if n_ref + n_det == 0 else 2.0 * tp / (n_ref + n_det)


def noise_components(n: int, fs: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The four noise components of `add_noise`, each of length `n` and unit variance."""
    nk = _neurokit()
    zeros = np.zeros(n)
    seed = lambda: int(rng.integers(2**31))  # noqa: E731
    kw = {"sampling_rate": round(fs), "silent": True}
    parts = {
        "baseline": nk.signal_distort(zeros, noise_amplitude=1.0, noise_frequency=0.3, random_state=seed(), **kw),
        "muscle": nk.signal_distort(
            zeros, noise_amplitude=1.0, noise_frequency=min(150.0, fs / 2.5), random_state=seed(), **kw
        ),
        "motion": nk.signal_distort(
            zeros,
            noise_amplitude=1.0,
            noise_frequency=5.0,
            artifacts_amplitude=3.0,
            artifacts_frequency=3.0,
            artifacts_number=max(1, round(n / fs / 4)),
            random_state=seed(),
            **kw,
        ),
        "powerline": nk.signal_distort(zeros, powerline_amplitude=1.0, powerline_frequency=50, **kw),
    }
    out = {}
    for name, v in parts.items():
        v = np.asarray(v, dtype=np.float64)
        v = v - v.mean()
        sd = v.std()
        out[name] = v / sd if sd > 0 else v
    return out


def add_noise(signal: np.ndarray, fs: float, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`signal` (`[n]` or `[L, n]`) plus independent realistic noise per lead at `snr_db` (float32)."""
    x = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    out = np.empty_like(x)
    for lead, row in enumerate(x):
        parts = noise_components(row.size, fs, rng)
        noise = sum(np.sqrt(NOISE_SHARES[k]) * v for k, v in parts.items())
        noise *= np.sqrt(row.var() / 10 ** (snr_db / 10)) / max(noise.std(), 1e-12)
        out[lead] = row + noise
    out = out.astype(np.float32)
    return out[0] if np.ndim(signal) == 1 else out


@dataclass
class SimulatedRecord:
    """A simulated single-lead ECG with its true R-peak indices."""

    signal: np.ndarray  # float32 [n]
    fs: float
    rpeaks: np.ndarray  # int64
    heart_rate: float


def simulate_record(heart_rate: float, duration: float, fs: float, seed: int) -> SimulatedRecord:
    """neurokit2 `ecg_simulate` (ECGSYN, lead II-like) at `heart_rate` bpm with some RR variability.

    ECGSYN does not return its beat times; the reference is each R wave of the noise-free signal: its
    maxima at least 0.16 s apart with a prominence of at least 60 % of the 90th-percentile prominence
    (no detector involved; ECGSYN's T waves reach about half the R prominence).
    """
    nk = _neurokit()
    from scipy.signal import find_peaks

    sig = nk.ecg_simulate(
        duration=duration, sampling_rate=int(fs), heart_rate=heart_rate, heart_rate_std=max(1.0, 0.05 * heart_rate),
        noise=0.0, random_state=seed, method="ecgsyn",
    )  # fmt: skip
    sig = np.asarray(sig, dtype=np.float64)
    cand, props = find_peaks(sig, prominence=0.1 * float(np.ptp(sig)), distance=max(1, int(0.16 * fs)))
    prom = props["prominences"]
    ref = cand[prom >= 0.6 * np.percentile(prom, 90)] if cand.size else cand
    return SimulatedRecord(sig.astype(np.float32), float(fs), ref.astype(np.int64), float(heart_rate))


def mitbih_segments(
    record_path: str, start_min: float, end_min: float, seg_s: float = 10.0, channel: str = "MLII"
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Consecutive `seg_s` single-lead segments of an MIT-BIH record between two minutes, each with its
    reference beats (segment-relative indices): `([(signal float32, rpeaks int64), ...], fs)`."""
    import wfdb  # a dependency of the package; only this helper needs it here

    rec = wfdb.rdrecord(record_path)
    ann = wfdb.rdann(record_path, "atr")
    ref = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS], dtype=np.int64)
    fs = float(rec.fs)
    x = rec.p_signal[:, rec.sig_name.index(channel)].astype(np.float32)
    n = round(seg_s * fs)
    out = []
    for a in range(round(start_min * 60 * fs), round(end_min * 60 * fs) - n + 1, n):
        out.append((x[a : a + n].copy(), ref[(ref >= a) & (ref < a + n)] - a))
    return out, fs
