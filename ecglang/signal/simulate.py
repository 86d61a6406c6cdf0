"""Simulated 12-lead ECGs with a known answer, for the demo and for volume in benchmarks.

neurokit2's multi-lead simulator gives realistic morphology at a controlled heart rate, so the right
rate-class label (bradycardia / normal / tachycardia) is known by construction.
"""

from __future__ import annotations

import numpy as np

from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS


def simulate_ecg(heart_rate: float, duration: float = 10.0, fs: int = 500, seed: int = 0, noise: float = 0.01) -> Ecg:
    """A simulated 12-lead `Ecg` (mV) at `heart_rate` bpm."""
    try:
        import neurokit2 as nk
    except ImportError as exc:  # optional dependency: the demo extra installs it
        raise ImportError("simulated ECGs need neurokit2: pip install neurokit2 (the 'demo' extra)") from exc
    frame = nk.ecg_simulate(
        duration=duration,
        sampling_rate=fs,
        heart_rate=heart_rate,
        method="multileads",
        noise=noise,
        random_state=seed,
    )
    signal = frame[list(CANONICAL_LEADS)].to_numpy(dtype=np.float32).T
    return Ecg(
        signal=signal,
        fs=fs,
        record_id=f"sim_{heart_rate:g}bpm_s{seed}",
        metadata={
            "format": "simulated",
            "source": "neurokit2.ecg_simulate(method='multileads')",
            "heart_rate": float(heart_rate),
        },
    )
