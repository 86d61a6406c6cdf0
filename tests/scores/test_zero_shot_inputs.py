"""What the classifier takes as input, found by an audit of the public API (audit 17): `score_arrays` split one
`[12, T]` array into 12 one-dimensional "records"; one None or number among the inputs stopped the whole run with
an untyped TypeError, and a bytes path was iterated byte by byte; a bfloat16 tensor crashed the call; every call
advanced the user's global torch RNG; `leads="I,II"` was split into characters; and a `[T, 12]` array was refused
in memory although the same array saved as `.npy` is transposed and scored."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ecglang.embeddings.sources import expand_inputs
from ecglang.errors import ConfigError
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.scores.classifier import ZeroShotClassifier

LABELS = ["atrial fibrillation", "sinus rhythm", "left bundle branch block"]


def test_score_arrays_takes_one_2d_record_as_the_call_does(clf, signal) -> None:
    reference = clf(signal, labels=LABELS, fs=500, progress=False)
    assert list(reference.scores.index) == ["array0"] and not reference.failures
    mask = np.ones(12, bool)
    for given, masks in ((signal, None), (torch.from_numpy(signal), None), (signal, mask)):
        got = clf.score_arrays(given, 500, LABELS, lead_masks=masks, progress=False)
        assert not got.failures, got.failures  # was 12 failures, one per lead row, and no score
        assert list(got.scores.index) == ["array0"]
        np.testing.assert_allclose(got.scores.to_numpy(), reference.scores.to_numpy(), atol=1e-6)
    for bad in (signal[0], signal[None, None], torch.from_numpy(signal[0])):
        with pytest.raises(ConfigError, match=r"\[N, 12, T\].*\[12, T\]"):
            clf.score_arrays(bad, 500, LABELS, progress=False)
    with pytest.raises(ConfigError, match="signals must be"):
        clf.score_arrays("record.hea", 500, LABELS, progress=False)  # a path is not its characters either
    flipped = clf.score_arrays(signal.T, 500, LABELS, progress=False)  # canonical order here: refused, with the fix
    assert [f.record for f in flipped.failures] == ["array0"] and "pass x.T" in flipped.failures[0].reason


def test_an_item_of_an_unsupported_type_is_a_failure_and_the_rest_is_scored(clf, records) -> None:
    first, second = records
    alone = clf([first, second], labels=LABELS, progress=False)
    items = [str(first), None, 3.5, os.fsencode(second)]  # a bytes path is read as the path it names
    result = clf(items, labels=LABELS, progress=False)
    assert list(result.scores.index) == [first.name, second.name]
    np.testing.assert_allclose(result.scores.to_numpy(), alone.scores.to_numpy(), atol=1e-6)
    assert [(f.record, f.stage) for f in result.failures] == [("input #1", "read"), ("input #2", "read")]
    assert "NoneType" in result.failures[0].reason and "float" in result.failures[1].reason
    assert "a record path" in result.failures[0].reason  # says what is accepted
    bare = clf(os.fsencode(first), labels=LABELS, progress=False)  # not iterated byte by byte
    assert list(bare.scores.index) == [first.name] and not bare.failures
    for value in (123, None, 1.5):
        with pytest.raises(ConfigError, match=r"cannot score an input of type \w+: give an Ecg, a record path"):
            clf(value, labels=LABELS, progress=False)


def test_a_bfloat16_tensor_is_scored_as_its_float32_values(clf, signal) -> None:
    bf16 = torch.from_numpy(signal).bfloat16()
    as_f32 = bf16.float()  # the same values, in a dtype numpy holds
    reference = clf(as_f32, labels=LABELS, fs=500, progress=False).scores.to_numpy()
    for given in (bf16, bf16[None], [bf16]):
        got = clf(given, labels=LABELS, fs=500, progress=False)
        assert not got.failures, got.failures
        np.testing.assert_allclose(got.scores.to_numpy(), reference, atol=1e-6)
    arrays = clf.score_arrays(bf16[None], 500, LABELS, progress=False)
    listed = clf.score_arrays([bf16], 500, LABELS, progress=False)  # a sequence item, read in the source
    for got in (arrays, listed):
        assert not got.failures, got.failures
        np.testing.assert_allclose(got.scores.to_numpy(), reference, atol=1e-6)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")  # torch's, when the tensor is made
def test_an_array_of_no_sample_values_fails_and_a_bare_array_of_another_shape_is_refused(clf, signal) -> None:
    """A complex array was scored on its real part (a cast that drops the imaginary part, with only numpy's
    warning), a complex32 tensor ended the call with an untyped TypeError, and a bare 1-D or 4-D array was a
    record's failure although the shape is the caller's; the NPY reader refuses the first and names the dtype."""
    items = [signal + 1j, torch.from_numpy(signal).to(torch.complex32), signal > 0, signal]
    result = clf(items, labels=LABELS, fs=500, progress=False)
    assert list(result.scores.index) == ["array3"]  # the real record is scored
    assert [f.record for f in result.failures] == ["array0", "array1", "array2"]
    for failure, dtype in zip(result.failures, ("complex64", "complex64", "bool"), strict=True):
        assert failure.reason.endswith(f"signal array must be numeric, got dtype {dtype}"), failure.reason
    for bare in (signal[0], signal[None, None], torch.from_numpy(signal[0]), np.array(1.0)):
        with pytest.raises(ConfigError, match=r"an array input must be \[leads, samples\].*got shape"):
            clf(bare, labels=LABELS, fs=500, progress=False)
    assert len(clf([signal[0]], labels=LABELS, fs=500, progress=False).failures) == 1  # in a list: that item's


@pytest.mark.parametrize("workers", [0, 1])
def test_scoring_leaves_the_global_torch_rng_alone(model, records, signal, workers) -> None:
    clf = ZeroShotClassifier(model, knowledge=None, batch_size=1)  # two batches: the worker is used when asked
    clf(records, labels=LABELS, progress=False, num_workers=workers)  # label embeddings cached: only scoring below
    state = torch.get_rng_state()
    clf(records, labels=LABELS, progress=False, num_workers=workers)
    assert torch.equal(torch.get_rng_state(), state)
    clf.score_arrays(np.stack([signal, signal]), 500, LABELS, num_workers=workers, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    if workers == 0:  # the explained path reads in this process only
        clf(records, labels=LABELS, explain=True, progress=False)
        assert torch.equal(torch.get_rng_state(), state)


def test_leads_given_as_a_string_are_split_at_commas_and_spaces(clf, signal, tmp_path) -> None:
    two = signal[[0, 1]]
    reference = clf(two, labels=LABELS, fs=500, leads=["I", "II"], progress=False)
    assert not reference.failures
    np.save(tmp_path / "two.npy", two)
    for leads in ("I,II", "I II", " I, II "):
        got = clf(two, labels=LABELS, fs=500, leads=leads, progress=False)
        assert not got.failures, got.failures  # were the names ['I', ',', 'I', 'I']
        np.testing.assert_allclose(got.scores.to_numpy(), reference.scores.to_numpy(), atol=1e-6)
        from_file = clf(tmp_path / "two.npy", labels=LABELS, fs=500, leads=leads, progress=False)  # .npy: same names
        assert not from_file.failures, from_file.failures
        np.testing.assert_allclose(from_file.scores.to_numpy(), reference.scores.to_numpy(), atol=1e-6)
    for bad in ("", ",", 5, ["I", 2]):
        with pytest.raises(ConfigError, match="leads must be lead names"):
            clf(two, labels=LABELS, fs=500, leads=bad, progress=False)


def test_a_samples_by_leads_array_is_transposed_as_the_npy_reader_does(clf, signal, tmp_path) -> None:
    reference = clf(signal, labels=LABELS, fs=500, progress=False).scores.to_numpy()
    np.save(tmp_path / "rows.npy", signal.T.copy())
    from_file = clf(tmp_path / "rows.npy", labels=LABELS, fs=500, leads=CANONICAL_LEADS, progress=False)
    assert not from_file.failures, from_file.failures
    for given in (signal.T, signal.T.copy(), torch.from_numpy(signal.T.copy())):
        got = clf(given, labels=LABELS, fs=500, progress=False)
        assert not got.failures, got.failures  # was "5000 signal rows but 12 lead names"
        np.testing.assert_allclose(got.scores.to_numpy(), reference, atol=1e-6)
        np.testing.assert_allclose(got.scores.to_numpy(), from_file.scores.to_numpy(), atol=1e-6)
    (ecg,) = expand_inputs(signal.T, 500, None)
    assert ecg.metadata["transposed"] is True and np.array_equal(ecg.signal, signal)
    (two,) = expand_inputs(signal[[0, 1]].T, 500, "I,II")  # [T, 2] with two names: transposed too
    assert two.metadata["transposed"] is True and list(two.lead_mask.nonzero()[0]) == [0, 1]
    (kept,) = expand_inputs(signal, 500, None)
    assert "transposed" not in kept.metadata
    (neither,) = expand_inputs(np.zeros((5000, 3), np.float32), 500, None)  # no axis of 12: a failure, as in a file
    assert neither.record == "array0" and "(5000, 3)" in neither.reason
