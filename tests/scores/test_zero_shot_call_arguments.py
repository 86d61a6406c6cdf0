"""Arguments of the classifier and of its calls, found by an audit of the Python API (audit 19): a model name or
a processor of another type failed with an untyped AttributeError (one only at call time); a missing or bad `fs`
or `leads`, which apply to every array of a call, came back as failed records and an empty table; `score_arrays`
raised raw numpy errors for `fs=None`; a pandas DataFrame was read as its column names (file paths), a nested
list as numbers; and labels given as a set came out in another column order in every process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ecglang.embeddings.sources import expand_inputs
from ecglang.encoders.processing import EcgLangProcessor
from ecglang.errors import ConfigError, PromptError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.scores.classifier import ZeroShotClassifier

LABELS = ["atrial fibrillation", "sinus rhythm", "left bundle branch block"]


# ----------------------------------------------------------------------------------------- F01: the constructor
def test_a_checkpoint_name_or_folder_loads_the_model_as_a_pipeline_does(model, model_dir, clf, records) -> None:
    reference = clf(records, labels=LABELS, progress=False).scores
    for given in (str(model_dir), model_dir):
        named = ZeroShotClassifier(given, knowledge=None)  # was AttributeError: 'str' object has no attribute ...
        assert type(named.model) is type(model)
        got = named(records, labels=LABELS, progress=False).scores
        np.testing.assert_allclose(got.to_numpy(), reference.to_numpy(), atol=1e-5)


@pytest.mark.parametrize("bad", [None, 3, {"model": "x"}, torch.nn.Linear(2, 2)])
def test_a_model_of_another_type_is_refused_up_front(bad) -> None:
    with pytest.raises(ConfigError, match=rf"model must be an EcgLangModel.*got {type(bad).__name__}"):
        ZeroShotClassifier(bad, knowledge=None)


def test_an_ecglang_processor_is_unwrapped_and_another_object_refused(model, clf, records) -> None:
    both = EcgLangProcessor.from_model(model)
    wrapped = ZeroShotClassifier(model, processor=both, knowledge=None)
    assert wrapped.processor is both.ecg_processor  # the ECG half; was an AttributeError at the first call
    got = wrapped(records, labels=LABELS, progress=False).scores
    np.testing.assert_allclose(got.to_numpy(), clf(records, labels=LABELS, progress=False).scores.to_numpy())
    for bad in ("x", model, model.get_tokenizer()):
        with pytest.raises(ConfigError, match=rf"processor must be an EcgProcessor.*got {type(bad).__name__}"):
            ZeroShotClassifier(model, processor=bad, knowledge=None)


# --------------------------------------------------------------------------------- F02: arguments of one call
def test_an_array_without_fs_is_an_error_of_the_call_not_an_empty_table(clf, signal, records) -> None:
    for given in (signal, [signal], torch.from_numpy(signal), [str(records[0]), signal], signal[None]):
        with pytest.raises(ConfigError, match=r"array input #\d needs its sampling rate: pass fs="):
            clf(given, labels=LABELS, progress=False)
    assert not clf(records, labels=LABELS, progress=False).failures  # files carry their own rate


@pytest.mark.parametrize("fs", [0, -500, float("nan"), float("inf"), "500", b"500", True, 10, 1e6])
def test_a_bad_fs_is_an_error_of_the_call(clf, signal, records, fs) -> None:
    with pytest.raises(ConfigError, match=r"^fs must be"):
        clf(signal, labels=LABELS, fs=fs, progress=False)
    with pytest.raises(ConfigError, match=r"^fs must be"):
        clf(records, labels=LABELS, fs=fs, progress=False)  # checked whatever the inputs: it is the caller's value


@pytest.mark.parametrize("fs", [[500, 100], (500,), np.array([500.0, 100.0])])
def test_one_rate_per_array_says_how_to_give_it(clf, signal, fs) -> None:
    with pytest.raises(ConfigError, match=r"one sampling rate.*wrap each array as ecglang\.Ecg\(x, fs\)"):
        clf([signal, signal[:, ::5]], labels=LABELS, fs=fs, progress=False)
    # ... and the way it names works: each Ecg keeps its own rate
    mixed = clf([Ecg(signal, 500), Ecg(signal[:, ::5], 100)], labels=LABELS, progress=False)
    assert mixed.scores.shape == (2, 3) and not mixed.failures


def test_numpy_scalars_are_rates(clf, signal) -> None:
    reference = clf(signal, labels=LABELS, fs=500, progress=False).scores.to_numpy()
    for fs in (np.float32(500), np.int64(500), 500.0):
        np.testing.assert_allclose(clf(signal, labels=LABELS, fs=fs, progress=False).scores.to_numpy(), reference)


def test_leads_that_fit_no_array_or_name_no_lead_are_errors_of_the_call(clf, signal) -> None:
    with pytest.raises(ConfigError, match=r"leads= names 2 leads \(I, II\) but array input #0 has shape \(12, 5000\)"):
        clf(signal, labels=LABELS, fs=500, leads="I,II", progress=False)
    with pytest.raises(ConfigError, match=r"leads= names 2 leads .* array input #1 has shape \(3, 5000\)"):
        clf([signal[:2], signal[:3]], labels=LABELS, fs=500, leads="I,II", progress=False)
    for leads, problem in (("I,II,FOO", r"unknown lead name\(s\) \['FOO'\]"), ("I,I", "duplicate lead 'I'"),
                           ("X,Y", "none of the leads")):  # fmt: skip
        with pytest.raises(ConfigError, match=rf"^leads {leads!r}: .*{problem}"):
            clf(signal[:2], labels=LABELS, fs=500, leads=leads, progress=False)
    # without leads=, an array of another lead count is that record's problem, as in a file: the rest is scored
    result = clf([signal, signal[:5]], labels=LABELS, fs=500, progress=False)
    assert list(result.scores.index) == ["array0"] and [f.record for f in result.failures] == ["array1"]


# --------------------------------------------------------------------------------- F03: score_arrays' fs
@pytest.mark.parametrize("fs", [None, "500", [500, 500], np.array([500.0, 500.0]), 0, True])
def test_score_arrays_refuses_a_bad_fs_with_a_typed_error(clf, signal, fs) -> None:
    with pytest.raises(ConfigError, match=r"^fs must be"):  # None / '500' / a list were raw numpy errors
        clf.score_arrays([signal, signal], fs, LABELS, progress=False)


# --------------------------------------------------------------------------------- F04: tables and nested lists
def test_a_dataframe_or_series_is_refused_with_what_to_pass(clf, signal) -> None:
    frame = pd.DataFrame(signal.T, columns=list(CANONICAL_LEADS))  # samples × leads, as a CSV export reads
    for given in (frame, frame["II"], [frame]):
        with pytest.raises(ConfigError, match=r"pandas .*df\.to_numpy\(\)\.T, leads=list\(df\.columns\)"):
            clf(given, labels=LABELS, fs=500, progress=False)  # was 12 "file not found" failures (I, II, ...)
    advised = clf(frame.to_numpy().T, labels=LABELS, fs=500, leads=list(frame.columns), progress=False)
    reference = clf(signal, labels=LABELS, fs=500, progress=False)
    np.testing.assert_allclose(advised.scores.to_numpy(), reference.scores.to_numpy(), atol=1e-6)


def test_a_nested_list_of_numbers_is_refused_with_what_to_pass(signal) -> None:
    for given in (signal.tolist(), signal[0].tolist(), tuple(map(tuple, signal[:2].tolist()))):
        with pytest.raises(ConfigError, match=r"(list|tuple) of numbers.*np\.asarray\(x\)"):
            list(expand_inputs(given, 500, None))  # was one "unsupported input type" failure per row
    mixed = list(expand_inputs(["a.hea", None, 3.5], 500, None))  # a number among paths stays that item's failure
    assert isinstance(mixed[0], Path) and [f.record for f in mixed[1:]] == ["input #1", "input #2"]


# --------------------------------------------------------------------------------- F09: labels as a set
def test_labels_given_as_a_set_are_refused(clf, records) -> None:
    for given in (set(LABELS), frozenset(LABELS)):
        with pytest.raises(PromptError, match="pass a list: the label order sets the column order"):
            clf(records, labels=given, progress=False)
        with pytest.raises(PromptError, match="pass a list"):
            clf.label_specs(type(given)({"NORM", "MI"}), prompts="ptbxl_super")  # codes of a prompt set too
    assert list(clf(records, labels=LABELS, progress=False).scores.columns) == LABELS
