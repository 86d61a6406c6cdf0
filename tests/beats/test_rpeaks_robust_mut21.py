"""`detect_rpeaks(mode="robust")` differs from `mode="fast"` by its beat-consistency step: a peak unlike the
record's typical beat, squeezed between two beats about one RR apart, is an artefact and is dropped; a real
premature beat (its neighbours about two RR apart) stays. Synthetic 12-lead record with known beat times."""

from __future__ import annotations

import numpy as np

from ecglang.beats.detect import detect_rpeaks

FS = 500.0
ARTEFACT = 3.1  # s: a sharp biphasic spike half-way between the beats at 2.6 s and 3.6 s
PVC = 7.2  # s: a wide premature beat; the next sinus beat comes 2 RR after the one before it (compensatory pause)
SINUS = np.r_[np.arange(0.6, 6.7, 1.0), 8.6, 9.6, 10.6, 11.6]
TOL = 0.075  # s, the tolerance of the project's beat F1


def _record() -> np.ndarray:
    t = np.arange(round(12.0 * FS)) / FS

    def bump(at: np.ndarray | float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((t[None, :] - np.atleast_1d(at)[:, None]) / width) ** 2).sum(0)

    x = bump(SINUS, 0.012) - 0.15 * bump(SINUS - 0.03, 0.01) + 0.25 * bump(SINUS + 0.3, 0.05)  # Q, R, T
    x += bump(ARTEFACT, 0.006) - bump(ARTEFACT + 0.018, 0.006)  # artefact: one spike, no T wave
    x += -bump(PVC, 0.03) + 0.6 * bump(PVC + 0.05, 0.03)  # wide ventricular complex
    return (np.linspace(0.5, 1.5, 12)[:, None] * x[None, :]).astype(np.float32)


def _near(found: np.ndarray, at: float) -> int:
    return int((np.abs(found - at) <= TOL).sum())


def test_robust_mode_drops_a_squeezed_artefact_and_keeps_a_premature_beat() -> None:
    x = _record()
    fast, robust = detect_rpeaks(x, FS, mode="fast") / FS, detect_rpeaks(x, FS, mode="robust") / FS
    truth = np.sort(np.r_[SINUS, PVC])
    # fast mode takes the artefact for a beat (so this record shows what the robust step is for) ...
    assert _near(fast, ARTEFACT) == 1, fast
    # ... robust mode finds every true beat once, the premature one included, and nothing else
    assert robust.size == truth.size, robust
    assert all(_near(robust, b) == 1 for b in truth), robust
    assert _near(robust, ARTEFACT) == 0
