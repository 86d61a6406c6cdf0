"""Records shorter than the model's window (audit 20, finding 2): a 3 s strip was zero-padded to 10 s and scored
with no word (a 121 bpm strip topped "sinus bradycardia"). `ZeroShotResult.short_records()` names them, as
`long_records()` names the records longer than the window; the scores themselves are unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.record.io import load_ecg
from ecglang.scores.classifier import ZeroShotResult

LABELS = ["sinus tachycardia", "sinus bradycardia"]


@pytest.fixture(scope="module")
def strip(records: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3 s of a real PTB-XL record, as an NPZ export (rate and lead names stored)."""
    ecg = load_ecg(records[0])
    path = tmp_path_factory.mktemp("short") / "strip_3s.npz"
    np.savez(path, signal=ecg.signal[:, : int(3 * ecg.fs)], fs=ecg.fs, leads=np.array(ecg.leads))
    return path


def test_short_records_are_named_and_their_scores_unchanged(clf, records, strip) -> None:
    result = clf([records[0], strip], labels=LABELS, progress=False)
    assert result.window == (10.0, "start")
    assert result.durations["strip_3s"] == pytest.approx(3.0)
    assert result.short_records() == ["strip_3s"]  # the 10 s record is neither short nor long
    assert result.long_records() == []
    alone = clf([strip], labels=LABELS, progress=False)  # the note changes nothing in the scores
    np.testing.assert_allclose(alone.scores.loc["strip_3s"], result.scores.loc["strip_3s"], atol=1e-6)


def test_short_arrays_are_named_too(clf, signal) -> None:
    result = clf.score_arrays([signal, signal[:, :2500]], fs=500, labels=LABELS, progress=False)
    assert result.short_records() == ["array1"] and result.long_records() == []


def test_without_a_window_no_record_is_called_short() -> None:
    scores = pd.DataFrame([[0.1]], index=pd.Index(["a"], name="record"), columns=["x"])
    result = ZeroShotResult(scores, {}, [], "cosine", durations=pd.Series([3.0], index=["a"]), window=None)
    assert result.short_records() == []


def test_a_record_a_few_samples_short_is_not_called_short() -> None:
    # A 9.998 s export is padded by one sample: nothing a note should warn about; 9.4 s is.
    scores = pd.DataFrame([[0.1], [0.2]], index=pd.Index(["a", "b"], name="record"), columns=["x"])
    seconds = pd.Series([9.998, 9.4], index=["a", "b"])
    result = ZeroShotResult(scores, {}, [], "cosine", durations=seconds, window=(10.0, "start"))
    assert result.short_records() == ["b"]
