"""Building an `Ecg` from an array: a wrong shape is a typed error (`EcgReadError`, still a `ValueError`) with a
transpose hint for `[n_samples, 12]`, as `Ecg(x, 0)` already was; `Ecg.from_array` places named leads (any order,
any subset) in the canonical rows. Before: `Ecg(x.T, fs)` raised a plain `ValueError` that pointed to an internal
helper, and a 6-lead array had no public way in."""

from __future__ import annotations

import numpy as np
import pytest

from ecglang import Ecg, EcgLangError
from ecglang.errors import EcgReadError
from ecglang.record.leads import LEAD_INDEX

X = np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32)  # [12 leads, 10 s at 500 Hz], mV


def test_a_transposed_array_is_a_typed_error_saying_to_transpose() -> None:
    with pytest.raises(EcgReadError) as raised:
        Ecg(X.T, 500)
    message = str(raised.value)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, EcgLangError)  # old `except` still work
    assert message.startswith("Ecg.signal must be [12, n_samples] in canonical lead order, got (5000, 12)"), message
    assert "looks transposed ([n_samples, 12]): pass x.T" in message


def test_other_shapes_name_the_record_and_point_to_from_array() -> None:
    with pytest.raises(EcgReadError) as raised:
        Ecg(X[:6], 500, record_id="six")
    message = str(raised.value)
    assert message.startswith("six: Ecg.signal must be [12, n_samples]") and "got (6, 5000)" in message
    assert "Ecg.from_array(x, fs, leads=[...])" in message and "transposed" not in message
    with pytest.raises(EcgReadError, match=r"got \(5000,\)"):
        Ecg(X[0], 500)
    with pytest.raises(EcgReadError, match=r"Ecg.lead_mask must have shape \(12,\), got \(6,\)"):
        Ecg(X, 500, lead_mask=np.ones(6, bool))
    with pytest.raises(EcgReadError, match=r"Ecg.fs must be a number of Hz, got '500'"):
        Ecg(X, "500")


def test_from_array_places_named_leads_in_canonical_rows() -> None:
    names = ["V1", "II", "avr", "I", "V6", "aVF"]  # any order, any spelling the readers accept
    rows = X[:6]
    ecg = Ecg.from_array(rows, 500, leads=names, record_id="six")
    assert ecg.signal.shape == (12, 5000) and ecg.record_id == "six" and ecg.fs == 500.0
    assert ecg.present_leads == ["I", "II", "aVR", "aVF", "V1", "V6"]
    for row, name in enumerate(["V1", "II", "aVR", "I", "V6", "aVF"]):
        assert np.array_equal(ecg.signal[LEAD_INDEX[name]], rows[row]), name
    assert not ecg.signal[~ecg.lead_mask].any()  # the leads not given hold no data
    assert ecg.metadata["source_leads"] == names
    assert (
        Ecg.from_array(rows, 500, leads="V1, II,avr I V6 aVF", record_id="six") == ecg
    )  # a string of names, as the CLI's --leads
    assert Ecg.from_array(X, 500) == Ecg(X, 500)  # no leads: the 12 in canonical order


def test_from_array_errors_are_typed_and_say_what_to_do() -> None:
    with pytest.raises(EcgReadError, match=r"looks transposed \(\[n_samples, 3\]\): pass x.T"):
        Ecg.from_array(X[:3].T, 500, leads=["I", "II", "V1"])
    with pytest.raises(EcgReadError, match=r"unknown lead name\(s\) \['V13'\]"):
        Ecg.from_array(X[:2], 500, leads=["I", "V13"])
    with pytest.raises(EcgReadError, match="invalid sampling rate 0 Hz"):
        Ecg.from_array(X[:2], 0, leads=["I", "II"])
    with pytest.raises(EcgReadError, match=r"signal of shape \(3, 5000\) for 2 lead names \['I', 'II'\]; give one row"):
        Ecg.from_array(X[:3], 500, leads=["I", "II"])
