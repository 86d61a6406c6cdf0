"""`BeatTokens.rr` is (previous RR, next RR) in seconds, on an irregular rhythm where the two columns differ
(a regular one cannot tell them apart). Expected intervals come from the R times the signal was built with."""

from __future__ import annotations

import numpy as np

from ecglang.beats.tokenize import BeatConfig, tokenize_array

FS = 500.0
RTIMES = np.array([0.5, 1.3, 1.8, 2.9, 3.6, 4.9, 5.5, 6.7, 7.4, 8.8])  # RR 0.8 0.5 1.1 0.7 1.3 0.6 1.2 0.7 1.4


def _ecg(rtimes: np.ndarray, duration: float = 10.0) -> np.ndarray:
    """12 leads: a narrow R wave at each time and a broad T wave 0.3 s later, lead gains 0.5-1.5."""
    t = np.arange(round(duration * FS)) / FS
    r = np.exp(-0.5 * ((t[None, :] - rtimes[:, None]) / 0.012) ** 2).sum(0)
    tw = 0.25 * np.exp(-0.5 * ((t[None, :] - rtimes[:, None] - 0.3) / 0.05) ** 2).sum(0)
    return (np.linspace(0.5, 1.5, 12)[:, None] * (r + tw)[None, :]).astype(np.float32)


def test_rr_columns_are_previous_then_next_interval_on_an_irregular_rhythm() -> None:
    tokens = tokenize_array(_ecg(RTIMES), FS)
    n = tokens.n_beats
    assert n == RTIMES.size and np.abs(tokens.rpeaks / FS - RTIMES).max() <= 0.006
    rr = np.diff(RTIMES)
    # beat i's previous interval is R_i - R_{i-1}; its next one is R_{i+1} - R_i
    np.testing.assert_allclose(tokens.rr[1:n, 0], rr, atol=0.006, err_msg="column 0 is the previous RR")
    np.testing.assert_allclose(tokens.rr[: n - 1, 1], rr, atol=0.006, err_msg="column 1 is the next RR")
    # hand-picked beat 3 (R at 2.9 s): 1.1 s since the one before, 0.7 s to the one after
    np.testing.assert_allclose(tokens.rr[3], [1.1, 0.7], atol=0.006)
    # the first beat has no previous beat and the last no next one: each reuses its only interval
    np.testing.assert_allclose(tokens.rr[0], [0.8, 0.8], atol=0.006)
    np.testing.assert_allclose(tokens.rr[n - 1], [1.4, 1.4], atol=0.006)


def test_the_last_beat_kept_by_max_beats_keeps_its_true_next_interval() -> None:
    # Only the first 5 beats are kept; the 5th (R at 3.6 s) is followed by a beat in the record, 1.3 s later,
    # so its next RR is that interval, not the edge rule's copy of its previous one (0.7 s).
    tokens = tokenize_array(_ecg(RTIMES), FS, cfg=BeatConfig(max_beats=5))
    assert tokens.n_beats == 5 and tokens.n_detected == RTIMES.size
    np.testing.assert_allclose(tokens.rr[4], [0.7, 1.3], atol=0.006)
