"""What the processors take: files as well as `Ecg` records, read inside `errors="collect"` (an unreadable file is a
listed failure and the reports stay paired with their records), a clear error for an array, and an explicit set of
keywords for `EcgLangProcessor` (a misspelt one is a `TypeError` whether or not ECGs are given).

Before: `processor(ecgs=[load_ecg(p) for p in paths], texts=..., errors="collect")` (the README's batch) lost the
whole batch to one unreadable file, since reading happened before the processor; `model.get_processor()([path])`
and `([array])` failed with `AttributeError`; `EcgLangProcessor(text=...)` said it "needs ecgs, texts or both",
`return_tensors="pt"` was a `TypeError` naming `EcgProcessor`, and `errors="colect"` was ignored without ECGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb

import ecglang
from ecglang.encoders.processing import EcgLangProcessor
from ecglang.errors import ConfigError, EcgReadError
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.signal.simulate import simulate_ecg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPORTS = ["truncated file.", "sinus rhythm. normal ecg.", "missing file.", "sinus tachycardia."]
ACCEPTED = "ecgs, texts, errors, rng and return_tensors"


@pytest.fixture(scope="module")
def model() -> ecglang.EcgLangModel:
    return ecglang.load_model()  # the bundled checkpoint


@pytest.fixture(scope="module")
def processor(model) -> EcgLangProcessor:
    return EcgLangProcessor.from_model(model)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """[truncated WFDB record, good .npz, missing file, good WFDB record]: the audit's batch of real formats."""
    folder = tmp_path_factory.mktemp("records")
    good = [simulate_ecg(heart_rate=hr, seed=i) for i, hr in enumerate((65, 105))]
    for name, ecg in (("cut", good[0]), ("good_b", good[1])):
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                    p_signal=ecg.signal.T.astype(float), fmt=["16"] * 12, write_dir=str(folder))  # fmt: skip
    dat = folder / "cut.dat"
    dat.write_bytes(dat.read_bytes()[:30000])  # the header promises 120000 bytes
    np.savez(folder / "good_a.npz", signal=good[0].signal, fs=500.0, leads=np.array(CANONICAL_LEADS))
    return [folder / "cut.hea", folder / "good_a.npz", folder / "missing.hea", folder / "good_b.hea"]


# ------------------------------------------------------------------------------------------------ F06: paths
def test_collect_reads_files_in_the_loop_and_keeps_the_reports_paired(processor, files) -> None:
    paths = [str(files[0]), files[1], str(files[2]), files[3]]  # str and Path alike
    batch = processor(ecgs=paths, texts=REPORTS, errors="collect")
    assert batch.indices == [1, 3] and batch.failed_indices == [0, 2]
    assert [(f.record, f.stage) for f in batch.failures] == [("cut", "read"), ("missing", "read")]
    assert batch.failures[0].path == str(files[0]) and "truncated signal file" in batch.failures[0].reason
    assert batch.failures[1].path.endswith("missing.hea") and "not found" in batch.failures[1].reason
    assert batch.record_ids == ["good_a", "good_b"]
    # the rows are those of the records read by hand, beside their own reports
    by_hand = processor(ecgs=[load_ecg(files[1]), load_ecg(files[3])], texts=[REPORTS[1], REPORTS[3]])
    for key in ("beats", "beat_mask", "lead_mask", "rr", "times", "input_ids", "attention_mask"):
        assert torch.equal(batch[key], by_hand[key]), key


def test_raise_stops_at_the_first_unreadable_file_naming_it(processor, files) -> None:
    with pytest.raises(EcgReadError, match="truncated signal file") as raised:
        processor(ecgs=files, texts=REPORTS)
    assert raised.value.path == str(files[0])


def test_one_path_is_one_record(processor, files) -> None:
    batch = processor(ecgs=str(files[1]), texts="sinus rhythm.")
    assert batch["beats"].shape[0] == 1 and batch["input_ids"].shape[0] == 1 and batch.record_ids == ["good_a"]


# ------------------------------------------------------------------------------------------------ F07: EcgProcessor
def test_the_models_own_processor_reads_paths(model, files) -> None:
    ecg_processor = model.get_processor()
    batch = ecg_processor([files[1], str(files[3])])
    by_hand = ecg_processor([load_ecg(files[1]), load_ecg(files[3])])
    assert torch.equal(batch["beats"], by_hand["beats"]) and batch.record_ids == ["good_a", "good_b"]
    collected = ecg_processor(files, errors="collect")
    assert collected.indices == [1, 3] and [f.stage for f in collected.failures] == ["read", "read"]


@pytest.mark.parametrize("errors", ["raise", "collect"])
def test_an_array_says_to_wrap_it_as_an_ecg_in_both_processors(model, processor, errors) -> None:
    x = simulate_ecg(heart_rate=70, seed=5).signal
    ecg_processor = model.get_processor()
    for given, where in (([x], "ecgs[0]"), ([x.T], "ecgs[0]"), (x, "ecgs"), (torch.tensor(x), "ecgs")):
        messages = []
        for owner, call in (("EcgProcessor", lambda g: ecg_processor(g, errors=errors)),
                            ("EcgLangProcessor", lambda g: processor(ecgs=g, errors=errors))):  # fmt: skip
            with pytest.raises(TypeError) as raised:
                call(given)
            message = str(raised.value)
            assert message.startswith(f"{owner}: {where} is ") and "ecglang.Ecg(x, fs)" in message, message
            messages.append(message.removeprefix(owner))
        assert messages[0] == messages[1]  # one check, one message


def test_other_types_are_named_with_their_position(model) -> None:
    ecg = simulate_ecg(heart_rate=70, seed=5)
    with pytest.raises(TypeError, match=r"^EcgProcessor: ecgs\[1\] is a dict, not an Ecg record or a file path"):
        model.get_processor()([ecg, {"signal": ecg.signal}], errors="collect")
    with pytest.raises(TypeError, match=r"^EcgProcessor: ecgs is an int, not an Ecg record, a file path or a list"):
        model.get_processor()(3)
    # containers whose iteration is not a list of inputs: a DataFrame's column names were read as file names
    table = pd.DataFrame(ecg.signal.T, columns=list(CANONICAL_LEADS))
    with pytest.raises(TypeError, match=r"^EcgProcessor: ecgs is a DataFrame of shape \(5000, 12\): wrap it as "
                                        r"ecglang\.Ecg\.from_array\(df\.to_numpy\(\)\.T, fs, leads=list"):  # fmt: skip
        model.get_processor()(table, errors="collect")
    for given in ({"a": ecg}, b"record.hea"):
        with pytest.raises(TypeError, match=rf"^EcgProcessor: ecgs is a {type(given).__name__}, not an Ecg record"):
            model.get_processor()(given, errors="collect")


# ------------------------------------------------------------------------------------------------ F05: keywords
@pytest.mark.parametrize("with_ecgs", [False, True])
def test_unknown_keywords_are_a_type_error_naming_the_accepted_ones(processor, with_ecgs) -> None:
    given = {"ecgs": [simulate_ecg(heart_rate=70, seed=1)]} if with_ecgs else {}
    with pytest.raises(TypeError) as raised:
        processor(**given, texts=["sinus rhythm."], errrors="collect")
    message = str(raised.value)
    assert (
        message
        == f"EcgLangProcessor got unexpected keyword argument(s) 'errrors' (did you mean errors=?); it takes {ACCEPTED}"
    )
    with pytest.raises(TypeError, match=r"argument\(s\) 'text' \(did you mean texts=\?\); it takes ecgs, texts"):
        processor(**given, text=["sinus rhythm."])  # CLIPProcessor's name
    with pytest.raises(TypeError, match=r"argument\(s\) 'images' \(did you mean ecgs=\?\), 'zzz'; it takes"):
        processor(images=given.get("ecgs"), texts=["sinus rhythm."], zzz=1)


def test_a_misspelt_errors_value_is_refused_without_ecgs_too(processor) -> None:
    with pytest.raises(ConfigError, match="errors must be 'raise' or 'collect', got 'colect'"):
        processor(texts=["sinus rhythm."], errors="colect")


def test_return_tensors_pt_is_accepted_and_other_values_refused(processor, model) -> None:
    ecg = simulate_ecg(heart_rate=70, seed=1)
    plain = processor(ecgs=[ecg], texts=["sinus rhythm."])
    pt = processor(ecgs=[ecg], texts=["sinus rhythm."], return_tensors="pt")
    assert plain.keys() == pt.keys() and all(torch.equal(plain[k], pt[k]) for k in plain)
    assert torch.equal(model.get_processor()([ecg], return_tensors="pt")["beats"], plain["beats"])
    for value in ("np", "tf", "PT"):
        with pytest.raises(ConfigError, match=rf"returns PyTorch tensors only: return_tensors must be 'pt'.*'{value}'"):
            processor(texts=["sinus rhythm."], return_tensors=value)
        with pytest.raises(ConfigError, match="return_tensors must be 'pt'"):
            model.get_processor()([ecg], return_tensors=value)


def test_the_existing_calls_are_unchanged(processor) -> None:
    ecgs = [simulate_ecg(heart_rate=hr, seed=i) for i, hr in enumerate((60, 110))]
    both = processor(ecgs, REPORTS[:2], errors="raise", rng=0)  # positional ecgs, texts as before
    assert both["beats"].shape[0] == 2 and both["input_ids"].shape[0] == 2
    with pytest.raises(ConfigError, match="ecgs, texts or both"):
        processor()
